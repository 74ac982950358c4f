"""The Ray executor on a real local Ray instance (2 CPUs): same answers, faults, timeouts."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import nas_engine  # noqa: E402
from nas_engine.executors import RayExecutor  # noqa: E402
from nas_engine.result import Candidate  # noqa: E402
from nas_engine.scoring import ScoringSetup  # noqa: E402
from nas_engine.spaces import get_space  # noqa: E402

TINY = dict(
    hidden_size=16,
    embedding_size=16,
    batch_size=8,
    bptt=10,
    population=4,
    tournament=2,
    report=False,
)
# Sizes at which one scoring call takes a good fraction of a second in a one-thread worker.
SLOW = ScoringSetup(
    metrics=("hidden_cov", "ntk_trace"),
    embedding_size=200,
    hidden_size=300,
    num_layers=2,
    batch_size=20,
    bptt=40,
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def candidates(n: int, seed: int = 0) -> list[Candidate]:
    import numpy as np

    space = get_space("rnn")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        arch = space.sample(rng)
        out.append(Candidate(space.key(arch), space.to_record(arch), "sample"))
    return out


def by_arch(results) -> dict[str, dict]:
    return {r.arch_id: dict(r.metrics) for r in results}


def assert_same_scores(a: dict[str, dict], b: dict[str, dict]) -> None:
    for key in a.keys() & b.keys():
        for name, value in a[key].items():
            # Workers run torch on one thread, the test process on more: summation order may
            # differ in the last bits.
            assert math.isclose(value, b[key][name], rel_tol=1e-6, abs_tol=1e-9), (key, name)


def test_random_search_on_ray_evaluates_what_in_process_does(tmp_path: Path) -> None:
    options = dict(budget=10, strategy="random", seed=5, fitness="hidden_cov", metrics=("params",))
    local = nas_engine.search(out=str(tmp_path / "local"), **options, **TINY)
    remote = nas_engine.search(
        out=str(tmp_path / "ray"), executor="ray", workers=2, **options, **TINY
    )
    assert {r.arch_id for r in remote} == {r.arch_id for r in local}
    assert sorted(r.index for r in remote) == list(range(10))
    assert_same_scores(by_arch(local), by_arch(remote))
    summary = (tmp_path / "ray" / "summary.json").read_text()
    assert '"executor": "ray"' in summary


def test_batches_of_candidates_per_worker_call_score_what_in_process_does(
    tmp_path: Path,
) -> None:
    options = dict(budget=10, strategy="random", seed=6, fitness="hidden_cov", metrics=("params",))
    local = nas_engine.search(out=str(tmp_path / "local"), **options, **TINY)
    remote = nas_engine.search(
        out=str(tmp_path / "ray"), executor="ray", workers=2, worker_batch=3, **options, **TINY
    )
    assert {r.arch_id for r in remote} == {r.arch_id for r in local}
    assert sorted(r.index for r in remote) == list(range(10))
    assert_same_scores(by_arch(local), by_arch(remote))
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["execution"]["worker_batch"] == 3


def test_a_killed_worker_s_batch_is_retried_one_per_call() -> None:
    executor = RayExecutor(workers=1, worker_batch=3)
    executor.start(SLOW)
    try:
        assert executor.capacity == 3
        batch = candidates(3, seed=15)
        for candidate in batch:
            executor.submit(candidate)
        assert len(executor._in_flight) == 1  # one call holds all three
        os.kill(_busy_pid(executor, batch[0].key), signal.SIGKILL)
        done = {}
        while executor.pending():
            for candidate, evaluation in executor.wait():
                done[candidate.key] = evaluation
        assert set(done) == {c.key for c in batch}
        assert all(e.status == "ok" for e in done.values()), done
        assert executor.restarts == 1
        assert len(executor.worker_pids()) == 1
    finally:
        executor.shutdown()


def test_evolution_on_ray_shares_the_order_independent_part(tmp_path: Path) -> None:
    options = dict(budget=12, strategy="evolution", seed=2, fitness="hidden_cov")
    local = nas_engine.search(out=str(tmp_path / "local"), **options, **TINY)
    remote = nas_engine.search(
        out=str(tmp_path / "ray"), executor="ray", workers=2, **options, **TINY
    )
    assert len(remote) == len(local) == 12
    # The initial population is drawn before any result is told: the same architectures.
    initial = TINY["population"]
    assert {r.arch_id for r in remote if r.origin == "sample"} >= {
        r.arch_id for r in local[:initial]
    }
    # Every architecture both runs evaluated has the same scores.
    assert_same_scores(by_arch(local), by_arch(remote))


def test_a_killed_worker_is_replaced_and_its_architecture_retried() -> None:
    executor = RayExecutor(workers=2)
    executor.start(SLOW)
    try:
        first, second = candidates(2, seed=11)
        executor.submit(first)
        executor.submit(second)
        victim = _busy_pid(executor, first.key)
        os.kill(victim, signal.SIGKILL)
        done = {}
        while executor.pending():
            for candidate, evaluation in executor.wait():
                done[candidate.key] = evaluation
        assert set(done) == {first.key, second.key}
        assert all(e.status == "ok" for e in done.values()), done
        assert executor.restarts == 1
        assert victim not in executor.worker_pids()
        assert len(executor.worker_pids()) == 2  # the pool keeps its size
    finally:
        executor.shutdown()


def test_an_architecture_whose_worker_dies_twice_is_recorded_as_failed() -> None:
    executor = RayExecutor(workers=1)
    executor.start(SLOW)
    try:
        (candidate,) = candidates(1, seed=12)
        executor.submit(candidate)
        os.kill(_busy_pid(executor, candidate.key), signal.SIGKILL)
        # The retry goes to the replacement worker: kill that one too.
        retry_pid = _busy_pid(executor, candidate.key, after_wait=True)
        os.kill(retry_pid, signal.SIGKILL)
        results = []
        while executor.pending():
            results += executor.wait()
        ((scored, evaluation),) = results
        assert scored == candidate
        assert evaluation.status == "failed"
        assert "worker died twice" in evaluation.error
        # The pool still works afterwards.
        (nxt,) = candidates(1, seed=13)
        executor.submit(nxt)
        ((_, after),) = executor.wait()
        assert after.status == "ok"
    finally:
        executor.shutdown()


def test_a_call_past_the_eval_timeout_is_failed_and_its_worker_replaced() -> None:
    executor = RayExecutor(workers=1, eval_timeout=0.05)
    executor.start(SLOW)
    try:
        (candidate,) = candidates(1, seed=14)
        executor.submit(candidate)
        ((scored, evaluation),) = executor.wait()
        assert scored == candidate
        assert evaluation.status == "failed"
        assert "timed out" in evaluation.error
        assert executor.restarts == 1
        assert executor.pending() == 0 and len(executor.worker_pids()) == 1
    finally:
        executor.shutdown()


def test_a_replacement_worker_s_start_up_is_not_timed_against_its_candidates() -> None:
    """After a worker dies, its architecture is retried and later ones are scored in time:
    the time limit starts when a ready worker gets the candidate, never during a start-up."""
    tiny = ScoringSetup(embedding_size=16, hidden_size=16, num_layers=2, batch_size=4, bptt=8)
    executor = RayExecutor(workers=1, eval_timeout=1.0)
    executor.start(tiny)
    try:
        (pid,) = executor.worker_pids()
        os.kill(pid, signal.SIGKILL)  # the only worker dies before it is handed anything
        batch = candidates(6, seed=21)
        results = []
        for candidate in batch:
            executor.submit(candidate)
            while executor.pending():
                results += executor.wait()
        assert [c.key for c, _ in results] == [c.key for c in batch]
        failures = [(c.key, e.error) for c, e in results if e.status != "ok"]
        timed_out = [f for f in failures if "timed out" in (f[1] or "")]
        assert not timed_out, timed_out
        assert executor.restarts == 1
    finally:
        executor.shutdown()


def _busy_pid(executor: RayExecutor, key: str, after_wait: bool = False) -> int:
    """The pid of the worker scoring ``key``, once it is running there.

    ``after_wait``: first let the executor notice the death of the previous worker (a short
    ``wait`` that re-queues the candidate on a replacement)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if after_wait:
            ready, _ = ray.wait(list(executor._in_flight), num_returns=1, timeout=0.5)
            for ref in ready:
                job = executor._in_flight.pop(ref)
                assert executor._collect(ref, job) == []  # re-queued, not reported
                executor._dispatch()
                after_wait = False
            continue
        for ref in list(executor._starting):  # a replacement takes work once it is ready
            if ray.wait([ref], num_returns=1, timeout=0)[0]:
                executor._ready(ref)
                executor._dispatch()
        busy = executor.busy_pids()
        if key in busy:
            time.sleep(0.3)  # let the call get going in the worker
            return busy[key]
        time.sleep(0.05)
    pytest.fail("the candidate never reached a worker")


def test_confirmation_training_runs_on_the_ray_workers(tmp_path: Path) -> None:
    outcome = nas_engine.search(
        budget=4,
        strategy="random",
        seed=1,
        out=str(tmp_path / "run"),
        executor="ray",
        workers=2,
        confirm_top=2,
        confirm_steps=2,
        **TINY,
    )
    assert len(outcome) == 4
    lines = (tmp_path / "run" / "confirmed.jsonl").read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert all(r["status"] == "ok" and r["training"]["steps"] == 2 for r in records)
    assert sorted(r["rank"] for r in records) == [1, 2]


def test_nsga2_on_ray_workers_with_the_guard_and_a_front(tmp_path: Path) -> None:
    out = tmp_path / "mo"
    results = nas_engine.search(
        budget=16,
        seed=1,
        out=str(out),
        executor="ray",
        workers=2,
        objectives=("hidden_cov", "params:min"),
        **TINY,
    )
    assert len(results) == 16
    assert any(r.origin.startswith("mutate:") for r in results), "NSGA-II bred on Ray"
    assert all("stress_growth" in r.details for r in results if r.ok)
    summary = json.loads((out / "summary.json").read_text())
    front = {f["arch_id"] for f in summary["pareto_front"]}
    assert front and front <= {r.arch_id for r in results if r.ranked}
    assert len(summary["hypervolume"]["series"]) == 16


def _owned_by(pid: int) -> list[int]:
    """Processes whose environment marks them as the Ray instance of run process ``pid``."""
    from nas_engine.executors.reaper import OWNER_VARIABLE

    needle = f"{OWNER_VARIABLE}={pid}-".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if any(v.startswith(needle) for v in (entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_killed_run_leaves_no_ray_process_behind(tmp_path: Path) -> None:
    """SIGKILL of a run with its own Ray instance: its dashboard and runtime-env agents used
    to stay, orphaned, for more than a minute; the run's reaper ends every one of them."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_engine.search", "--executor", "ray", "--workers", "1",
         "--budget", "500", "--no-progress", "--no-report", "--out", str(out),
         "--embedding-size", "8", "--hidden-size", "8", "--batch-size", "4", "--bptt", "8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        results = out / "results.jsonl"
        while not (results.exists() and results.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        assert len(_owned_by(proc.pid)) >= 3  # raylet, gcs, agents, the worker: all marked
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while _owned_by(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _owned_by(proc.pid) == []
