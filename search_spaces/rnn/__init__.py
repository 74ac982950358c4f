"""The NAS-Bench-NLP recurrent cell space: cells, models, probes, metrics and training.

Importing the package registers the space (:class:`RNNSpace`) and its metrics."""

from __future__ import annotations

from . import metrics as _metrics  # noqa: F401  (registers the space's metrics)
from .generator import preset
from .model import CellRecord, ModelSizes, RecipeCell, RNNLanguageModel, StackRecord
from .recipe import Recipe, RecipeError
from .space import RNNSpace

__all__ = [
    "CellRecord",
    "ModelSizes",
    "RNNLanguageModel",
    "RNNSpace",
    "Recipe",
    "RecipeCell",
    "RecipeError",
    "StackRecord",
    "preset",
]
