"""The training data: a corpus's splits, mapped onto the networks' vocabulary.

Token ids. Every network family has the uncased WordPiece vocabulary's 30522 rows; a corpus
has its own word-level vocabulary. Corpus id ``t`` becomes family id ``1 + t % 30520``
(:func:`family_ids`): row 0 (BERT's [PAD], the paper-notebook family's frozen padding row) is
never used, row 30521 is the [MASK] token (:data:`MASK_TOKEN`), and a corpus of more than
30520 word types folds onto the rows deterministically (the ids ``t`` and ``t + 30520`` then
share a row; the data's notes say so). The embedded corpus (10,000 types) and PTB (10,000)
fit without folding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nas_engine.corpus import Corpus
from nas_engine.errors import TrainingConfigError
from nas_engine.training import training_splits

from ..networks import WORD_ROWS, family_ids
from .recipe import BertTrainingRecipe


@dataclass(frozen=True)
class BertTrainingData:
    """The token streams training reads, already in the networks' ids (:func:`family_ids`).
    ``corpus_vocab_size``: the corpus's word types; ``notes`` say how the splits were used."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    corpus_vocab_size: int
    description: str
    vocab: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def identity(self) -> dict:
        """What a progress file records of the data (resuming on other data is refused)."""
        return {
            "description": self.description,
            "tokens": [
                self.train.numel(),
                self.valid.numel(),
                None if self.test is None else self.test.numel(),
            ],
            "corpus_vocab_size": self.corpus_vocab_size,
        }


def prepare_data(
    corpus: Corpus | str | Path | None, recipe: BertTrainingRecipe
) -> BertTrainingData:
    """The recipe's splits of ``corpus`` (a loaded corpus, a path, or None for the embedded
    one), mapped by :func:`family_ids`. A corpus without the train split is refused with the
    fallback named: ``train_split="valid"`` trains on the first 90% of the valid text and
    validates on its last 10% (``valid_holdout``), as the RNN side. Raises
    :class:`TrainingConfigError` for a split that is missing or too short."""
    splits = training_splits(
        corpus, recipe.train_split, recipe.valid_split, recipe.test_split, recipe.valid_holdout
    )
    corpus, train, valid, test = splits.corpus, splits.train, splits.valid, splits.test
    notes = list(splits.notes)
    types = len(corpus.vocab)
    if types > WORD_ROWS:
        notes.append(
            f"the corpus's {types} word types fold onto the networks' {WORD_ROWS} word rows "
            f"(id -> 1 + id % {WORD_ROWS})"
        )
    data = BertTrainingData(
        family_ids(train),
        family_ids(valid),
        None if test is None else family_ids(test),
        types,
        corpus.description,
        tuple(corpus.vocab.words),
        tuple(notes),
    )
    check_data(data, recipe)
    return data


def check_data(data: BertTrainingData, recipe: BertTrainingRecipe) -> None:
    """The train split must give one batch of whole sequences; valid and test one sequence."""
    needs = {
        "train": (data.train, recipe.batch_size),
        "valid": (data.valid, 1),
        "test": (data.test, 1),
    }
    for what, (ids, sequences) in needs.items():
        if ids is None:
            continue
        if ids.numel() // recipe.bptt < sequences:
            raise TrainingConfigError(
                f"the {what} text has {ids.numel()} tokens, too few for {sequences} "
                f"sequence(s) of {recipe.bptt} tokens"
            )
