"""Checkpoints (the trained weights) and progress files (what a resumed run continues)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas_engine.errors import TrainingConfigError
from nas_engine.training import atomic_save, resolve_training_device
from nas_engine.training import read_progress as read_progress_file

from ..config import BertConfig, BertConfigError
from .mlm import MaskedLanguageModel, build_model
from .outcome import BertTrainingOutcome
from .recipe import CHECKPOINT_FORMAT, PROGRESS_FORMAT, BertTrainingRecipe


def write_progress(path: str | Path, payload: dict[str, Any]) -> None:
    """Everything the loop needs to go on, written atomically."""
    atomic_save(path, {**payload, "format": PROGRESS_FORMAT})


def read_progress(path: str | Path, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The progress saved at ``path``, checked against this run's ``identity``."""
    return read_progress_file(path, identity, PROGRESS_FORMAT, "BERT training")


def save_checkpoint(
    path: str | Path,
    model: MaskedLanguageModel,
    config: BertConfig,
    recipe: BertTrainingRecipe,
    outcome: BertTrainingOutcome,
    vocab: tuple[str, ...] = (),
) -> None:
    """The trained network and head with everything needed to rebuild them, atomically."""
    atomic_save(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "arch": config.to_dict(),
            "family": recipe.family,
            "recipe": recipe.to_dict(),
            "outcome": outcome.to_dict(),
            "vocab": list(vocab),
        },
    )


@dataclass(frozen=True)
class TrainedBert:
    """A checkpoint loaded: the model (eval mode; ``model.encoder`` is the family network)
    and what it was trained from."""

    model: MaskedLanguageModel
    arch: Mapping[str, Any]
    family: str
    recipe: BertTrainingRecipe
    outcome: Mapping[str, Any]
    vocab: tuple[str, ...]


def load_checkpoint(path: str | Path, device: str = "cpu") -> TrainedBert:
    """The model saved by :func:`~.loop.train_network` (``checkpoint=``), ready to evaluate."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingConfigError(f"cannot read checkpoint {str(path)!r}: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine BERT training checkpoint")
    try:
        config = BertConfig.from_dict(payload["arch"])
    except BertConfigError as exc:
        raise TrainingConfigError(f"checkpoint {str(path)!r}: {exc}") from None
    recipe = BertTrainingRecipe.from_dict(payload["recipe"])
    model = build_model(config, payload["family"], recipe.seed)
    model.load_state_dict(payload["state_dict"])
    model = model.to(resolve_training_device(device)).eval()
    return TrainedBert(
        model,
        payload["arch"],
        payload["family"],
        recipe,
        payload["outcome"],
        tuple(payload["vocab"]),
    )
