"""Fitness: the number a strategy maximises, from an architecture's metric values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .metrics import Metric, get_metric


@dataclass(frozen=True)
class Fitness:
    """A single metric with its direction applied (lower-is-better metrics are negated)."""

    metric: Metric

    @classmethod
    def parse(cls, spec: str, space: str) -> Fitness:
        return cls(get_metric(spec.strip(), space))

    @property
    def name(self) -> str:
        return self.metric.name

    def __call__(self, metrics: Mapping[str, float]) -> float:
        return self.metric.sign * metrics[self.metric.name]
