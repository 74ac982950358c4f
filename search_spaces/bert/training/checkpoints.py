"""Checkpoints (the trained weights) and progress files (what a resumed run continues)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas_engine.errors import TrainingConfigError

from ..config import BertConfig, BertConfigError
from .mlm import MaskedLanguageModel, build_model
from .outcome import BertTrainingOutcome
from .recipe import (
    CHECKPOINT_FORMAT,
    PROGRESS_FORMAT,
    BertTrainingRecipe,
    resolve_training_device,
)


def _atomic_save(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def write_progress(path: str | Path, payload: dict[str, Any]) -> None:
    """Everything the loop needs to go on, written atomically (a temporary file, then a
    rename: a crash never leaves a torn file)."""
    _atomic_save(path, {**payload, "format": PROGRESS_FORMAT})


def read_progress(path: str | Path, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The progress saved at ``path``, refused (one line) when it is missing, unreadable, not a
    BERT progress file, or saved by a run of another architecture, sizes, recipe or data."""
    path = Path(path)
    if not path.is_file():
        raise TrainingConfigError(f"nothing to resume: {str(path)!r} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingConfigError(f"cannot read {str(path)!r}: {first}") from None
    if not isinstance(saved, dict) or saved.get("format") != PROGRESS_FORMAT:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine BERT training progress file")
    changed = [key for key, value in identity.items() if saved.get(key) != value]
    if changed:
        raise TrainingConfigError(
            f"cannot resume {str(path)!r}: it trains another {' and '.join(changed)}"
        )
    return saved


def save_checkpoint(
    path: str | Path,
    model: MaskedLanguageModel,
    config: BertConfig,
    recipe: BertTrainingRecipe,
    outcome: BertTrainingOutcome,
    vocab: tuple[str, ...] = (),
) -> None:
    """The trained network and head with everything needed to rebuild them, atomically."""
    _atomic_save(
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
