"""Scoring on a pool of Ray actors (a local instance or a cluster)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..corpus import Corpus
from ..result import Candidate, Evaluation
from ..scoring import ScoringSetup, make_scorer
from .base import Executor, ExecutorError, JobFailure, check_batch, timed_out
from .reaper import OWNER_VARIABLE


class ScoringWorker:
    """One Ray actor: builds its :class:`Scorer` (and so the input batch) once, then scores."""

    def __init__(self, setup: ScoringSetup, corpus: Corpus | None, warm: bool = False) -> None:
        self.scorer = make_scorer(setup, corpus)
        if warm:  # under a time limit, a first call's one-time costs are not the candidate's
            space = self.scorer.space
            arch = next(iter(space.presets().values()))
            self.scorer.score(Candidate(space.key(arch), space.to_record(arch), "warm-up"))

    def pid(self) -> int:
        return os.getpid()

    def score(self, candidate: Candidate) -> Evaluation:
        return self.scorer.score(candidate)

    def score_batch(self, candidates: list[Candidate]) -> list[Evaluation]:
        return self.scorer.score_batch(candidates)


@dataclass
class _InFlight:
    candidates: tuple[Candidate, ...]  # one, or a batch (worker_batch > 1)
    worker: Any  # the actor handle
    started: float
    attempt: int  # 1 for the first try, 2 for the retry after a worker died


class RayExecutor(Executor):
    """Scores on a pool of Ray actors, each holding its own scorer.

    ``address`` None starts a local Ray instance sized to the machine (or to ``num_cpus``);
    ``"auto"`` or ``HOST:PORT`` joins a running cluster. ``workers`` None: one per CPU of the
    instance, or as many as fit on its GPUs when ``gpus_per_worker`` is set. A worker that dies
    while scoring is replaced and its candidate retried once; a second death records it as
    failed. A call running past ``eval_timeout`` seconds is recorded as failed and its worker
    replaced (killing the process is the only way to stop a running torch call).

    ``worker_batch`` > 1 sends up to that many candidates per call (the worker's
    ``score_batch``), and keeps that many per worker in flight: when a score takes milliseconds
    (the fast mode), Ray's own cost per call (a few milliseconds of driver and worker time)
    is then shared by the batch, and a GPU worker overlaps the batch's forward passes on CUDA
    streams. When a worker dies, the candidates of its batch are retried one per call, so only
    the one that kills a worker is recorded as failed. It needs ``eval_timeout`` None: a batch
    has no per-candidate time limit.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
        eval_timeout: float | None = None,
        num_cpus: int | None = None,
        worker_batch: int = 1,
    ) -> None:
        check_batch(worker_batch, eval_timeout)
        self.worker_batch = worker_batch
        self.address = address
        self.requested_workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.eval_timeout = eval_timeout
        self.num_cpus = num_cpus
        self.capacity = 0
        self._ray: Any = None
        self._started_ray = False
        self._actor_class: Any = None
        self._init_args: tuple = ()
        self._idle: list[Any] = []
        self._in_flight: dict[Any, _InFlight] = {}  # object ref -> what it scores
        self._queue: deque[tuple[Candidate, int]] = deque()
        self._pids: dict[Any, Any] = {}  # actor handle -> object ref of its process id
        # Replacement workers still building their scorer (process id ref -> actor): a
        # candidate goes to a worker only once it is ready, so that no time limit counts a
        # worker's start-up against the candidate it was handed.
        self._starting: dict[Any, Any] = {}
        self.restarts = 0
        self._reaper: subprocess.Popen | None = None

    # lifecycle -----------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise ExecutorError(f"--executor ray needs the ray package: {exc}") from None
        if not ray.is_initialized():
            if self.address is not None:
                _check_reachable(self.address)
            # ray.init puts its own SIGTERM handler in (a hard exit); the caller's (the
            # command line's: stop cleanly, summary written, exit 143) is put back after it.
            on_sigterm = signal.getsignal(signal.SIGTERM)
            try:
                if self.address is None:
                    self._reaper = start_reaper()
                    # "local": a private instance of this run's own, whatever RAY_ADDRESS or
                    # the cluster file that `ray start` leaves behind say (without it Ray
                    # joins that cluster, or hangs retrying it when its head is gone), on
                    # the loopback address only.
                    ray.init(
                        address="local",
                        num_cpus=self.num_cpus,
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                        _node_ip_address="127.0.0.1",
                    )
                else:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                if self._reaper is not None:
                    self._reaper.stdin.close()
                    self._reaper = None
                where = self.address or "a local instance"
                raise ExecutorError(f"cannot start Ray on {where}: {exc}") from None
            finally:
                # Only the processes ray.init started carry the reaper's token.
                os.environ.pop(OWNER_VARIABLE, None)
                if threading.current_thread() is threading.main_thread() and callable(on_sigterm):
                    signal.signal(signal.SIGTERM, on_sigterm)
            self._started_ray = True
        return ray

    def _worker_count(self) -> int:
        if self.requested_workers is not None:
            return self.requested_workers
        resources = self._ray.cluster_resources()
        if self.gpus_per_worker > 0:
            gpus = resources.get("GPU", 0.0)
            if gpus < self.gpus_per_worker:
                raise ExecutorError(
                    f"--gpus-per-worker {self.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs"
                )
            return max(1, math.floor(gpus / self.gpus_per_worker + 1e-9))
        return max(1, int(resources.get("CPU", 1)))

    def start(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        ray = self._ray = self._connect()
        self._actor_class = ray.remote(ScoringWorker).options(
            num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=0
        )
        # The corpus travels once through the object store, not once per worker.
        corpus_ref = ray.put(corpus) if corpus is not None else None
        self._init_args = (setup, corpus_ref, self.eval_timeout is not None)
        count = self._worker_count()
        workers = [self._new_worker() for _ in range(count)]
        try:  # fail here, clearly, if a worker cannot build its scorer
            ray.get([self._pids[w] for w in workers])
        except ray.exceptions.RayError as exc:
            raise ExecutorError(f"Ray workers failed to start: {_first_line(exc)}") from None
        self._idle = workers
        self.capacity = count * self.worker_batch

    def _new_worker(self) -> Any:
        worker = self._actor_class.remote(*self._init_args)
        # Asked now, while the worker is idle: an actor answers one call at a time, so asking a
        # busy worker would wait for its scoring to end.
        self._pids[worker] = worker.pid.remote()
        return worker

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring, and for tests that kill one)."""
        actors = self._idle + [f.worker for f in self._in_flight.values()]
        return self._ray.get([self._pids[a] for a in actors + list(self._starting.values())])

    def busy_pids(self) -> dict[str, int]:
        """Architecture key -> process id of the worker scoring it now."""
        items = list(self._in_flight.values())
        pids = self._ray.get([self._pids[f.worker] for f in items])
        return {c.key: pid for f, pid in zip(items, pids, strict=True) for c in f.candidates}

    def shutdown(self) -> None:
        if self._ray is None:
            return
        busy = [f.worker for f in self._in_flight.values()]
        for actor in self._idle + busy + list(self._starting.values()):
            self._ray.kill(actor, no_restart=True)
        self._idle, self._in_flight, self._pids, self._starting = [], {}, {}, {}
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
        if self._reaper is not None:  # ends what Ray's own shutdown left running
            self._reaper.stdin.close()
            self._reaper.wait(timeout=30)
            self._reaper = None
        self._ray = None

    def describe(self) -> dict:
        return {
            "executor": "ray",
            "address": self.address or "local",
            "workers": self.capacity // self.worker_batch,
            "gpus_per_worker": self.gpus_per_worker,
            "worker_batch": self.worker_batch,
            "worker_restarts": self.restarts,
        }

    # scoring -------------------------------------------------------------------------

    def submit(self, candidate: Candidate) -> None:
        self._queue.append((candidate, 1))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            candidate, attempt = self._queue.popleft()
            worker = self._idle.pop()
            if self.worker_batch == 1 or attempt > 1:  # a retry goes alone
                ref = worker.score.remote(candidate)
                batch = (candidate,)
            else:
                batch = [candidate]
                while len(batch) < self.worker_batch and self._queue and self._queue[0][1] == 1:
                    batch.append(self._queue.popleft()[0])
                batch = tuple(batch)
                ref = worker.score_batch.remote(list(batch))
            self._in_flight[ref] = _InFlight(batch, worker, time.perf_counter(), attempt)

    def pending(self) -> int:
        return len(self._queue) + sum(len(f.candidates) for f in self._in_flight.values())

    def wait(self) -> list[tuple[Candidate, Evaluation]]:
        ray = self._ray
        done: list[tuple[Candidate, Evaluation]] = []
        while not done:
            if not self._in_flight and not (self._queue and self._starting):
                raise RuntimeError("wait() with nothing submitted")
            refs = list(self._in_flight) + list(self._starting)
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_timeout())
            for ref in ready:
                if ref in self._starting:
                    self._ready(ref)
                    continue
                job = self._in_flight.pop(ref)
                done.extend(self._collect(ref, job))
            done.extend(self._expire())
            self._dispatch()
        return done

    def _ready(self, ref: Any) -> None:
        """A replacement worker has built its scorer: it takes candidates from now on."""
        worker = self._starting.pop(ref)
        try:
            self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            reason = _first_line(exc)
            raise ExecutorError(f"a replacement Ray worker failed to start: {reason}") from None
        self._idle.append(worker)

    def _wait_timeout(self) -> float | None:
        if self.eval_timeout is None or not self._in_flight:
            return None
        now = time.perf_counter()
        first = min(f.started for f in self._in_flight.values())
        return max(0.0, first + self.eval_timeout - now)

    def _collect(self, ref: Any, job: _InFlight) -> list[tuple[Candidate, Evaluation]]:
        """The evaluations of a finished call; none when its candidates were queued again."""
        ray = self._ray
        try:
            value = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            self._replace(job.worker)
            reason = _first_line(exc)
            if job.attempt == 1:  # retried one per call, in their order, before anything new
                self._queue.extendleft((c, 2) for c in reversed(job.candidates))
                return []
            failed = Evaluation(
                "failed",
                {},
                {},
                f"worker died twice while scoring this architecture: {reason}",
                time.perf_counter() - job.started,
            )
            return [(c, failed) for c in job.candidates]
        except ray.exceptions.RayError as exc:  # the call itself failed (not the metric)
            self._idle.append(job.worker)
            failed = Evaluation("failed", {}, {}, f"scoring call failed: {_first_line(exc)}", 0.0)
            return [(c, failed) for c in job.candidates]
        self._idle.append(job.worker)
        evaluations = value if isinstance(value, list) else [value]
        return list(zip(job.candidates, evaluations, strict=True))

    def _expire(self) -> list[tuple[Candidate, Evaluation]]:
        if self.eval_timeout is None:
            return []
        now = time.perf_counter()
        expired = [
            ref for ref, f in self._in_flight.items() if now - f.started >= self.eval_timeout
        ]
        out = []
        for ref in expired:
            job = self._in_flight.pop(ref)
            self._ray.kill(job.worker, no_restart=True)
            self._replace(job.worker, killed=True)
            out += [(c, timed_out(now - job.started, self.eval_timeout)) for c in job.candidates]
        return out

    def _replace(self, worker: Any, killed: bool = False) -> None:
        if not killed:
            self._ray.kill(worker, no_restart=True)
        self._pids.pop(worker, None)
        self.restarts += 1
        replacement = self._new_worker()
        self._starting[self._pids[replacement]] = replacement

    # jobs ----------------------------------------------------------------------------

    def run_jobs(
        self, fn: Callable[..., Any], jobs: list[tuple]
    ) -> Iterator[tuple[int, Any | JobFailure]]:
        ray = self._ray
        if ray is None:
            ray = self._ray = self._connect()
        remote = ray.remote(fn).options(
            num_cpus=1, num_gpus=self.gpus_per_worker, max_retries=1, retry_exceptions=False
        )
        # The scoring actors hold the resources: free them first, jobs get whole workers.
        for actor in self._idle:
            ray.kill(actor, no_restart=True)
        self._idle = []
        refs = {remote.remote(*args): i for i, args in enumerate(jobs)}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                index = refs.pop(ref)
                try:
                    yield index, ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield index, JobFailure(_first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


REACH_SECONDS = 10.0  # how long a HOST:PORT cluster address gets to accept a connection


def _check_reachable(address: str) -> None:
    """Raise :class:`ExecutorError` unless a ``HOST:PORT`` address accepts a TCP connection
    within ``REACH_SECONDS`` (Ray itself retries an address that is not there for minutes).
    ``auto`` and ``ray://`` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), REACH_SECONDS):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorError(
            f"--ray-address {address}: no Ray head answers there ({reason})"
        ) from None


def start_reaper() -> subprocess.Popen:
    """A reaper (:mod:`nas_engine.executors.reaper`) for the local Ray instance about to be
    started: its token goes into this process's environment, which ray.init's processes
    inherit (the caller removes it once ray.init has returned)."""
    token = f"{os.getpid()}-{time.time_ns()}"
    reaper = subprocess.Popen(
        [sys.executable, "-m", "nas_engine.executors.reaper", token],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C or SIGTERM to the run's group must not end it first
    )
    os.environ[OWNER_VARIABLE] = token
    return reaper
