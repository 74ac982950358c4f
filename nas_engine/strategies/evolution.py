"""Regularized (aging) evolution (Real et al. 2019) built on DEAP's tools.

Why aging evolution rather than a (mu + lambda) GA: it proposes one child at a time from the
current population, so it needs no generation barrier and keeps every worker of a parallel
executor busy (a result can be told the moment it arrives); removing the oldest member rather
than the worst regularises against a lucky score, which matters because a training-free
metric is a noisy proxy. DEAP provides the individuals, tournament selection and statistics.

With an ensemble fitness (rank-based, so it depends on a reference population) the recorded
fitness of two results may be computed against different populations and is not comparable.
The tournament therefore compares every member by its fitness against the *current
population*: whenever the population changes (a result is told, the oldest member leaves),
every member's DEAP fitness is recomputed against it. Within one tournament all entrants are
scored against the same reference, so the comparison is a consistent order, and it depends only
on the strategy's own state (not on when each member was evaluated, nor on members that have
aged out). With one metric the recorded fitness is used as is (it depends on nothing else).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from deap import base, creator, tools

from ..fitness import Fitness
from ..result import Candidate, Result
from ..spaces import SearchSpace
from .base import Strategy

# DEAP's creator classes are made once, at import.
if not hasattr(creator, "NasFitnessMax"):
    creator.create("NasFitnessMax", base.Fitness, weights=(1.0,))
if not hasattr(creator, "NasIndividual"):
    creator.create("NasIndividual", dict, fitness=creator.NasFitnessMax)


@contextmanager
def _deap_random(rng: random.Random) -> Iterator[None]:
    """DEAP's operators draw from the ``random`` module; run them on our own seeded stream
    and leave the global state as it was."""
    saved = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(saved)


class AgingEvolution(Strategy):
    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        population_size: int = 20,
        tournament_size: int = 5,
        fitness: Fitness | None = None,
    ) -> None:
        super().__init__(space, seed)
        if population_size < 2:
            raise ValueError("population must be at least 2")
        if not 1 <= tournament_size <= population_size:
            raise ValueError("tournament size must be between 1 and the population size")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.ensemble = fitness if fitness is not None and fitness.is_ensemble else None
        self.population: deque = deque(maxlen=population_size)  # oldest leaves first
        self._selection_rng = random.Random(int(np.random.default_rng(seed).integers(2**32)))
        self._asked = 0
        self._told = 0
        self.logbook = tools.Logbook()
        self._statistics = tools.Statistics(key=lambda ind: ind.fitness.values[0])
        for name, fn in (("max", np.max), ("avg", np.mean), ("min", np.min)):
            self._statistics.register(name, fn)

    def _propose(self) -> tuple[Any, str]:
        self._asked += 1
        if self._asked <= self.population_size or len(self.population) < 2:
            return self.space.sample(self.rng), "sample"
        with _deap_random(self._selection_rng):
            (parent,) = tools.selTournament(
                list(self.population),
                k=1,
                tournsize=min(self.tournament_size, len(self.population)),
            )
        child, change = self.space.mutate(parent["arch"], self.rng)
        return child, f"mutate:{change}:{parent['key']}"

    def tell(self, candidate: Candidate, result: Result) -> None:
        self._told += 1
        if result.ranked:  # flagged by the stability guard: never a parent
            ind = creator.NasIndividual(key=candidate.key, arch=self.space.validate(candidate.arch))
            ind.fitness.values = (result.fitness,)
            if self.ensemble is None:
                self.population.append(ind)
            else:
                values = self.ensemble.values(result.metrics)
                if values is not None:
                    ind["values"] = values
                    self.population.append(ind)  # the oldest member leaves here when full
                    self._rescore()
        if self._told % self.population_size == 0 and self.population:
            self.logbook.record(evaluated=self._told, **self._statistics.compile(self.population))

    def _rescore(self) -> None:
        """Ensemble: every member's fitness against the current population."""
        scores = self.ensemble.rank([ind["values"] for ind in self.population])
        for ind, score in zip(self.population, scores, strict=True):
            ind.fitness.values = (score,)

    def stats(self) -> dict:
        return {"population": list(self.logbook)}
