"""The training settings of a BERT-space network: a brief masked-LM pre-training.

Defaults follow the benchmark's pre-training where a short CPU-sized run allows
(``nasbench_bert/as_trained.md`` §3.1, §3.5): AdamW with lr 5e-4, betas (0.9, 0.999), eps 1e-6,
weight decay 0.01 (not on biases or LayerNorm), gradient norm clipped at 1.0, a linear warm-up
over the first 10% of the steps then a linear decay to 0, sequences of 128 tokens, mask
probability 0.15. The batch is 32 sequences, not the benchmark's 128 (a confirmation run is
short and may run on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas_engine.errors import TrainingConfigError
from nas_engine.training import RecipeRecord

from ..networks import FAMILIES, MAX_POSITIONS

CHECKPOINT_FORMAT = "nas-engine-bert-checkpoint/1"
PROGRESS_FORMAT = "nas-engine-bert-training-progress/1"

# progress(step, total_steps, loss of this step): called after every optimiser step.
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class BertTrainingRecipe(RecipeRecord):
    """How to pre-train a BERT-space network briefly with masked-LM: ``steps`` optimiser steps
    or ``epochs`` passes over the train split's sequences (not both; one epoch when neither is
    given).

    ``bptt`` is the sequence length (at most the networks' 512 positions); it keeps the RNN
    recipe's name so that ``python -m nas_engine.train --bptt`` and confirmation set both
    spaces' recipes with the same keywords. ``mixed_precision``: the MLM head's vocabulary
    projection in bf16 on CUDA (the encoder stays float32: ``torch.fft``, which the literal
    family's LT layers use, has no bf16 kernels); never on the CPU."""

    steps: int | None = None
    epochs: float | None = None  # neither steps nor epochs: one epoch
    lr: float = 5e-4
    batch_size: int = 32  # sequences per step
    bptt: int = 128  # the sequence length
    eval_batch_size: int = 64
    mask_probability: float = 0.15  # round(p * length) positions per sequence, at least 1
    warmup: float = 0.1  # fraction of the steps with a linear warm-up; then linear decay to 0
    weight_decay: float = 0.01  # AdamW's, on weights with 2 or more dimensions only
    clip: float = 1.0  # gradient norm; 0: none
    seed: int = 0
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    mixed_precision: bool = True
    family: str = "literal"  # the network family (search_spaces.bert.networks.FAMILIES)
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str | None = "test"  # None: no test evaluation
    valid_holdout: float = 0.1  # when training on the valid split: its tail validates

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise TrainingConfigError("give steps or epochs, not both")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise TrainingConfigError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.epochs is not None and not (
            isinstance(self.epochs, (int, float)) and 0 < self.epochs < math.inf
        ):
            raise TrainingConfigError(f"epochs must be a finite number > 0, got {self.epochs!r}")
        for name in ("batch_size", "bptt", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not 2 <= self.bptt <= MAX_POSITIONS:
            raise TrainingConfigError(
                f"bptt (the sequence length) must be in [2, {MAX_POSITIONS}], got {self.bptt}"
            )
        if not _number(self.lr) or not 0 < self.lr < math.inf:
            raise TrainingConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _number(self.mask_probability) or not 0 < self.mask_probability < 1:
            raise TrainingConfigError(
                f"mask_probability must be in (0, 1), got {self.mask_probability!r}"
            )
        if not _number(self.warmup) or not 0 <= self.warmup < 1:
            raise TrainingConfigError(f"warmup must be in [0, 1), got {self.warmup!r}")
        for name in ("weight_decay", "clip"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value < math.inf:
                raise TrainingConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not _number(self.valid_holdout) or not 0 < self.valid_holdout < 1:
            raise TrainingConfigError(
                f"valid_holdout must be in (0, 1), got {self.valid_holdout!r}"
            )
        if self.family not in FAMILIES:
            raise TrainingConfigError(
                f"unknown network family {self.family!r} (known: {', '.join(FAMILIES)})"
            )
        self.check_splits()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
