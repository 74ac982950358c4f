"""A probe: one untrained network and its input batch, with passes run once and shared."""

from __future__ import annotations

from functools import cached_property

import torch

from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, count_parameters


class RNNProbe:
    """What the RNN metrics read. The model is built lazily from ``seed`` (without touching
    torch's global RNG state), only as deep as the requested metrics need (``depth``), and
    passes are run at most once."""

    def __init__(
        self,
        recipe: Recipe,
        sizes: ModelSizes,
        tokens: torch.Tensor,
        seed: int,
        device: torch.device | str = "cpu",
        depth: int | None = None,
    ) -> None:
        self.recipe = recipe
        self.sizes = sizes
        self.tokens = tokens
        self.seed = seed
        self.device = torch.device(device)
        self.depth = sizes.num_layers if depth is None else depth

    @cached_property
    def model(self) -> RNNLanguageModel:
        # Weights are drawn on the CPU generator whatever the device, so an architecture
        # gets the same network, and the same score up to rounding, on CPU and GPU.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = RNNLanguageModel(self.recipe, self.sizes, "cpu", build_layers=self.depth)
        return model.to(self.device).eval()

    @cached_property
    def param_count(self) -> int:
        return count_parameters(RNNLanguageModel(self.recipe, self.sizes, device="meta"))

    @cached_property
    def _entering(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.model.entering_states(self.tokens.to(self.device), self.depth)

    def entering_states(self, layer: int) -> torch.Tensor:
        """(T, B, H): the first state element entering layer ``layer``'s cell (1-based)."""
        if not 1 <= layer <= self.sizes.num_layers:
            raise ValueError(f"layer must be in 1..{self.sizes.num_layers}, got {layer}")
        if layer > self.depth:
            raise ValueError(f"probe planned for depth {self.depth}, asked for layer {layer}")
        return self._entering[layer - 1]
