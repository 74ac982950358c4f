"""Multi-objective runs: the Pareto front of a run's results and its hypervolume.

Objectives are compared direction-applied (every one maximised; ``params:min`` negated), with
moocore's non-dominated filter and hypervolume (the C library DEAP itself uses for its
hypervolume indicator).

**Reference point.** A hypervolume is only a number against a fixed reference point. With
``--reference-point`` the user fixes it (one value per objective, in the metric's own units);
otherwise it is fixed once, from the first ``population`` ranked results of the run: per
objective, their upper quartile (direction-applied). A point adds volume once it beats three
quarters of those random architectures in every objective, so the number measures progress
where it matters. Their worst value, or their median, would be poor choices: a metric such as
``hidden_cov`` has a long tail of very bad cells (its median among random cells at the fast
sizes is about -6,000, its best about -110), so the volume would be almost all that tail and
every front would look the same (measured: NSGA-II and random search within 0.1%). A random
search and NSGA-II with the same seed draw the same first samples, so their hypervolumes
usually share that reference point (not where some of those samples fail: pass it then).
Records made before it is fixed carry no hypervolume; the summary's series recomputes every
evaluation's against the final reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import moocore
import numpy as np

from .fitness import Fitness
from .result import Result

HYPERVOLUME = "hypervolume"  # details key: the front's hypervolume after this evaluation
REFERENCE_QUANTILE = 0.75  # the default reference point: the first results' upper quartile


def objective_values(fitness: Fitness, result: Result) -> tuple[float, ...] | None:
    """The result's direction-applied objectives, or None when it may not join a front
    (failed, flagged by the stability guard, or an objective missing)."""
    return fitness.values(result.metrics) if result.ranked else None


def front_mask(points: np.ndarray) -> np.ndarray:
    """Which rows are non-dominated (maximising every column); of equal rows the first."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=True, keep_weakly=False))


def pareto_front(fitness: Fitness, results: Sequence[Result]) -> list[Result]:
    """Exactly the non-dominated ranked results of ``results``, in record order."""
    rows = [(r, objective_values(fitness, r)) for r in results]
    rows = [(r, v) for r, v in rows if v is not None]
    if not rows:
        return []
    mask = front_mask(np.array([v for _, v in rows], dtype=np.float64))
    return [r for (r, _), keep in zip(rows, mask, strict=True) if keep]


def _joined(front: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """The front of ``front`` and one more point."""
    stacked = np.vstack([front, np.array([values], dtype=np.float64)])
    return stacked[front_mask(stacked)]


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` (maximised) and bounded by ``reference``; points not
    strictly better than the reference in every objective add nothing."""
    ref = np.asarray(reference, dtype=np.float64)
    inside = points[(points > ref).all(axis=1)] if len(points) else points
    if len(inside) == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref, maximise=True))


def default_reference(points: np.ndarray) -> tuple[float, ...]:
    """The reference point from the first ranked results (see the module doc): per objective,
    their upper quartile (direction-applied)."""
    return tuple(float(v) for v in np.quantile(points, REFERENCE_QUANTILE, axis=0))


@dataclass
class FrontTracker:
    """The front of the ranked results so far and its hypervolume, updated per result."""

    fitness: Fitness
    population: int
    reference: tuple[float, ...] | None = None  # direction-applied
    user_reference: bool = False
    front: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    seen: list[tuple[float, ...]] = field(default_factory=list)

    @classmethod
    def create(
        cls, fitness: Fitness, population: int, reference: Sequence[float] | None
    ) -> FrontTracker:
        applied = None
        if reference is not None:
            signs = [c.sign for c in fitness.components]
            applied = tuple(s * v for s, v in zip(signs, reference, strict=True))
        k = len(fitness.components)
        return cls(fitness, population, applied, applied is not None, np.zeros((0, k)))

    def add(self, result: Result) -> float | None:
        """Take one result; the hypervolume after it (None before the reference is fixed)."""
        values = objective_values(self.fitness, result)
        if values is not None:
            self.seen.append(values)
            self.front = _joined(self.front, values)
            if self.reference is None and len(self.seen) >= self.population:
                self.reference = default_reference(np.array(self.seen, dtype=np.float64))
        if self.reference is None:
            return None
        return hypervolume(self.front, self.reference)

    def reference_in_units(self) -> dict[str, float] | None:
        """The reference point per objective (by metric name), in the metrics' own units."""
        if self.reference is None:
            return None
        return {
            c.metric.name: c.sign * v
            for c, v in zip(self.fitness.components, self.reference, strict=True)
        }

    def series(self, results: Sequence[Result]) -> list[float | None]:
        """Every evaluation's hypervolume against the final reference point."""
        if self.reference is None:
            return [None] * len(results)
        k = len(self.fitness.components)
        front, out = np.zeros((0, k)), []
        for r in results:
            values = objective_values(self.fitness, r)
            if values is not None:
                front = _joined(front, values)
            out.append(round(hypervolume(front, self.reference), 10))
        return out
