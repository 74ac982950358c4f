"""Search strategies, by name."""

from __future__ import annotations

from ..fitness import Fitness
from ..spaces import SearchSpace
from .base import SpaceExhausted, Strategy
from .evolution import AgingEvolution
from .nsga2 import NSGA2
from .random_search import RandomSearch

STRATEGIES = ("evolution", "random", "nsga2")


def make_strategy(
    name: str,
    space: SearchSpace,
    seed: int,
    population_size: int = 20,
    tournament_size: int = 5,
    fitness: Fitness | None = None,
) -> Strategy:
    """``fitness``: the rule evolution compares by when it is an ensemble (see AgingEvolution);
    None or one metric: the recorded fitness. With a multi-objective ``fitness`` (from
    ``--objectives``), ``evolution`` and ``nsga2`` both mean NSGA-II."""
    multi = fitness is not None and fitness.multi_objective
    if name == "nsga2" or (name == "evolution" and multi):
        if not multi:
            raise KeyError("strategy 'nsga2' needs objectives (--objectives a,b)")
        return NSGA2(space, seed, population_size, fitness)
    if name == "random":
        return RandomSearch(space, seed)
    if name == "evolution":
        return AgingEvolution(space, seed, population_size, tournament_size, fitness)
    raise KeyError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")


__all__ = [
    "STRATEGIES",
    "NSGA2",
    "AgingEvolution",
    "RandomSearch",
    "SpaceExhausted",
    "Strategy",
    "make_strategy",
]
