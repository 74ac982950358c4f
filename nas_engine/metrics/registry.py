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

from ..spaces.registry import load_all_spaces, load_space, space_names

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
    def trained(self) -> bool:
        """A trained proxy (it needs a training run), not a training-free metric."""
        return "training" in self.needs

    @property
    def sign(self) -> float:
        """Multiplier that turns the metric into a fitness to maximise."""
        return 1.0 if self.direction == "higher" else -1.0


# Filled once, at import of each space's metric modules (and of plugins), by (space, name):
# two spaces may both have a ``params``.
_METRICS: dict[tuple[str, str], Metric] = {}


def register(
    name: str, *, space: str, direction: Direction, needs: set[str], description: str
) -> Callable:
    """Decorator: register ``fn`` as metric ``name`` of ``space``."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")

    def wrap(fn: Callable) -> Callable:
        key = (space, name)
        known = _METRICS.get(key)
        if known is not None and _origin(known.fn) != _origin(fn):
            raise ValueError(f"metric {name!r} of space {space!r} is registered twice")
        _METRICS[key] = Metric(name, fn, direction, frozenset(needs), description, space)
        return fn

    return wrap


def _origin(fn: Callable) -> object:
    # A module executed again (importlib.reload) registers the same code again: allowed.
    return getattr(fn, "__code__", fn)


def _load(space: str | None) -> None:
    """Import the space (or every built-in space): their modules register their metrics."""
    if space is None:
        load_all_spaces()
    else:
        try:
            load_space(space)
        except KeyError:
            pass  # no metric of an unknown space: the lookup says which metrics exist


def get_metric(name: str, space: str | None = None) -> Metric:
    """The metric ``name`` of ``space``; without a space, that of the first space that has it
    (the built-in spaces in order: the RNN one where both have it)."""
    _load(space)
    if space is None:  # the spaces in the registry's order: the built-in ones first
        metric = next((_METRICS[(s, name)] for s in space_names() if (s, name) in _METRICS), None)
    else:
        metric = _METRICS.get((space, name))
    if metric is None:
        known = ", ".join(metric_names(space, trained=True))
        raise KeyError(f"unknown metric {name!r} (known: {known})")
    return metric


def metric_names(space: str | None = None, *, trained: bool = False) -> list[str]:
    """The training-free metrics (of ``space``); with ``trained``, the trained proxies too
    ("all metrics" of the reports and benchmarks means the training-free ones)."""
    _load(space)
    return sorted(
        {
            m.name
            for m in _METRICS.values()
            if (space is None or m.space == space) and (trained or not m.trained)
        }
    )


def metrics_of(space: str | None = None) -> list[Metric]:
    """Every registered metric (of ``space``), by space then name."""
    _load(space)
    chosen = (m for m in _METRICS.values() if space is None or m.space == space)
    return sorted(chosen, key=lambda m: (m.space, m.name))
