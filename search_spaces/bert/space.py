"""The NAS-Bench-BERT space, as the engine sees it (:class:`~nas_engine.spaces.SearchSpace`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nas_engine.spaces import SearchSpace, register_space

from .config import BertConfig, LayerConfig
from .describe import layer_list
from .generator import config_distance, mutate_config, sample_config
from .model import BertEncoder, EncoderSizes
from .networks import FAMILIES
from .probe import BertProber, check_bert_need
from .restriction import Restriction, parse_restriction
from .training import BERT_TRAINER

if TYPE_CHECKING:
    from nas_engine.corpus import Corpus
    from nas_engine.scoring import ScoringSetup

# Well-known points of the space: an all-attention BERT-small-like encoder, an FNet-like
# one and a ConvBERT-like one (4 layers, hidden 256, 4 heads, one feed-forward layer of 1024).
_PRESET_OPS = {"bert": ("SA", "SDP"), "fnet": ("LT", "DFT"), "convbert": ("DSC", 9)}


@register_space
class BertSpace(SearchSpace[BertConfig]):
    """NAS-Bench-BERT configurations, optionally restricted (sampling and mutation stay
    inside the restriction; validation accepts any well-formed configuration, at any size,
    so benchmark entries and tiny test models read too)."""

    name = "bert"
    restrictable = True
    trainer = BERT_TRAINER
    default_fitness = "head_confidence"  # the paper's best BERT metric (docs/bert.md)
    networks = FAMILIES
    default_network = "literal"  # the space as labelled: what a user trains (docs/bert.md)

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

    def prober(
        self, setup: ScoringSetup, corpus: Corpus, device: torch.device, needs: frozenset[str]
    ) -> BertProber:
        """The scorer's prober: ``batch_size`` sequences of ``bptt`` tokens."""
        return BertProber(
            corpus,
            setup.split,
            setup.batch_size,
            setup.bptt,
            setup.seed,
            device,
            needs,
            setup.network or self.default_network,
        )

    def check_need(self, need: str) -> None:
        check_bert_need(need)

    def describe(self, arch: BertConfig) -> str:
        """Hidden size x layers, then each layer's operation, heads and feed-forward."""
        return layer_list(arch)
