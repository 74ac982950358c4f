"""Executors: where scoring jobs run (in-process, or on Ray workers)."""

from __future__ import annotations

from .base import EXECUTORS, Executor, ExecutorError, JobFailure, ScoringTimeout, timed_out
from .inprocess import InProcessExecutor
from .ray import RayExecutor, ScoringWorker


def make_executor(
    name: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    eval_timeout: float | None = None,
    worker_batch: int = 1,
    threads: int | None = None,
) -> Executor:
    if name == "inprocess":
        return InProcessExecutor(eval_timeout, batch=worker_batch, threads=threads)
    if name == "ray":
        return RayExecutor(
            address, workers, gpus_per_worker, eval_timeout, worker_batch=worker_batch
        )
    raise KeyError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorError",
    "InProcessExecutor",
    "JobFailure",
    "RayExecutor",
    "ScoringTimeout",
    "ScoringWorker",
    "make_executor",
    "timed_out",
]
