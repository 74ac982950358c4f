"""Scoring in the calling process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..corpus import Corpus
from ..result import Candidate, Evaluation
from ..scoring import Scorer, ScoringSetup, make_scorer
from .base import Executor, JobFailure, ScoringTimeout, check_batch, time_limit, timed_out


class InProcessExecutor(Executor):
    """Scores in the calling process, in submission order: one candidate at a time, or
    ``batch`` at a time through the scorer's ``score_batch`` (on CUDA their forward passes
    overlap on streams; elsewhere they are scored one after the other). A batch has no
    per-candidate time limit, so ``batch`` > 1 needs ``eval_timeout`` None."""

    def __init__(self, eval_timeout: float | None = None, batch: int = 1) -> None:
        check_batch(batch, eval_timeout)
        self.eval_timeout = eval_timeout
        self.capacity = batch
        self._queue: deque[Candidate] = deque()
        self._scorer: Scorer | None = None

    def start(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        self._scorer = make_scorer(setup, corpus)  # the seed's embedding drawn once

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise RuntimeError("executor not started")
        return self._scorer

    def submit(self, candidate: Candidate) -> None:
        self._queue.append(candidate)

    def wait(self) -> list[tuple[Candidate, Evaluation]]:
        if self.capacity > 1:
            batch = [self._queue.popleft() for _ in range(min(self.capacity, len(self._queue)))]
            return list(zip(batch, self.scorer.score_batch(batch), strict=True))
        candidate = self._queue.popleft()
        started = time.perf_counter()
        try:
            with time_limit(self.eval_timeout):
                evaluation = self.scorer.score(candidate)
        except ScoringTimeout:
            evaluation = timed_out(time.perf_counter() - started, self.eval_timeout)
        return [(candidate, evaluation)]

    def pending(self) -> int:
        return len(self._queue)

    def describe(self) -> dict:
        return {"executor": type(self).__name__, "workers": 1, "worker_batch": self.capacity}

    def run_jobs(
        self, fn: Callable[..., Any], jobs: list[tuple]
    ) -> Iterator[tuple[int, Any | JobFailure]]:
        for index, args in enumerate(jobs):
            try:
                value = fn(*args)
            except Exception as exc:  # a job that raises is a failed job, as on a Ray worker
                value = JobFailure(f"{type(exc).__name__}: {exc}")
            yield index, value
