"""Executors run scoring jobs; strategies never know which one does.

An executor is started with a :class:`ScoringSetup` (each worker builds its own
:class:`Scorer` from it, so the batch is built once per worker), accepts up to ``capacity``
candidates in flight, and hands back finished ones as they complete.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque

from .corpus import Corpus
from .result import Candidate, Evaluation
from .scoring import Scorer, ScoringSetup


class Executor(ABC):
    capacity: int = 1

    @abstractmethod
    def start(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None: ...

    @abstractmethod
    def submit(self, candidate: Candidate) -> None: ...

    @abstractmethod
    def wait(self) -> list[tuple[Candidate, Evaluation]]:
        """Block until at least one submitted candidate is done; return the done ones."""

    @abstractmethod
    def pending(self) -> int: ...

    def shutdown(self) -> None:  # noqa: B027
        """Release workers (nothing to do in-process)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class InProcessExecutor(Executor):
    """Scores in the calling process, one candidate at a time, in submission order."""

    capacity = 1

    def __init__(self) -> None:
        self._queue: deque[Candidate] = deque()
        self._scorer: Scorer | None = None

    def start(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        self._scorer = Scorer(setup, corpus)

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise RuntimeError("executor not started")
        return self._scorer

    def submit(self, candidate: Candidate) -> None:
        self._queue.append(candidate)

    def wait(self) -> list[tuple[Candidate, Evaluation]]:
        candidate = self._queue.popleft()
        return [(candidate, self.scorer.score(candidate))]

    def pending(self) -> int:
        return len(self._queue)


def make_executor(name: str) -> Executor:
    if name == "inprocess":
        return InProcessExecutor()
    raise KeyError(f"unknown executor {name!r} (known: inprocess)")
