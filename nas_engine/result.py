"""Records of a search: candidates proposed and results reported."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed"]
# details key: the reason of each extra metric that failed on an ok result (its value is null)
METRIC_ERRORS = "metric_errors"
# details key: the stability guard flagged this ok result (nas_engine.health); it is kept out
# of the ranking, evolution's parents, the run's answer and the Pareto front.
FLAGGED = "stability_flagged"
# The details key under which an evaluation records why its cell batch fell back (the RNN
# space's batch scorer); a search's summary counts them.
CELL_BATCH_FALLBACK = "cell_batch_fallback"


@dataclass(frozen=True)
class Candidate:
    """An architecture a strategy proposes: its canonical key, record and where it came from
    (``sample``, ``preset:NAME`` or ``mutate:KIND:PARENT_KEY``)."""

    key: str
    arch: Mapping[str, Any]
    origin: str = "sample"


@dataclass(frozen=True)
class Evaluation:
    """What scoring one candidate produced (before fitness is assigned)."""

    status: Status
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    # Each failed metric's own reason (``error`` joins them all, with any failure before the
    # metrics ran, such as an invalid architecture, that no metric owns).
    metric_errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One evaluated architecture. ``fitness`` is maximised; it is None when failed."""

    index: int
    arch_id: str
    arch: Mapping[str, Any]
    origin: str
    status: Status
    fitness: float | None
    metrics: Mapping[str, float]
    details: Mapping[str, Any]
    error: str | None
    seconds: float
    # The architecture as its space shows it to a person (an RNN cell's formula, a BERT
    # encoder's layer list); None where it could not be read.
    description: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def flagged(self) -> bool:
        """Ok, but flagged by the stability guard: recorded, never ranked."""
        return bool(self.details.get(FLAGGED))

    @property
    def ranked(self) -> bool:
        """Ok with a fitness and not flagged: a result the ranking, the strategies' parents,
        the answer and the Pareto front may use."""
        return self.ok and self.fitness is not None and not self.flagged

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Result:
        return cls(**json.loads(line))


def finite_or_none(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
