"""What every space's trainer shares: the corpus splits a recipe trains, validates and tests
on, and progress files written atomically and read back checked."""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .corpus import Corpus, CorpusError, embedded_corpus, load_corpus
from .devices import resolve_device
from .errors import TrainingConfigError


@dataclass(frozen=True)
class Splits:
    """The token ids a training run reads, and what a reader should know about them."""

    corpus: Corpus
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    notes: tuple[str, ...]


def training_splits(
    corpus: Corpus | str | Path | None,
    train_split: str,
    valid_split: str,
    test_split: str | None,
    valid_holdout: float,
) -> Splits:
    """The splits of ``corpus`` (a loaded corpus, a path, or None for the embedded one). A
    corpus without the train split is refused with the fallback named: ``train_split`` equal
    to ``valid_split`` trains on the head of that split and validates on its last
    ``valid_holdout``, test held out. Raises :class:`TrainingConfigError` (one line)."""
    if corpus is None:
        corpus = embedded_corpus()
    elif not isinstance(corpus, Corpus):
        try:
            corpus = load_corpus(corpus, valid_split)
        except CorpusError as exc:
            raise TrainingConfigError(str(exc)) from None
    have = ", ".join(corpus.splits) or "none"
    if train_split not in corpus.splits:
        hint = ""
        if train_split == "train" and "valid" in corpus.splits:
            hint = (
                f"; pass --train-split valid to train on the first {1 - valid_holdout:.0%} of "
                "the valid text and validate on the rest (test stays held out)"
            )
        raise TrainingConfigError(
            f"{corpus.description} has no {train_split!r} split to train on (has: {have}){hint}"
        )
    for name in (valid_split, test_split):
        if name is not None and name not in corpus.splits:
            raise TrainingConfigError(f"{corpus.description} has no {name!r} split (has: {have})")
    train = corpus.splits[train_split]
    valid = corpus.splits[valid_split]
    notes: list[str] = []
    if train_split == valid_split:
        # Train on the head, validate on the tail: validation stays held out.
        cut = train.numel() - max(1, int(train.numel() * valid_holdout))
        train, valid = train[:cut], train[cut:]
        notes.append(
            f"no separate train split: trained on the first {cut} tokens of "
            f"{valid_split!r}, validated on its last {valid.numel()}"
        )
    test = None if test_split is None else corpus.splits[test_split]
    return Splits(corpus, train, valid, test, tuple(notes))


def atomic_save(path: str | Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary file, then a rename: a crash never leaves a torn file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(payload), tmp)
    os.replace(tmp, path)


def read_progress(
    path: str | Path, identity: Mapping[str, Any], file_format: str, what: str
) -> dict[str, Any]:
    """The progress saved at ``path``, refused (one line) when it is missing, unreadable, not
    a ``file_format`` file (``what`` names it), or saved by a run whose ``identity`` (the
    architecture, sizes, recipe, data) differs."""
    path = Path(path)
    if not path.is_file():
        raise TrainingConfigError(f"nothing to resume: {str(path)!r} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingConfigError(f"cannot read {str(path)!r}: {first}") from None
    if not isinstance(saved, dict) or saved.get("format") != file_format:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine {what} progress file")
    changed = [key for key, value in identity.items() if saved.get(key) != value]
    if changed:
        raise TrainingConfigError(
            f"cannot resume {str(path)!r}: it trains another {' and '.join(changed)}"
        )
    return saved


class OutcomeRecord:
    """What every trainer's outcome (a dataclass with ``status`` and ``notes``) shares: ok,
    and the JSON-able record with non-finite numbers as null."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        for key, value in data.items():
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = None
        data["notes"] = list(self.notes)  # type: ignore[attr-defined]
        return data


def perplexity(loss: float | None) -> float | None:
    """exp(loss), None for no loss, infinite past float range."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else math.inf


def failure_reason(exc: BaseException) -> str:
    """One line for a training that raised (a network that breaks training is an outcome, not
    a crash): out of memory, or the exception's type, first line and where it was raised."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {first}"
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {first}{place}"


def loss_figures(
    losses: list[float],
    valid_loss: float | None,
    test_loss: float | None,
    per_epoch: int,
    tokens: int,
    seconds: float,
    train_seconds: float,
) -> dict[str, Any]:
    """The figures every trainer's outcome records from its run: the training loss (the mean
    of the last tenth of the steps), the validation and test losses and perplexities, steps,
    epochs, tokens, seconds and throughput."""
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "train_loss": sum(tail) / len(tail) if tail else None,
        "valid_loss": valid_loss,
        "valid_ppl": perplexity(valid_loss),
        "test_loss": test_loss,
        "test_ppl": perplexity(test_loss),
        "steps": len(losses),
        "epochs": len(losses) / per_epoch,
        "tokens": tokens,
        "seconds": seconds,
        "train_seconds": train_seconds,
        "tokens_per_s": tokens / train_seconds if train_seconds > 0 else 0.0,
    }


class RecipeRecord:
    """What every trainer's recipe (a frozen dataclass) shares: its JSON-able record, read back
    with unknown keys refused, and the split check both trainers make."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):  # noqa: ANN206 (the subclass)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)

    def check_splits(self) -> None:
        if self.train_split == self.test_split:  # type: ignore[attr-defined]
            raise TrainingConfigError(
                f"training on the {self.test_split!r} split would leave no held-out test "  # type: ignore[attr-defined]
                "text (use another train split, or no test split)"
            )


def resolve_training_device(name: str) -> torch.device:
    """cpu, cuda, cuda:N or auto; a CUDA device that is absent is bad input."""
    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise TrainingConfigError(str(exc)) from None
