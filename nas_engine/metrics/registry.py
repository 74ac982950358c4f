"""The metric registry: one function per metric, registered by name.

A metric function takes a probe (the untrained network, its input batch, and cached passes
over it) and returns a float, or a :class:`Measured` with details worth recording. It raises
:class:`MetricFailure` (or any exception) when the architecture cannot be scored; the engine
records that as a failed result with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["higher", "lower"]


class MetricFailure(RuntimeError):
    """The metric is undefined for this architecture (the message says why)."""


@dataclass(frozen=True)
class Measured:
    value: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float | Measured]
    direction: Direction
    needs: frozenset[str]
    description: str
    space: str

    @property
    def sign(self) -> float:
        """Multiplier that turns the metric into a fitness to maximise."""
        return 1.0 if self.direction == "higher" else -1.0


_METRICS: dict[str, Metric] = {}  # filled once, at import of the metric modules


def register(
    name: str, *, direction: Direction, needs: set[str], description: str, space: str = "rnn"
) -> Callable:
    """Decorator: register ``fn`` under ``name``."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")

    def wrap(fn: Callable) -> Callable:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        _METRICS[name] = Metric(name, fn, direction, frozenset(needs), description, space)
        return fn

    return wrap


def get_metric(name: str, space: str | None = None) -> Metric:
    metric = _METRICS.get(name)
    if metric is None or (space is not None and metric.space != space):
        known = ", ".join(metric_names(space))
        raise KeyError(f"unknown metric {name!r} (known: {known})")
    return metric


def metric_names(space: str | None = None) -> list[str]:
    return sorted(n for n, m in _METRICS.items() if space is None or m.space == space)
