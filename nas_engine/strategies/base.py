"""The strategy interface: ask for a candidate, tell its result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..result import Candidate, Result
from ..spaces import SearchSpace


class SpaceExhausted(RuntimeError):
    """The strategy could not find an architecture it has not proposed before."""


class Strategy(ABC):
    """Proposes architectures (``ask``) and learns from their results (``tell``).

    The base class guarantees that no architecture is proposed twice (by canonical key), so
    the search never scores the same cell twice. Subclasses implement ``_propose``.
    """

    name: str
    max_duplicate_draws = 1000

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.proposed: set[str] = set()

    def ask(self) -> Candidate:
        for _ in range(self.max_duplicate_draws):
            arch, origin = self._propose()
            key = self.space.key(arch)
            if key not in self.proposed:
                self.proposed.add(key)
                return Candidate(key, self.space.to_record(arch), origin)
        raise SpaceExhausted(
            f"{self.name}: {self.max_duplicate_draws} draws in a row gave architectures "
            "already evaluated"
        )

    @abstractmethod
    def _propose(self) -> tuple[Any, str]:
        """An architecture and its origin (may repeat an earlier one; ``ask`` filters)."""

    def tell(self, candidate: Candidate, result: Result) -> None:  # noqa: B027
        """Learn from a result (random search ignores it)."""

    def stats(self) -> dict:
        return {}
