"""Random search: independent draws from the space's generator distribution."""

from __future__ import annotations

from typing import Any

from .base import Strategy


class RandomSearch(Strategy):
    name = "random"

    def _propose(self) -> tuple[Any, str]:
        return self.space.sample(self.rng), "sample"
