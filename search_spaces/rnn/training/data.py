"""The training data: a corpus's splits cut into columns for the recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nas_engine.corpus import Corpus, CorpusError, embedded_corpus, load_corpus
from nas_engine.errors import TrainingConfigError

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
    if corpus is None:
        corpus = embedded_corpus()
    elif not isinstance(corpus, Corpus):
        try:
            corpus = load_corpus(corpus, recipe.valid_split)
        except CorpusError as exc:
            raise TrainingConfigError(str(exc)) from None
    have = ", ".join(corpus.splits) or "none"
    if recipe.train_split not in corpus.splits:
        hint = ""
        if recipe.train_split == "train" and "valid" in corpus.splits:
            hint = (
                f"; pass --train-split valid to train on the first "
                f"{1 - recipe.valid_holdout:.0%} of the valid text and validate on the rest "
                "(test stays held out)"
            )
        raise TrainingConfigError(
            f"{corpus.description} has no {recipe.train_split!r} split to train on "
            f"(has: {have}){hint}"
        )
    for name in (recipe.valid_split, recipe.test_split):
        if name is not None and name not in corpus.splits:
            raise TrainingConfigError(f"{corpus.description} has no {name!r} split (has: {have})")
    train = corpus.splits[recipe.train_split]
    valid = corpus.splits[recipe.valid_split]
    notes: list[str] = []
    if recipe.train_split == recipe.valid_split:
        # Train on the head, validate on the tail: validation stays held out.
        cut = train.numel() - max(1, int(train.numel() * recipe.valid_holdout))
        train, valid = train[:cut], train[cut:]
        notes.append(
            f"no separate train split: trained on the first {cut} tokens of "
            f"{recipe.valid_split!r}, validated on its last {valid.numel()}"
        )
    test = None if recipe.test_split is None else corpus.splits[recipe.test_split]
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
