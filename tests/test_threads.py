"""In-process scoring's torch threads: the cores other processes leave idle."""

from __future__ import annotations

import os

import pytest
import torch

import nas_engine
from nas_engine import ConfigError
from nas_engine.executors import InProcessExecutor
from nas_engine.executors.inprocess import idle_cores
from nas_engine.scoring import ScoringSetup

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.parametrize(("load", "expected"), [(0.0, CORES), (0.4, CORES), (64.0, 1)])
def test_idle_cores_leave_out_the_busy_ones(monkeypatch, load: float, expected: int) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert idle_cores() == expected


def test_one_busy_core_of_several_is_left_to_its_process(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert idle_cores() == 3


def test_the_executor_sets_its_threads_and_restores_them(monkeypatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    before = torch.get_num_threads()
    setup = ScoringSetup(embedding_size=8, hidden_size=8, num_layers=1, batch_size=4, bptt=8)
    with InProcessExecutor() as executor:
        executor.start(setup)
        assert torch.get_num_threads() == 1 == executor.describe()["threads"]
    assert torch.get_num_threads() == before
    with InProcessExecutor(threads=2) as executor:
        executor.start(setup)
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_threads_are_recorded_and_refused_on_ray(tmp_path) -> None:
    tiny = dict(embedding_size=8, hidden_size=8, layers=1, batch_size=4, bptt=8, report=False)
    run = nas_engine.search(budget=3, out=str(tmp_path / "r"), threads=1, **tiny)
    assert run.summary["execution"]["threads"] == 1
    with pytest.raises(ConfigError, match="--threads sets in-process scoring"):
        nas_engine.search(budget=3, executor="ray", threads=2, **tiny)
