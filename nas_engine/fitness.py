"""Fitness: the number a strategy maximises, from an architecture's metric values.

A fitness spec names one metric (``hidden_cov``) or an ensemble of weighted metrics
(``hidden_cov:2+params``; the weight defaults to 1).

* **One metric**: the fitness is the metric with its direction applied (``sign * value``,
  lower-is-better metrics negated). It depends on nothing else.
* **Ensemble** (two or more metrics): the fitness of a result is defined against a
  *reference population* of N successful results that contains it. For each component i, the
  result's direction-applied value gets its mid-rank percentile among the population,
  ``p_i = (number strictly below + number equal / 2) / N`` (that is ``(rank - 1/2) / N`` with
  ties sharing their mean rank; the result itself counts as one of the equal values), and the
  fitness is the weighted mean ``sum(w_i * p_i) / sum(w_i)``, in (0, 1). It is defined for
  every N >= 1 (a population of one scores 1/2), invariant to each metric's scale, and a
  result's score never drops when a result strictly worse in every component joins the
  population.

Which population is the reference is the engine's and the strategies' business (see
:data:`ENSEMBLE_RULE`); a component missing or not finite makes the fitness undefined
(:meth:`Fitness.values` returns None), never a partial number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import ConfigError
from .metrics import Metric, get_metric

ENSEMBLE_RULE = (
    "ensemble: fitness = sum(w_i * p_i) / sum(w_i), where p_i = (#below + #equal/2) / N is "
    "the mid-rank percentile of the result's direction-applied value of component i among the "
    "N ok results of a reference population that contains it (ties share their mean rank). "
    "results.jsonl holds the fitness against the ok results evaluated up to and including "
    "that result (the value when it was evaluated; records never change); the final ranking "
    "('top') recomputes it against all ok results of the run; evolution's tournament compares "
    "the members of its current population against that population"
)


# Multi-objective search takes 2 to this many objectives (NSGA-II's DEAP classes are made for
# each count at import).
MAX_OBJECTIVES = 4


def parse_spec(spec: str) -> tuple[tuple[str, Fraction], ...]:
    """``'a:2 + b'`` -> ``(('a', 2), ('b', 1))``: syntax only, names are not looked up.

    Weights are exact (``0.1`` is one tenth, so ``a:0.1+b:0.2`` is exactly 1 : 2). Raises
    :class:`ConfigError` (one line) for an empty spec or component, a weight that is not a
    positive finite number, or a metric named twice.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty fitness spec {spec!r} (expected METRIC or METRIC[:W]+METRIC...)")
    parts: list[tuple[str, Fraction]] = []
    for raw in spec.split("+"):
        part = raw.strip()
        if not part:
            raise ConfigError(f"empty component in fitness {spec!r} (expected METRIC[:W]+...)")
        name, sep, weight_text = (s.strip() for s in part.partition(":"))
        if not name:
            raise ConfigError(f"component {part!r} of fitness {spec!r} names no metric")
        weight = Fraction(1)
        if sep:
            try:
                weight = Fraction(weight_text)
                ok = 0 < float(weight) < math.inf
            except (ValueError, ZeroDivisionError, OverflowError):
                ok = False
            if not ok:
                raise ConfigError(
                    f"bad weight {weight_text!r} for {name} in fitness {spec!r} "
                    "(expected a positive number)"
                )
        if any(name == seen for seen, _ in parts):
            raise ConfigError(f"metric {name!r} appears twice in fitness {spec!r}")
        parts.append((name, weight))
    return tuple(parts)


def _weight_text(weight: Fraction) -> str:
    if weight.denominator == 1:
        return str(weight.numerator)
    decimal = repr(float(weight))
    return decimal if Fraction(decimal) == weight else f"{weight.numerator}/{weight.denominator}"


@dataclass(frozen=True)
class Component:
    metric: Metric
    weight: Fraction = Fraction(1)
    # An objective may flip the metric's registered direction (``params:min``).
    direction: str | None = None

    @property
    def sign(self) -> float:
        """Multiplier that turns the metric into a value to maximise."""
        if self.direction is None:
            return self.metric.sign
        return 1.0 if self.direction == "higher" else -1.0

    @property
    def label(self) -> str:
        """The metric's name, with ``:min``/``:max`` where the direction is not its own."""
        if self.direction is None or self.direction == self.metric.direction:
            return self.metric.name
        return f"{self.metric.name}:{'max' if self.direction == 'higher' else 'min'}"


@dataclass(frozen=True)
class Fitness:
    """One metric with its direction applied, or a rank-based ensemble (see the module doc)."""

    components: tuple[Component, ...]
    # Built from --objectives: the components are the objectives of a Pareto front.
    multi_objective: bool = False

    @classmethod
    def parse(cls, spec: str, space: str) -> Fitness:
        """Raises :class:`ConfigError` for a bad spec or an unknown metric."""
        components = []
        for name, weight in parse_spec(spec):
            try:
                metric = get_metric(name, space)
            except KeyError as exc:
                raise ConfigError(exc.args[0]) from None
            components.append(Component(metric, weight))
        return cls(tuple(components))

    @classmethod
    def from_objectives(cls, objectives: Sequence[str], space: str) -> Fitness:
        """Multi-objective search: each objective ``METRIC`` (its registered direction) or
        ``METRIC:min`` / ``METRIC:max``. The fitness that ranks the run's results is their
        equal-weight rank ensemble (the Pareto front is computed beside it). Raises
        :class:`ConfigError` for a bad objective or an unknown metric."""
        if not 2 <= len(objectives) <= MAX_OBJECTIVES:
            raise ConfigError(
                f"--objectives takes 2 to {MAX_OBJECTIVES} metrics, got {len(objectives)}"
            )
        components = []
        for text in objectives:
            name, sep, direction = (part.strip() for part in text.partition(":"))
            if sep and direction not in ("min", "max"):
                raise ConfigError(
                    f"objective {text!r}: the suffix must be :min or :max, not :{direction}"
                )
            try:
                metric = get_metric(name, space)
            except KeyError as exc:
                raise ConfigError(exc.args[0]) from None
            if any(c.metric.name == name for c in components):
                raise ConfigError(f"metric {name!r} appears twice in --objectives")
            chosen = None if not sep else ("higher" if direction == "max" else "lower")
            components.append(Component(metric, Fraction(1), chosen))
        return cls(tuple(components), multi_objective=True)

    @property
    def is_ensemble(self) -> bool:
        return len(self.components) > 1

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(c.metric.name for c in self.components)

    @property
    def name(self) -> str:
        """The canonical spec: ``hidden_cov`` or ``hidden_cov:2+params``; objectives as
        ``--objectives`` takes them (``hidden_cov,params:min``)."""
        if self.multi_objective:
            return ",".join(c.label for c in self.components)
        if not self.is_ensemble:
            return self.components[0].metric.name
        return "+".join(
            c.metric.name if c.weight == 1 else f"{c.metric.name}:{_weight_text(c.weight)}"
            for c in self.components
        )

    @property
    def rule(self) -> str:
        """How the fitness is computed, in words (recorded in summary.json)."""
        if self.multi_objective:
            return (
                "objectives: the Pareto front of the direction-applied objectives; the ranking "
                "(top, confirmation) is their equal-weight " + ENSEMBLE_RULE
            )
        if not self.is_ensemble:
            m = self.components[0].metric
            sign = "+" if m.sign > 0 else "-"
            return (
                f"single metric: fitness = {sign}{m.name} ({m.direction} is better), the value "
                "itself, independent of the other results"
            )
        return ENSEMBLE_RULE

    def describe(self) -> list[dict]:
        return [
            {
                "metric": c.metric.name,
                "direction": c.direction or c.metric.direction,
                "weight": float(c.weight),
            }
            for c in self.components
        ]

    def values(self, metrics: Mapping[str, float]) -> tuple[float, ...] | None:
        """The components' direction-applied values, or None if any is missing or not finite
        (then the result has no fitness: it is a failure, never a partial number)."""
        out = []
        for c in self.components:
            value = metrics.get(c.metric.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            out.append(c.sign * value)
        return tuple(out)

    def missing(self, metrics: Mapping[str, float]) -> list[str]:
        """The component metrics without a finite value in ``metrics``."""
        return [
            c.metric.name
            for c in self.components
            if not (
                isinstance(metrics.get(c.metric.name), (int, float))
                and math.isfinite(metrics[c.metric.name])
            )
        ]

    def _doubled_midranks(self, population: Sequence[Sequence[float]]) -> np.ndarray:
        """(N, k) integers: #below + #below-or-equal = 2 * #below + #equal, per component."""
        table = np.asarray(population, dtype=np.float64).reshape(len(population), -1)
        if table.shape[1] != len(self.components):
            raise ValueError(f"expected {len(self.components)} values per member")
        ordered = np.sort(table, axis=0)
        columns = [
            np.searchsorted(ordered[:, j], table[:, j], side="left")
            + np.searchsorted(ordered[:, j], table[:, j], side="right")
            for j in range(table.shape[1])
        ]
        return np.stack(columns, axis=1)

    def percentiles(self, population: Sequence[Sequence[float]]) -> list[tuple[float, ...]]:
        """Each member's mid-rank percentile per component, against the population itself."""
        if not population:
            return []
        n = len(population)
        return [
            tuple(c / (2 * n) for c in row) for row in self._doubled_midranks(population).tolist()
        ]

    def rank(self, population: Sequence[Sequence[float]]) -> list[float]:
        """The fitness of each member of a population (rows of :meth:`values`), against it.

        One metric: the value itself (no rank transform; independent of the population).
        An ensemble: computed exactly in integers and rounded once, so equal weighted means
        are equal floats (ties are real ties) and the score is exactly monotone in each rank.
        """
        if not self.is_ensemble:
            return [float(row[0]) for row in population]
        if not population:
            return []
        weights = [c.weight for c in self.components]
        scale = math.lcm(*(w.denominator for w in weights))
        units = [int(w * scale) for w in weights]  # the weights as integers in a common unit
        denominator = 2 * len(population) * sum(units)
        return [
            sum(u * c for u, c in zip(units, row, strict=True)) / denominator
            for row in self._doubled_midranks(population).tolist()
        ]
