"""What a training run ends with: a frozen record, ok or failed with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    pass


from nas_engine.training import OutcomeRecord


@dataclass(frozen=True)
class TrainingOutcome(OutcomeRecord):
    """What one training run gave. ``status`` ok or failed (``error`` says why); losses are
    mean next-token cross-entropies in nats (``train_loss``: the mean over the last tenth of the
    steps, without the AR/TAR terms), perplexities their exp; None where not reached."""

    status: Literal["ok", "failed"]
    error: str | None
    train_loss: float | None
    valid_loss: float | None
    valid_ppl: float | None
    test_loss: float | None
    test_ppl: float | None
    steps: int
    epochs: float
    tokens: int  # training tokens read
    seconds: float  # the whole call: setup, training and evaluation
    train_seconds: float
    tokens_per_s: float
    param_count: int
    device: str
    mixed_precision: bool  # used, not just asked for
    sizes: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
