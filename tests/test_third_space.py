"""A third search space, written only here, runs through the public API and the command line
(search, resume, and Ray workers) with no change to any engine module: the space and its
metric come in as a plugin module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nas_engine
from nas_engine.errors import ConfigError

TOY_PLUGIN = textwrap.dedent(
    '''
    """A toy space: two-layer perceptrons over a fixed random input, by their two widths."""

    import json

    import numpy as np
    import torch
    from torch import nn

    from nas_engine.metrics import register
    from nas_engine.spaces import SearchSpace, register_space

    WIDTHS = (2, 4, 8, 16, 32)


    class ToyProbe:
        def __init__(self, model, inputs):
            self.model, self.inputs = model, inputs


    class ToyProber:
        def __init__(self, seed, device):
            self.seed, self.device = seed, device
            gen = torch.Generator().manual_seed(seed)
            self.inputs = torch.randn(16, 8, generator=gen).to(device)

        def probe(self, arch):
            torch.manual_seed(self.seed)
            return ToyProbe(ToySpace().build(arch, None).to(self.device), self.inputs)


    @register_space
    class ToySpace(SearchSpace):
        name = "toy"

        def sample(self, rng):
            return tuple(int(w) for w in rng.choice(WIDTHS, size=2))

        def mutate(self, arch, rng):
            i = int(rng.integers(2))
            choices = [w for w in WIDTHS if w != arch[i]]
            child = list(arch)
            child[i] = int(rng.choice(choices))
            return tuple(child), f"width{i}"

        def validate(self, data):
            if isinstance(data, str):
                data = json.loads(data)
            if isinstance(data, dict):
                data = data.get("widths")
            widths = tuple(data or ())
            if len(widths) != 2 or any(w not in WIDTHS for w in widths):
                raise ValueError(f"a toy architecture is two widths of {WIDTHS}, got {data!r}")
            return tuple(int(w) for w in widths)

        def key(self, arch):
            return "toy-{}-{}".format(*arch)

        def to_record(self, arch):
            return {"widths": list(arch)}

        def distance(self, a, b):
            return sum(x != y for x, y in zip(a, b, strict=True)) / 2

        def build(self, arch, sizes):
            return nn.Sequential(nn.Linear(8, arch[0]), nn.Tanh(), nn.Linear(arch[0], arch[1]))

        def presets(self):
            return {"small": (2, 2), "wide": (32, 32)}

        def prober(self, setup, corpus, device, needs):
            return ToyProber(setup.seed, device)

        def describe(self, arch):
            return "8 -> {} -> {}".format(*arch)


    @register(
        "toy_spread",
        space="toy",
        direction="higher",
        needs=set(),
        description="spread of the outputs over the inputs",
    )
    def toy_spread(probe):
        with torch.no_grad():
            return float(probe.model(probe.inputs).std())
    '''
)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_space_plugin.py").write_text(TOY_PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _records(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _without_seconds(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in records]


OPTIONS = {"fitness": "toy_spread", "population": 4, "tournament": 2, "seed": 3}


def test_a_plugin_space_searches_and_resumes_through_the_api(
    plugin_dir: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    results = nas_engine.search(
        space="toy", budget=10, out=str(whole), plugins=("toy_space_plugin",), **OPTIONS
    )
    assert len(results) == 10
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert {r.arch_id.split("-")[0] for r in results} == {"toy"}
    assert any(r.origin.startswith("mutate:") for r in results)  # evolution ran on it
    # The same run killed after 6 results and resumed ends with the same records.
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    (cut / "summary.json").unlink()
    lines = (cut / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:6]))
    journal = (cut / "proposals.jsonl").read_text().splitlines(keepends=True)
    (cut / "proposals.jsonl").write_text(
        "".join(line for line in journal if json.loads(line)["after"] <= 6)
    )
    nas_engine.search(
        space="toy", budget=10, out=str(cut), resume=True, plugins=("toy_space_plugin",), **OPTIONS
    )
    assert _without_seconds(_records(cut)) == _without_seconds(_records(whole))


def test_a_space_without_a_trainer_refuses_confirmation(plugin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="toy space has no trainer"):
        nas_engine.search(
            space="toy",
            budget=4,
            out=str(tmp_path / "run"),
            plugins=("toy_space_plugin",),
            confirm_top=2,
            **OPTIONS,
        )


def test_a_missing_plugin_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--plugin no_such_plugin_module: cannot import it"):
        nas_engine.search(space="rnn", budget=2, plugins=("no_such_plugin_module",))


def _cli(plugin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PYTHONPATH": str(plugin_dir)}
    return subprocess.run(
        [sys.executable, "-m", "nas_engine.search", "--no-progress", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_plugin_space_runs_from_the_command_line_in_process_and_on_ray(
    plugin_dir: Path, tmp_path: Path
) -> None:
    common = ["--plugin", "toy_space_plugin", "--space", "toy", "--fitness", "toy_spread"]
    common += ["--budget", "8", "--population", "4", "--tournament", "2", "--seed", "3"]
    # one torch thread, as a Ray worker has: the same sums in both
    local = _cli(plugin_dir, *common, "--threads", "1", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    assert "8 -> " in local.stdout  # the space's own description of the winners
    on_ray = _cli(
        plugin_dir,
        *common,
        "--out",
        str(tmp_path / "ray"),
        "--executor",
        "ray",
        "--workers",
        "1",
    )
    assert on_ray.returncode == 0, on_ray.stderr
    records = _records(tmp_path / "ray")
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    # one worker scores in submission order: the same records as in-process
    assert _without_seconds(records) == _without_seconds(_records(tmp_path / "local"))
