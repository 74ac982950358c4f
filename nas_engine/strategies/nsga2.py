"""NSGA-II (Deb et al. 2002) as a steady-state loop, built on DEAP's tools.

Why steady-state: like the aging evolution, it proposes one child at a time and takes each
result the moment it arrives, so a parallel executor never waits at a generation barrier.
After each result the population is cut back to its size by DEAP's ``selNSGA2``
(non-dominated sorting, then crowding distance within the last front that fits), and a parent
is chosen by DEAP's ``selTournamentDCD`` (dominance, then crowding distance) and mutated by
the space. The first ``population_size`` proposals are random samples, as in the aging
evolution. Results the stability guard flagged, failed ones and those with a missing objective
never enter the population.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from deap import base, creator, tools

from ..fitness import MAX_OBJECTIVES, Fitness
from ..result import Candidate, Result
from ..spaces import SearchSpace
from .base import Strategy
from .evolution import _deap_random

# DEAP's creator classes are made once, at import: one per number of objectives (every
# objective is maximised: its direction is applied before it reaches DEAP).
for _k in range(2, MAX_OBJECTIVES + 1):
    if not hasattr(creator, f"NasObjectives{_k}"):
        creator.create(f"NasObjectives{_k}", base.Fitness, weights=(1.0,) * _k)
    if not hasattr(creator, f"NasMultiIndividual{_k}"):
        creator.create(
            f"NasMultiIndividual{_k}", dict, fitness=getattr(creator, f"NasObjectives{_k}")
        )


class NSGA2(Strategy):
    name = "nsga2"

    def __init__(
        self, space: SearchSpace, seed: int, population_size: int, objectives: Fitness
    ) -> None:
        super().__init__(space, seed)
        k = len(objectives.components)
        if not 2 <= k <= MAX_OBJECTIVES:
            raise ValueError(f"NSGA-II takes 2 to {MAX_OBJECTIVES} objectives, got {k}")
        if population_size < 4:
            raise ValueError("NSGA-II needs a population of at least 4")
        self.objectives = objectives
        self.population_size = population_size
        self.population: list = []
        self._individual = getattr(creator, f"NasMultiIndividual{k}")
        self._selection_rng = random.Random(int(np.random.default_rng(seed).integers(2**32)))
        self._asked = 0
        self._told = 0
        self.logbook = tools.Logbook()

    def _propose(self) -> tuple[Any, str]:
        self._asked += 1
        if self._asked <= self.population_size or len(self.population) < 4:
            return self.space.sample(self.rng), "sample"
        with _deap_random(self._selection_rng):
            (parent,) = tools.selTournamentDCD(self.population, 4)[:1]
        child, change = self.space.mutate(parent["arch"], self.rng)
        return child, f"mutate:{change}:{parent['key']}"

    def tell(self, candidate: Candidate, result: Result) -> None:
        self._told += 1
        values = self.objectives.values(result.metrics) if result.ranked else None
        if values is not None:
            ind = self._individual(key=candidate.key, arch=self.space.validate(candidate.arch))
            ind.fitness.values = values
            self.population.append(ind)
            # selNSGA2 also sets each member's crowding distance (below the population size
            # too: it then keeps everyone), which the next selTournamentDCD reads.
            self.population = tools.selNSGA2(self.population, self.population_size)
        if self._told % self.population_size == 0 and self.population:
            fronts = tools.sortNondominated(self.population, len(self.population))
            self.logbook.record(
                evaluated=self._told, population=len(self.population), front=len(fronts[0])
            )

    def stats(self) -> dict:
        return {"population": list(self.logbook)}
