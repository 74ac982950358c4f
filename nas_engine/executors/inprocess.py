"""Scoring in the calling process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..corpus import Corpus
from ..result import Candidate, Evaluation
from ..scoring import Scorer, ScoringSetup, make_scorer
from .base import Executor, JobFailure, ScoringTimeout, check_batch, time_limit, timed_out
from .cpu_load import ThreadPolicy


class InProcessExecutor(Executor):
    """Scores in the calling process, in submission order: one candidate at a time, or
    ``batch`` at a time through the scorer's ``score_batch`` (on CUDA their forward passes
    overlap on streams; elsewhere they are scored one after the other). A batch has no
    per-candidate time limit, so ``batch`` > 1 needs ``eval_timeout`` None.

    torch's threads: ``threads`` if given, else the cores other processes leave idle, looked at
    again every few seconds between candidates (:class:`~.cpu_load.ThreadPolicy`)."""

    def __init__(
        self, eval_timeout: float | None = None, batch: int = 1, threads: int | None = None
    ) -> None:
        check_batch(batch, eval_timeout)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.eval_timeout = eval_timeout
        self.capacity = batch
        self.requested_threads = threads
        self.threads: int | None = None
        self._policy: ThreadPolicy | None = None
        self._threads_before: int | None = None
        self._queue: deque[Candidate] = deque()
        self._scorer: Scorer | None = None

    def start(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        # torch's intra-op threads, for this executor's life (restored at shutdown).
        self._threads_before = torch.get_num_threads()
        if self.requested_threads is None:
            self._policy = ThreadPolicy()
            self._policy.begin()  # the first look spans the scorer's set-up: no waiting
        else:
            torch.set_num_threads(self.requested_threads)
        self._scorer = make_scorer(setup, corpus)  # the seed's embedding drawn once
        self.threads = self._policy.first() if self._policy else self.requested_threads
        torch.set_num_threads(self.threads)

    def shutdown(self) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise RuntimeError("executor not started")
        return self._scorer

    def submit(self, candidate: Candidate) -> None:
        self._queue.append(candidate)

    def _follow_the_load(self) -> None:
        threads = self._policy.update() if self._policy is not None else None
        if threads is not None:
            self.threads = threads
            torch.set_num_threads(threads)

    def wait(self) -> list[tuple[Candidate, Evaluation]]:
        self._follow_the_load()
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
        return {
            "executor": type(self).__name__,
            "workers": 1,
            "worker_batch": self.capacity,
            "threads": self.threads,
            **self._thread_history(),
        }

    def _thread_history(self) -> dict:
        if self.requested_threads is not None:
            return {"threads_chosen": "--threads"}
        if self._policy is None:  # not started
            return {}
        history = self._policy.history
        return {
            "threads_chosen": "idle cores, followed",
            "threads_range": [min(history), max(history)],
            "thread_changes": len(history) - 1,
        }

    def run_jobs(
        self, fn: Callable[..., Any], jobs: list[tuple]
    ) -> Iterator[tuple[int, Any | JobFailure]]:
        for index, args in enumerate(jobs):
            try:
                value = fn(*args)
            except Exception as exc:  # a job that raises is a failed job, as on a Ray worker
                value = JobFailure(f"{type(exc).__name__}: {exc}")
            yield index, value
