"""In-process scoring's torch threads: the cores other processes leave idle, followed while a
run goes on (nas_engine/executors/cpu_load.py)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest
import torch

import nas_engine
from nas_engine import ConfigError
from nas_engine.executors import InProcessExecutor, cpu_load, inprocess
from nas_engine.executors.cpu_load import CoreLoad, ThreadPolicy, busy_seconds, idle_threads
from nas_engine.result import Candidate
from nas_engine.scoring import ScoringSetup
from search_spaces.rnn import preset

TINY_SETUP = ScoringSetup(embedding_size=8, hidden_size=8, num_layers=1, batch_size=4, bptt=8)


class ScriptedLoad(CoreLoad):
    """A CoreLoad whose readings of the other processes' busy cores are given in advance."""

    def __init__(self, cores: int, others: list[float | None]) -> None:
        super().__init__(set(range(cores)))
        self.script = list(others)

    def mark(self) -> None:
        pass

    def others_busy(self) -> float | None:
        return self.script.pop(0)

    def others_now(self) -> float:
        return self.script.pop(0)


@pytest.mark.parametrize(
    ("cores", "others", "expected"), [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (4, 1.2, 3), (2, 9, 1)]
)
def test_idle_threads_leave_out_the_busy_cores(cores: int, others: float, expected: int) -> None:
    assert idle_threads(cores, others) == expected


def test_busy_seconds_read_only_this_process_cores(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        "cpu  900 0 0 900 0 0 0 0 0 0\n"
        "cpu0 100 10 20 500 50 1 2 3 0 0\n"
        "cpu1 300 0 100 400 0 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    hz = cpu_load.USER_HZ
    assert busy_seconds({0}, str(stat)) == pytest.approx((100 + 10 + 20 + 1 + 2 + 3) / hz)
    assert busy_seconds({0, 1}, str(stat)) == pytest.approx((136 + 400) / hz)
    assert busy_seconds({5}, str(stat)) is None  # no counters for the cores asked
    assert busy_seconds({0}, str(tmp_path / "missing")) is None


def test_others_busy_leaves_out_this_process_own_time(monkeypatch) -> None:
    # wall, busy, own CPU seconds
    readings = iter([(10.0, 100.0, 5.0), (10.1, 100.1, 5.0), (12.0, 103.0, 6.0)])
    load = CoreLoad({0, 1})
    monkeypatch.setattr(load, "_read", lambda: next(readings))
    load.mark()
    assert load.others_busy() is None  # 0.1 s: too short for the tick counters; goes on
    # 3 busy core-seconds in 2 s, 1 of them this process's: others kept 1 core busy
    assert load.others_busy() == pytest.approx(1.0)


def test_running_tasks_stand_in_for_a_short_first_window(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu0 1 0 0 1 0 0 0 0 0 0\nprocs_running 3\nprocs_blocked 0\n")
    cores = os.cpu_count() or 1
    assert cpu_load.running_others(set(range(cores)), str(stat)) == 2  # the caller is one
    assert cpu_load.running_others({0}, str(tmp_path / "missing")) is None


def _spin() -> None:
    while True:
        pass


@pytest.mark.skipif(not Path(cpu_load.PROC_STAT).exists(), reason="no /proc/stat here")
def test_a_busy_process_is_seen_at_once() -> None:
    """A competing process is counted within a fraction of a second (the one-minute load
    average would take most of a minute to show it)."""
    spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    spinner.start()
    try:
        cores = {min(os.sched_getaffinity(0))} if hasattr(os, "sched_getaffinity") else {0}
        if sys.platform == "linux":
            os.sched_setaffinity(spinner.pid, cores)  # the spinner on the core we watch
        load = CoreLoad(cores)
        time.sleep(0.3)  # the spinner's start-up out of the way
        load.mark()
        time.sleep(0.5)
        assert load.others_busy() > 0.6
    finally:
        spinner.kill()
        spinner.join()


def test_threads_drop_under_load_and_come_back(monkeypatch) -> None:
    policy = ThreadPolicy(ScriptedLoad(2, [0.0, 1.3, 1.1, 0.1, None]), recheck_s=0.0)
    assert policy.first() == 2
    assert policy.update() == 1  # a competing process started
    assert policy.update() is None  # still there: no change
    assert policy.update() == 2  # gone
    assert policy.update() is None  # counters unreadable: keep what we have
    assert policy.history == [2, 1, 2]


def test_without_counters_the_load_average_stands_in(monkeypatch) -> None:
    monkeypatch.setattr(cpu_load, "busy_seconds", lambda cores: None)
    monkeypatch.setattr(cpu_load, "running_others", lambda cores: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    policy = ThreadPolicy(CoreLoad({0, 1, 2, 3}))
    policy.begin()
    assert policy.first() == 1


def test_a_short_first_window_reads_the_runnable_tasks() -> None:
    assert ThreadPolicy(ScriptedLoad(2, [None, 1.0])).first() == 1
    assert ThreadPolicy(ScriptedLoad(2, [None, 0.0])).first() == 2


def test_the_executor_follows_the_load_and_restores_threads(monkeypatch) -> None:
    before = torch.get_num_threads()
    script = [0.0, 1.6, 1.6, 0.0]
    monkeypatch.setattr(
        inprocess, "ThreadPolicy", lambda: ThreadPolicy(ScriptedLoad(2, script), recheck_s=0.0)
    )
    seen = []
    with InProcessExecutor() as executor:
        executor.start(TINY_SETUP)
        seen.append(torch.get_num_threads())
        for _ in range(3):
            executor.submit(Candidate("", preset("lstm")))
            ((_, evaluation),) = executor.wait()
            assert evaluation.status == "ok", evaluation.error
            seen.append(torch.get_num_threads())
        described = executor.describe()
    assert seen == [2, 1, 1, 2]
    assert described["threads_range"] == [1, 2] and described["thread_changes"] == 2
    assert torch.get_num_threads() == before


def test_asked_threads_are_kept(monkeypatch) -> None:
    before = torch.get_num_threads()
    with InProcessExecutor(threads=2) as executor:
        executor.start(TINY_SETUP)
        assert torch.get_num_threads() == 2
        assert executor.describe()["threads_chosen"] == "--threads"
    assert torch.get_num_threads() == before


def test_threads_are_recorded_and_refused_on_ray(tmp_path) -> None:
    tiny = dict(embedding_size=8, hidden_size=8, layers=1, batch_size=4, bptt=8, report=False)
    run = nas_engine.search(budget=3, out=str(tmp_path / "r"), threads=1, **tiny)
    assert run.summary["execution"]["threads"] == 1
    with pytest.raises(ConfigError, match="--threads sets in-process scoring"):
        nas_engine.search(budget=3, executor="ray", threads=2, **tiny)
