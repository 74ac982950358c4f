"""The NAS-Bench-NLP recurrent cell space."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base import SearchSpace
from .generator import PRESETS, cell_distance, mutate_cell, preset, sample_cell
from .model import (
    CellRecord,
    ModelSizes,
    RecipeCell,
    RNNLanguageModel,
    StackRecord,
    count_parameters,
)
from .recipe import Recipe, RecipeError

__all__ = [
    "CellRecord",
    "ModelSizes",
    "RNNLanguageModel",
    "RNNSpace",
    "Recipe",
    "RecipeCell",
    "RecipeError",
    "StackRecord",
    "count_parameters",
    "preset",
]


class RNNSpace(SearchSpace[Recipe]):
    """Cells of NAS-Bench-NLP; architectures are :class:`Recipe` objects."""

    name = "rnn"

    def __init__(self, max_nodes: int = 24) -> None:
        self.max_nodes = max_nodes

    def sample(self, rng: np.random.Generator) -> Recipe:
        return sample_cell(rng)

    def mutate(self, arch: Recipe, rng: np.random.Generator) -> tuple[Recipe, str]:
        return mutate_cell(arch, rng, max_nodes=self.max_nodes)

    def validate(self, data: Any) -> Recipe:
        if isinstance(data, Recipe):
            data.validate()
            return data
        if isinstance(data, str):
            return Recipe.from_json(data)
        return Recipe.from_dict(data)

    def key(self, arch: Recipe) -> str:
        return arch.key

    def to_record(self, arch: Recipe) -> dict:
        return arch.canonical.to_dict()

    def distance(self, a: Recipe, b: Recipe) -> float:
        return cell_distance(a, b)

    def build(self, arch: Recipe, sizes: ModelSizes) -> RNNLanguageModel:
        return RNNLanguageModel(arch, sizes)

    def presets(self) -> dict[str, Recipe]:
        return {name: preset(name) for name in PRESETS}
