"""The nbnlp benchmark: reading logs, correlating, and the command end to end."""

from __future__ import annotations

import json
import math
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import LOGS_ZIP, PTB_DIR, require, run_module
from scipy import stats

from nas_engine.benchmarks.correlate import correlations
from nas_engine.benchmarks.nbnlp import LogsError, read_logs

TINY = ["--embedding-size", "16", "--hidden-size", "16", "--batch-size", "8", "--bptt", "10"]


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    return run_module("nas_engine.benchmark", *args, timeout=300)


@pytest.fixture()
def log_folder(tmp_path: Path) -> Path:
    """Eight real logs as a folder of JSON files, one of them marked as failed."""
    folder = tmp_path / "logs"
    folder.mkdir()
    with zipfile.ZipFile(require(LOGS_ZIP)) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".json"))[:8]
        for i, name in enumerate(names):
            data = json.loads(zf.read(name))
            if i == 0:
                data["status"] = "loss is nan!"
            (folder / name).write_text(json.dumps(data))
    return folder


def test_read_logs_zip_counts_status() -> None:
    logs = read_logs(require(LOGS_ZIP))
    assert len(logs) == 345
    # The archive holds 4 runs whose status is "loss is nan!".
    assert sum(not log.ok for log in logs) == 4
    assert all(log.final_test_loss == log.test_losses[-1] for log in logs if log.ok)


def test_read_logs_errors(tmp_path: Path) -> None:
    with pytest.raises(LogsError, match="does not exist"):
        read_logs(tmp_path / "nope.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogsError, match="no NAS-Bench-NLP logs"):
        read_logs(tmp_path / "empty")
    (tmp_path / "bad.json").write_text('{"recepie": "{}"}')
    with pytest.raises(LogsError, match="bad.json"):
        read_logs(tmp_path / "bad.json")


def test_correlations_against_scipy_and_failures() -> None:
    rng = np.random.default_rng(0)
    loss = rng.normal(size=30)
    metric = -loss + rng.normal(scale=0.5, size=30)
    metric[[3, 7]] = np.nan
    scores = pd.DataFrame({"m": metric, "m_seconds": np.full(30, 0.5), "test_loss": loss})
    c = correlations(scores, ("m",))["m"]
    keep = np.isfinite(metric)
    assert c["n"] == 28 and c["failed"] == 2
    assert c["kendall_tau"] == pytest.approx(stats.kendalltau(metric[keep], loss[keep])[0])
    assert c["spearman_rho"] == pytest.approx(stats.spearmanr(metric[keep], loss[keep])[0])
    assert c["kendall_tau"] < -0.3  # built to correlate negatively


def test_nbnlp_command_end_to_end(log_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = run_benchmark(
        "nbnlp", "--logs", str(log_folder), "--corpus", str(require(PTB_DIR)),
        "--metrics", "hidden_cov,params", "--out", str(out), "--no-progress", *TINY,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "7 OK, 1 skipped" in proc.stderr
    corr = json.loads((out / "correlations.json").read_text())
    assert set(corr) == {"hidden_cov", "params"}
    for entry in corr.values():
        assert set(entry) == {"kendall_tau", "spearman_rho", "n", "failed", "seconds_per_arch"}
        assert entry["n"] + entry["failed"] == 7
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 7
    # The recomputed correlation from the CSV matches the JSON.
    finite = scores["hidden_cov"].notna()
    tau = stats.kendalltau(scores["hidden_cov"][finite], scores["test_loss"][finite])[0]
    assert math.isclose(corr["hidden_cov"]["kendall_tau"], tau, rel_tol=1e-9)
    assert (out / "scatter_hidden_cov.png").stat().st_size > 1000
    assert (out / "scatter_params.png").exists()
    assert "kendall_tau" in proc.stdout and "hidden_cov" in proc.stdout
    # --together: one probe for both metrics, the same values and correlations.
    shared_out = tmp_path / "bench-shared"
    proc = run_benchmark(
        "nbnlp", "--logs", str(log_folder), "--corpus", str(require(PTB_DIR)),
        "--metrics", "hidden_cov,params", "--out", str(shared_out), "--no-progress",
        "--together", *TINY,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shared = pd.read_csv(shared_out / "scores.csv")
    np.testing.assert_allclose(shared["hidden_cov"], scores["hidden_cov"], rtol=1e-9)
    assert (shared["hidden_cov_seconds"] == shared["params_seconds"]).all()
    shared_corr = json.loads((shared_out / "correlations.json").read_text())
    assert shared_corr["hidden_cov"]["kendall_tau"] == pytest.approx(
        corr["hidden_cov"]["kendall_tau"]
    )
    assert json.loads((shared_out / "run.json").read_text())["settings"]["together"] is True


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--metrics", "nope"], "unknown metric"),
        (["--corpus", "/nonexistent/corpus"], "does not exist"),
        (["--limit", "0"], "must be >= 1"),
    ],
)
def test_nbnlp_bad_input(log_folder: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "bench"
    proc = run_benchmark("nbnlp", "--logs", str(log_folder), "--out", str(out), *args, *TINY)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_nbnlp_missing_logs(tmp_path: Path) -> None:
    proc = run_benchmark("nbnlp", "--logs", str(tmp_path / "none.zip"), *TINY)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_together_gives_the_per_metric_values(log_folder: Path) -> None:
    """One probe for all metrics (the ablations' mode) measures what each metric measures on
    a probe of its own, including which metric fails and why."""
    from helpers import token_corpus

    from nas_engine.benchmarks.nbnlp import BenchmarkSettings, score_logs

    logs = read_logs(log_folder)
    settings = BenchmarkSettings(
        metrics=("hidden_cov", "jacob_cov", "activation_distance", "params"),
        embedding_size=8,
        hidden_size=16,
        batch_size=4,
        bptt=6,
    )
    corpus = token_corpus()
    alone = score_logs(logs, corpus, settings)
    shared = score_logs(logs, corpus, replace(settings, together=True))
    assert len(alone) == len(shared) == 7
    for metric in settings.metrics:
        np.testing.assert_allclose(shared[metric], alone[metric], rtol=1e-6, equal_nan=True)
        failed = alone[metric].isna()
        assert (shared[f"{metric}_error"] != "").tolist() == failed.tolist()
    # Every metric of a shared row carries the one probe's seconds.
    assert (shared["hidden_cov_seconds"] == shared["params_seconds"]).all()


def test_together_gives_each_failed_metric_its_own_reason(log_folder: Path, temp_metric) -> None:
    """Two metrics failing on one probe: each row names its own reason, not both."""
    from helpers import token_corpus

    from nas_engine.benchmarks.nbnlp import BenchmarkSettings, score_logs
    from nas_engine.metrics import MetricFailure

    def failing(reason: str):
        def fn(probe):
            raise MetricFailure(reason)

        return fn

    first = temp_metric("test_fails_first", failing("the first reason"))
    second = temp_metric("test_fails_second", failing("the second reason"))
    settings = BenchmarkSettings(
        metrics=("params", first, second),
        embedding_size=8,
        hidden_size=16,
        batch_size=4,
        bptt=6,
        together=True,
    )
    scores = score_logs(read_logs(log_folder)[:3], token_corpus(), settings)
    assert (scores["params_error"] == "").all() and scores["params"].notna().all()
    assert (scores[f"{first}_error"] == "the first reason").all()
    assert (scores[f"{second}_error"] == "the second reason").all()
