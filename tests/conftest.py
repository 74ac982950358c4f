"""Shared fixtures for the nas-engine test suite."""

from __future__ import annotations

import compileall
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Nothing of hypothesis's in the repository (no example database, no caches); property tests
# draw fresh examples on every run.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "nas-engine-tests-hypothesis")
settings.register_profile("nas-engine", database=None, deadline=None)
settings.load_profile("nas-engine")

# Let test modules import the helpers module next to them.
sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Many tests start the command line or Ray workers as subprocesses, each importing the
    # package. Where the environment sets PYTHONDONTWRITEBYTECODE (this host's does), nothing caches
    # the compiled modules and every one of those processes compiles the package from source
    # again, about 1 s each on 2 cores; compiling once up front lets them all read the cache.
    # Once, in the controller: pytest-xdist workers have ``workerinput``.
    if not hasattr(config, "workerinput"):
        for package in ("nas_engine", "search_spaces"):
            compileall.compile_dir(ROOT / package, quiet=1)


@pytest.fixture
def float64_default():
    """Build models in float64 inside the test; restore the default dtype afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@pytest.fixture
def temp_metric():
    """Register metrics for one test only; the global registry is restored afterwards."""
    from nas_engine.metrics.registry import _METRICS, register

    added: list[str] = []

    def add(name: str, fn=lambda probe: 1.0, direction: str = "higher") -> str:
        register(name, space="rnn", direction=direction, needs=set(), description="test only")(fn)
        added.append(name)
        return name

    yield add
    for name in added:
        _METRICS.pop(("rnn", name), None)
