"""The NAS-Bench-NLP cell space, as the engine sees it (:class:`~nas_engine.spaces.SearchSpace`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nas_engine.devices import resolve_device
from nas_engine.errors import ConfigError
from nas_engine.health import STABILITY, growth_of, state_verdict
from nas_engine.metrics import get_metric
from nas_engine.spaces import SearchSpace, Trainer, register_space

from .batched import BatchedScorer
from .describe import cell_formula, draw_cell
from .generator import PRESETS, cell_distance, mutate_cell, preset, sample_cell
from .model import ModelSizes, RNNLanguageModel
from .probe import RNNProbe, RNNProber, check_need, first_layer_only
from .recipe import Recipe
from .training import TrainingRecipe, prepare_data, train_architecture

if TYPE_CHECKING:
    from nas_engine.corpus import Corpus
    from nas_engine.scoring import ScoringSetup


def training_sizes(data: Any, sizes: dict[str, Any]) -> ModelSizes:
    """The model sizes for training on ``data`` (its vocabulary) at the user's sizes."""
    return ModelSizes(
        vocab_size=data.vocab_size,
        embedding_size=sizes["embedding_size"],
        hidden_size=sizes["hidden_size"],
        num_layers=sizes["layers"],
    )


@register_space
class RNNSpace(SearchSpace[Recipe]):
    """Cells of NAS-Bench-NLP; architectures are :class:`Recipe` objects."""

    name = "rnn"
    size_defaults = {
        "embedding_size": ModelSizes.embedding_size,
        "hidden_size": ModelSizes.hidden_size,
        "layers": ModelSizes.num_layers,
        "init_gain": ModelSizes.init_gain,
    }
    features = frozenset({"cuda_graphs", "cell_batch"})
    default_fitness = "hidden_cov"  # Serianni & Kalita's hidden covariance
    trainer = Trainer(
        recipe=TrainingRecipe,
        prepare_data=prepare_data,
        sizes=training_sizes,
        train=train_architecture,
    )
    scorer_class = BatchedScorer

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

    def prober(
        self, setup: ScoringSetup, corpus: Corpus, device: torch.device, needs: frozenset[str]
    ) -> RNNProber:
        return RNNProber(setup, corpus, device, needs)

    def check_need(self, need: str) -> None:
        check_need(need)

    def check_setup(self, setup: ScoringSetup, needs: frozenset[str]) -> None:
        layers = setup.num_layers or ModelSizes.num_layers
        for name in setup.metrics:
            for need in get_metric(name, self.name).needs:
                layer = need.partition(":")[2]
                if need.startswith("entering_states:") and int(layer) > layers:
                    raise ConfigError(
                        f"{name} needs at least {layer} layers, the model has {layers}"
                    )
        if setup.cuda_graphs and resolve_device(setup.device).type != "cuda":
            raise ConfigError(
                "CUDA graphs record the RNN cells' steps on a CUDA device "
                f"(space {self.name!r}, device {setup.device})"
            )
        if setup.cell_batch and not first_layer_only(needs, layers):
            raise ConfigError(
                "cell batches run the first layer's forward of a batch's cells together; the "
                f"metrics {', '.join(setup.metrics)} read more than the first layer's entering "
                f"states (needs: {', '.join(sorted(needs))})"
            )

    def health(self, probe: RNNProbe, details: dict) -> str | None:
        """The health rule (:mod:`nas_engine.health`) on the scoring pass's states: why the
        network is degenerate, or None; the stress growth goes into ``details``."""
        verdict = state_verdict(probe.health_states())
        if verdict.degenerate is None:
            details[STABILITY] = round(growth_of(probe.stress_rms()), 6)
        return verdict.degenerate

    def describe(self, arch: Recipe) -> str:
        """``h_new`` (and any other new state) as a formula of ``x`` and the previous states."""
        return cell_formula(arch)

    def draw(self, arch: Recipe, path: Path) -> bool:
        draw_cell(arch, path)
        return True
