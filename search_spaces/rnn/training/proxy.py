"""The trained proxy's training: what a scorer hands each probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_engine.corpus import Corpus

from ..model import ModelSizes
from ..recipe import Recipe
from .data import TrainingData, prepare_data
from .loop import train_architecture
from .outcome import TrainingOutcome
from .recipe import TrainingRecipe

if TYPE_CHECKING:
    from nas_engine.scoring import ScoringSetup


@dataclass(frozen=True)
class ProxyTraining:
    """The trained-proxy fitness's training: the corpus splits prepared once per scorer, and
    the recipe every candidate is trained with (no test evaluation: the proxy reads the
    validation loss only)."""

    data: TrainingData
    recipe: TrainingRecipe

    @classmethod
    def from_setup(cls, corpus: Corpus, setup: ScoringSetup) -> ProxyTraining:
        """The benchmark's recipe for ``setup.proxy_steps`` (or ``proxy_epochs``; one epoch
        without either) on the scoring batch shape (``batch_size`` x ``bptt``), seed and
        device. Raises :class:`TrainingConfigError` for a corpus it cannot train on."""
        recipe = TrainingRecipe(
            steps=setup.proxy_steps,
            epochs=setup.proxy_epochs,
            batch_size=setup.batch_size,
            bptt=setup.bptt,
            seed=setup.seed,
            device=setup.device,
            train_split=setup.proxy_train_split,
            test_split=None,
        )
        return cls(prepare_data(corpus, recipe), recipe)

    def run(self, cell: Recipe, sizes: ModelSizes) -> TrainingOutcome:
        return train_architecture(cell, sizes, self.data, self.recipe)


# ---------------------------------------------------------------------- checkpoints
