"""Checkpoints (the trained weights) and progress files (what --resume continues)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas_engine.errors import TrainingConfigError
from nas_engine.training import atomic_save, resolve_training_device
from nas_engine.training import read_progress as read_progress_file

from ..model import ModelSizes, RNNLanguageModel
from ..recipe import Recipe
from .outcome import TrainingOutcome
from .recipe import CHECKPOINT_FORMAT, PROGRESS_FORMAT, TrainingRecipe

if TYPE_CHECKING:
    pass


def state_to(
    state: list[tuple[torch.Tensor, ...]] | None, device: torch.device | str
) -> list[tuple[torch.Tensor, ...]] | None:
    return None if state is None else [tuple(t.to(device) for t in layer) for layer in state]


def write_progress(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_save(path, payload)


def read_progress(path: str | Path, identity: Mapping[str, Any]) -> dict[str, Any]:
    return read_progress_file(path, identity, PROGRESS_FORMAT, "training")


def save_checkpoint(
    path: str | Path,
    model: RNNLanguageModel,
    cell: Recipe,
    sizes: ModelSizes,
    recipe: TrainingRecipe,
    outcome: TrainingOutcome,
    vocab: tuple[str, ...] = (),
) -> None:
    """Write the trained weights with everything needed to rebuild the model; written to a
    temporary file first, so a crash never leaves a torn checkpoint."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": cell.to_dict(),
        "sizes": asdict(sizes),
        "recipe": recipe.to_dict(),
        "outcome": outcome.to_dict(),
        "vocab": list(vocab),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint loaded: the model (eval mode) and what it was trained from."""

    model: RNNLanguageModel
    arch: Mapping[str, Any]
    sizes: ModelSizes
    recipe: TrainingRecipe
    outcome: Mapping[str, Any]
    vocab: tuple[str, ...]


def load_checkpoint(path: str | Path, device: str = "cpu") -> TrainedModel:
    """The model saved by :func:`train_architecture` (``checkpoint=``), ready to evaluate."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise TrainingConfigError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine training checkpoint")
    sizes = ModelSizes(**payload["sizes"])
    cell = Recipe.from_dict(payload["arch"])
    model = RNNLanguageModel(cell, sizes, "cpu")
    model.load_state_dict(payload["state_dict"])
    model = model.to(resolve_training_device(device)).eval()
    return TrainedModel(
        model,
        payload["arch"],
        sizes,
        TrainingRecipe.from_dict(payload["recipe"]),
        payload["outcome"],
        tuple(payload["vocab"]),
    )
