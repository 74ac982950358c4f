"""The search command line, end to end in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import PTB_DIR, REPO_ROOT, require, run_module

TINY_ARGS = [
    "--hidden-size",
    "16",
    "--embedding-size",
    "16",
    "--batch-size",
    "8",
    "--bptt",
    "10",
]
TINY_INPUT_ARGS = TINY_ARGS[4:]  # the scoring input's sizes only (--batch-size, --bptt)
WITH_REPORT = list(TINY_ARGS)  # the run whose report the tests read
TINY_ARGS = [*TINY_ARGS, "--no-report"]  # the others: no report to draw
OPTIONS = [
    "--worker-batch",
    "--space",
    "--fitness",
    "--strategy",
    "--budget",
    "--population",
    "--corpus",
    "--out",
    "--seed",
    "--device",
    "--top",
    "--embedding-size",
    "--hidden-size",
    "--layers",
    "--batch-size",
    "--bptt",
    "--time-budget",
    "--init-gain",
    "--cuda-graphs",
    "--cell-batch",
    "--stability-guard",
    "--no-stability-guard",
    "--stability-threshold",
    "--answer-blend",
    "--objectives",
    "--reference-point",
    "--max-params",
]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_module("nas_engine.search", *args, timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli(
        "--budget", "6", "--population", "3", "--tournament", "2", "--top", "4",
        "--out", str(out), "--seed", "0", *WITH_REPORT,
    )  # fmt: skip
    return proc, out


def test_search_runs_and_prints_the_top_table(finished_run) -> None:
    proc, out = finished_run
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] == 6
    top_ids = [t["arch_id"] for t in summary["top"]]
    assert 1 <= len(top_ids) <= 4
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "arch_id" in line)
    assert "rank" in lines[header] and "fitness" in lines[header]
    table = lines[header + 1 : header + 1 + len(top_ids)]
    # The table lists the top architectures in rank order.
    assert [next(w for w in row.split() if w in top_ids) for row in table] == top_ids
    assert str(out / "results.jsonl") in proc.stdout
    assert "evaluated 6 architectures" in proc.stdout
    # ... and the report, self-contained, naming the top architectures
    html = (out / "report.html").read_text()
    assert 'src="http' not in html and all(arch_id in html for arch_id in top_ids)
    assert (out / "report.md").is_file() and str(out / "report.html") in proc.stdout


def test_out_holding_a_different_run(finished_run) -> None:
    _, out = finished_run
    before = snapshot(out)
    proc = run_cli(
        "--budget", "6", "--population", "3", "--tournament", "2", "--top", "4",
        "--out", str(out), "--seed", "1", *TINY_ARGS,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_line_error(proc, "different run")
    assert "seed" in proc.stderr
    assert snapshot(out) == before


def test_out_holding_the_same_run(finished_run) -> None:
    _, out = finished_run
    before = snapshot(out)
    proc = run_cli(
        "--budget", "6", "--population", "3", "--tournament", "2", "--top", "4",
        "--out", str(out), "--seed", "0", *TINY_ARGS,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_line_error(proc, "already holds this run")
    assert snapshot(out) == before


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_help_mentions_every_option() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for option in OPTIONS:
        assert option in proc.stdout, option
    assert "--list-metrics" in proc.stdout


def test_list_metrics() -> None:
    proc = run_cli("--list-metrics")
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"hidden_cov", "params", "hidden_cov_l2"} <= names


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--space", "cnn"], ["unknown space 'cnn'", "rnn"]),
        (["--fitness", "accuracy"], ["unknown metric 'accuracy'", "hidden_cov", "params"]),
        (["--budget", "0"], ["--budget"]),
        (["--budget", "many"], ["--budget"]),
        (["--strategy", "annealing"], ["--strategy"]),
        (["--corpus", "no/such/folder"], ["does not exist"]),
        (["--population", "2", "--tournament", "5"], ["tournament"]),
        (["--init-gain", "0"], ["--init-gain"]),
        (["--init-gain", "nan"], ["--init-gain"]),
        (["--init-gain", "inf"], ["init-gain", "finite"]),
        (["--space", "bert", "--init-gain", "2"], ["--init-gain", "the bert space does not take"]),
        (["--objectives", "hidden_cov,params", "--fitness", "params"], ["--objectives"]),
        (["--objectives", "hidden_cov"], ["2 to 4"]),
        (["--objectives", "hidden_cov,params:smallest"], [":min or :max"]),
        (["--objectives", "hidden_cov,params", "--reference-point", "1"], ["2 objectives"]),
        (["--stability-threshold", "nan"], ["stability threshold"]),
        (["--answer-blend", "-1"], ["answer blend"]),
        (["--strategy", "nsga2"], ["--objectives"]),
        (["--objectives", "hidden_cov,params,synflow,grad_norm,ntk_trace"], ["2 to 4"]),
        (
            [
                "--objectives",
                "hidden_cov,params,synflow,grad_norm,ntk_trace",
                "--strategy",
                "random",
            ],
            ["2 to 4"],
        ),
    ],
    ids=[
        "space",
        "fitness",
        "budget0",
        "budget-text",
        "strategy",
        "corpus-missing",
        "tourn",
        "gain0",
        "gain-nan",
        "gain-inf",
        "gain-bert",
        "objectives-and-fitness",
        "one-objective",
        "objective-suffix",
        "reference-length",
        "threshold-nan",
        "blend-negative",
        "nsga2-alone",
        "five-objectives",
        "five-objectives-random",
    ],  # fmt: skip
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], needles) -> None:
    out = tmp_path / "run"
    budget = [] if "--budget" in args else ["--budget", "2"]
    proc = run_cli(*args, *budget, "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_one_line_error(proc, *needles)
    assert not out.exists()


def test_corpus_with_empty_test_split(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "test.txt").write_text("")
    (corpus / "valid.txt").write_text("some words here\n")
    out = tmp_path / "run"
    proc = run_cli("--corpus", str(corpus), "--budget", "2", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2
    assert_one_line_error(proc, "empty")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_cuda_without_a_gpu_is_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("--device", "cuda", "--budget", "2", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2
    assert_one_line_error(proc, "CUDA")
    assert not out.exists()


def test_search_on_penn_treebank(tmp_path: Path) -> None:
    ptb = require(PTB_DIR)
    out = tmp_path / "run"
    proc = run_cli(
        "--corpus", str(ptb), "--strategy", "random", "--budget", "3",
        "--fitness", "params", "--out", str(out), "--no-progress", *TINY_ARGS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] == 3 and summary["ok"] == 3
    assert "text corpus" in summary["corpus"]
    assert "synthetic" not in summary["corpus"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "--resume needs --out"),
        (["--workers", "2"], "--workers needs --executor ray"),
        (["--gpus-per-worker", "0.5"], "--gpus-per-worker needs --executor ray"),
        (["--executor", "dask"], "invalid choice"),
        (["--eval-timeout", "0"], "eval-timeout"),
        (["--worker-batch", "0"], "--worker-batch"),
        (
            ["--worker-batch", "4", "--eval-timeout", "5"],
            "a batch has no per-architecture time limit",
        ),
        (["--confirm-steps", "3", "--confirm-epochs", "1", "--confirm-top", "1"], "not both"),
        (["--cuda-graphs"], "--cuda-graphs records a network's steps on a GPU"),
        (["--cell-batch"], "--cell-batch runs the first layer of a batch's networks together"),
        (
            ["--cell-batch", "--worker-batch", "4", "--fitness", "hidden_cov_l2"],
            "--cell-batch: cell batches run the first layer's forward",
        ),
        (
            ["--cuda-graphs", "--space", "bert", "--device", "cuda"],
            "--cuda-graphs records a network's steps on a GPU",
        ),
    ],
)
def test_bad_execution_options_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    sizes = TINY_ARGS if "bert" not in args else TINY_INPUT_ARGS  # bert takes no RNN sizes
    done = run_module("nas_engine.search", *sizes, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_multi_objective_search_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "mo"
    proc = run_cli(
        "--objectives", "hidden_cov,params:min", "--budget", "12", "--population", "4",
        "--max-params", "10000000", "--out", str(out), "--no-progress", *TINY_ARGS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fitness_spec"] == "hidden_cov,params:min"
    assert summary["pareto_front"] and (out / "pareto.png").exists()
    assert summary["search_strategy"] == "nsga2"
    config = json.loads((out / "config.json").read_text())
    assert config["objectives"] == ["hidden_cov", "params:min"]
    assert config["strategy"] == "nsga2"
    assert config["stability_guard"] is True and config["max_params"] == 10_000_000


def test_an_unreachable_ray_address_is_one_line_and_exit_2_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    proc = run_cli("--executor", "ray", "--ray-address", "127.0.0.1:1", "--budget", "2",
                   "--out", str(out), *TINY_ARGS, timeout=60)  # fmt: skip
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "127.0.0.1:1", "no Ray head answers")
    assert not out.exists()


def test_without_an_address_ray_runs_privately_whatever_ray_address_says(tmp_path: Path) -> None:
    """A stale RAY_ADDRESS (a head that is gone) must not be joined, nor hang the run."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nas_engine.search", "--executor", "ray", "--workers", "1",
         "--budget", "3", "--no-progress", "--out", str(out), *TINY_ARGS],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert json.loads((out / "summary.json").read_text())["evaluated"] == 3


def test_metrics_all_records_every_training_free_metric(tmp_path: Path) -> None:
    from nas_engine.metrics import metric_names

    out = tmp_path / "all"
    proc = run_cli("--metrics", "all", "--budget", "2", "--population", "2", "--tournament", "1",
                   "--out", str(out), "--no-progress", *TINY_ARGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"] == metric_names("rnn")
    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["status"] == "ok":
            assert set(record["metrics"]) == set(metric_names("rnn"))
