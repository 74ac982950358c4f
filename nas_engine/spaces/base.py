"""The one interface every search space implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import numpy as np
from torch import nn

Arch = TypeVar("Arch")


class SearchSpace(ABC, Generic[Arch]):
    """A family of architectures: how to draw, vary, check, identify and build them."""

    name: str

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture from the space's sampling distribution."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> tuple[Arch, str]:
        """A valid child that differs from ``arch``, and the name of the change made."""

    @abstractmethod
    def validate(self, data: Any) -> Arch:
        """Parse a JSON-able description (or JSON text); raise ``ValueError`` naming the fault."""

    @abstractmethod
    def key(self, arch: Arch) -> str:
        """Identifier of the architecture's canonical form: equal archs, equal keys."""

    @abstractmethod
    def to_record(self, arch: Arch) -> dict:
        """The canonical, JSON-able description (``validate`` reads it back)."""

    @abstractmethod
    def distance(self, a: Arch, b: Arch) -> float:
        """0 for the same architecture, growing with structural difference, at most 1."""

    @abstractmethod
    def build(self, arch: Arch, sizes: Any) -> nn.Module:
        """The untrained network for ``arch`` at the given sizes (seed torch first)."""

    @abstractmethod
    def presets(self) -> dict[str, Arch]:
        """Named, well-known architectures of the space."""
