"""The training data: a corpus's splits cut into columns for the recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nas_engine.corpus import Corpus
from nas_engine.errors import TrainingConfigError
from nas_engine.training import training_splits

from .recipe import TrainingRecipe

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class TrainingData:
    """The token streams training reads, checked against the recipe's splits. ``notes`` say
    how the splits were used (for example the valid split cut in two)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    vocab_size: int
    description: str
    vocab: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def prepare_data(corpus: Corpus | str | Path | None, recipe: TrainingRecipe) -> TrainingData:
    """The recipe's splits of ``corpus`` (a loaded corpus, a path, or None for the embedded
    one). Raises :class:`TrainingConfigError` for a split that is missing or too short."""
    splits = training_splits(
        corpus, recipe.train_split, recipe.valid_split, recipe.test_split, recipe.valid_holdout
    )
    corpus, train, valid, test = splits.corpus, splits.train, splits.valid, splits.test
    notes = list(splits.notes)
    data = TrainingData(
        train,
        valid,
        test,
        len(corpus.vocab),
        corpus.description,
        tuple(corpus.vocab.words),
        tuple(notes),
    )
    check_data(data, recipe)
    return data


def check_data(data: TrainingData, recipe: TrainingRecipe) -> None:
    """Every split must give at least one window with its targets."""
    needs = {
        "train": (data.train, recipe.batch_size),
        "valid": (data.valid, recipe.eval_batch_size),
        "test": (data.test, recipe.eval_batch_size),
    }
    for what, (ids, columns) in needs.items():
        if ids is None:
            continue
        if ids.numel() // columns < 2:
            raise TrainingConfigError(
                f"the {what} text has {ids.numel()} tokens, too few for {columns} columns of "
                "at least 2 steps"
            )
