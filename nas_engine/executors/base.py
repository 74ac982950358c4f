"""Executors run scoring jobs; strategies never know which one does.

An executor is started with a :class:`ScoringSetup` (each worker builds its own
:class:`Scorer` from it, so the batch is built once per worker), accepts up to ``capacity``
candidates in flight, and hands back finished ones as they complete. Failures of the machinery
(a worker process that dies, a call that runs past the time limit) come back as failed
evaluations with the reason, never as an exception that ends the search.

Executors also run whole jobs (``run_jobs``: a top-level function over a list of argument
tuples), which is how the best architectures are trained after a search.
"""

from __future__ import annotations

import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..corpus import Corpus
from ..result import Candidate, Evaluation
from ..scoring import ScoringSetup

EXECUTORS = ("inprocess", "ray")


class ExecutorError(RuntimeError):
    """The executor cannot run (for example, Ray cannot start or reach its cluster)."""


@dataclass(frozen=True)
class JobFailure:
    """What a job returns instead of its value when it could not finish."""

    reason: str


class Executor(ABC):
    """Scores candidates; ``capacity`` of them may be in flight at once."""

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

    @abstractmethod
    def run_jobs(
        self, fn: Callable[..., Any], jobs: list[tuple]
    ) -> Iterator[tuple[int, Any | JobFailure]]:
        """Run ``fn(*args)`` for each argument tuple of ``jobs`` (one job per worker at a
        time); yield ``(job index, value or JobFailure)`` as each finishes."""

    def describe(self) -> dict:
        return {"executor": type(self).__name__, "workers": self.capacity}

    def shutdown(self) -> None:  # noqa: B027
        """Release workers (nothing to do in-process)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class ScoringTimeout(BaseException):
    """Raised inside an in-process scoring call that runs past its limit.

    A BaseException so that the scorer's record-any-error path does not swallow it: the
    executor, not the metric, owns this failure."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body with :class:`ScoringTimeout` after ``seconds`` (main thread only:
    a POSIX interval timer; elsewhere there is no safe way to interrupt, so no limit)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise ScoringTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_batch(batch: int, eval_timeout: float | None) -> None:
    """Candidates per scoring call: >= 1, and 1 under a per-candidate time limit."""
    if batch < 1:
        raise ExecutorError(f"a batch must hold >= 1 candidates, got {batch}")
    if batch > 1 and eval_timeout is not None:
        raise ExecutorError("a batch has no per-candidate eval timeout: give one of them")


def timed_out(seconds: float, limit: float) -> Evaluation:
    return Evaluation(
        "failed", {}, {}, f"timed out: scoring ran past --eval-timeout {limit:g} s", seconds
    )
