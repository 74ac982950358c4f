"""The NAS-Bench-BERT space: configurations, restriction, generator and the encoder model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base import SearchSpace
from .config import BertConfig, BertConfigError, LayerConfig
from .generator import config_distance, mutate_config, sample_config
from .model import BertEncoder, EncoderSizes, count_nonembedding_parameters, count_parameters
from .restriction import Restriction, RestrictionError, parse_restriction, preset_names

__all__ = [
    "BertConfig",
    "BertConfigError",
    "BertEncoder",
    "BertSpace",
    "EncoderSizes",
    "LayerConfig",
    "Restriction",
    "RestrictionError",
    "count_nonembedding_parameters",
    "count_parameters",
    "parse_restriction",
    "preset_names",
]

# Well-known points of the space: an all-attention BERT-small-like encoder, an FNet-like
# one and a ConvBERT-like one (4 layers, hidden 256, 4 heads, one feed-forward layer of 1024).
_PRESET_OPS = {"bert": ("SA", "SDP"), "fnet": ("LT", "DFT"), "convbert": ("DSC", 9)}


class BertSpace(SearchSpace[BertConfig]):
    """NAS-Bench-BERT configurations, optionally restricted (sampling and mutation stay
    inside the restriction; validation accepts any well-formed configuration, at any size,
    so benchmark entries and tiny test models read too)."""

    name = "bert"

    def __init__(self, restriction: Restriction | str | None = None) -> None:
        self.restriction = (
            restriction if isinstance(restriction, Restriction) else parse_restriction(restriction)
        )

    def sample(self, rng: np.random.Generator) -> BertConfig:
        return sample_config(self.restriction, rng)

    def mutate(self, arch: BertConfig, rng: np.random.Generator) -> tuple[BertConfig, str]:
        return mutate_config(arch, self.restriction, rng)

    def validate(self, data: Any) -> BertConfig:
        if isinstance(data, BertConfig):
            return BertConfig.from_dict(data.to_dict())
        if isinstance(data, str):
            return BertConfig.from_json(data)
        return BertConfig.from_dict(data)

    def key(self, arch: BertConfig) -> str:
        return arch.key

    def to_record(self, arch: BertConfig) -> dict:
        return arch.to_dict()

    def distance(self, a: BertConfig, b: BertConfig) -> float:
        return config_distance(a, b)

    def build(self, arch: BertConfig, sizes: EncoderSizes) -> BertEncoder:
        return BertEncoder(arch, sizes)

    def presets(self) -> dict[str, BertConfig]:
        return {
            name: BertConfig(256, (LayerConfig(kind, param, 4, 1024, 1),) * 4)
            for name, (kind, param) in _PRESET_OPS.items()
        }
