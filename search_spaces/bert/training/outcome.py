"""What a BERT training run ends with: a frozen record, ok or failed with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nas_engine.training import OutcomeRecord


@dataclass(frozen=True)
class BertTrainingOutcome(OutcomeRecord):
    """What one masked-LM run gave. ``status`` ok or failed (``error`` says why); losses are
    mean masked-token cross-entropies in nats over the networks' 30522 rows (``train_loss``:
    the mean over the last tenth of the steps), perplexities their exp (the masked tokens'
    perplexity, not a left-to-right one); None where not reached. The field names are the RNN
    outcome's, so confirmation and ``nas_engine.train`` read both."""

    status: Literal["ok", "failed"]
    error: str | None
    train_loss: float | None
    valid_loss: float | None
    valid_ppl: float | None
    test_loss: float | None
    test_ppl: float | None
    steps: int
    epochs: float
    tokens: int  # training tokens read (whole sequences, masked or not)
    seconds: float  # the whole call: setup, training and evaluation
    train_seconds: float
    tokens_per_s: float
    param_count: int  # the network and its MLM head (the tied projection counted once)
    device: str
    mixed_precision: bool  # used, not just asked for
    family: str = "literal"
    sizes: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
