"""The training settings: the NAS-Bench-NLP recipe, shortened (see :mod:`.loop`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_engine.errors import TrainingConfigError
from nas_engine.training import RecipeRecord

if TYPE_CHECKING:
    pass


CHECKPOINT_FORMAT = "nas-engine-checkpoint/1"
PROGRESS_FORMAT = "nas-engine-training-progress/1"

# progress(step, total_steps, loss of this step): called after every optimiser step.
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainingRecipe(RecipeRecord):
    """How to train: the NAS-Bench-NLP recipe (the values of its logs), shortened to ``steps``
    optimiser steps or ``epochs`` passes over the train split (not both; one epoch when
    neither is given)."""

    steps: int | None = None
    epochs: float | None = None  # neither steps nor epochs: one epoch
    lr: float = 1e-3
    batch_size: int = 20
    bptt: int = 70
    eval_batch_size: int = 50
    dropout_output: float = 0.1  # the logs' "dropout"
    dropout_hidden: float = 0.25  # "dropouth": between layers
    dropout_input: float = 0.4  # "dropouti": on the embeddings
    dropout_embedding: float = 0.0  # "dropoute": whole words
    weight_drop: float = 0.1  # "wdrop": DropConnect on the weights reading the state
    alpha: float = 2.0  # activation regularisation
    beta: float = 1.0  # temporal activation regularisation
    weight_decay: float = 1.2e-6  # "wdecay", Adam's L2 term
    clip: float = 0.25  # gradient norm
    seed: int = 0
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    mixed_precision: bool = True  # bf16 decoder and loss on CUDA; never on the CPU
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str | None = "test"  # None: no test evaluation (the trained proxy)
    valid_holdout: float = 0.1  # when training on the valid split: its tail validates

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise TrainingConfigError("give steps or epochs, not both")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise TrainingConfigError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise TrainingConfigError(f"epochs must be > 0, got {self.epochs!r}")
        for name in ("batch_size", "bptt", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.lr < math.inf:
            raise TrainingConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        probabilities = ("dropout_output", "dropout_hidden", "dropout_input", "dropout_embedding")
        for name in (*probabilities, "weight_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainingConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("alpha", "beta", "weight_decay", "clip"):
            if not 0 <= getattr(self, name) < math.inf:
                raise TrainingConfigError(
                    f"{name} must be a finite number >= 0, got {getattr(self, name)}"
                )
        if not 0 < self.valid_holdout < 1:
            raise TrainingConfigError(f"valid_holdout must be in (0, 1), got {self.valid_holdout}")
        self.check_splits()
