"""experiments/metric_report.py's ablation runs: kept per run on disk and resumed."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from helpers import LOGS_ZIP, PTB_DIR, REPO_ROOT, require
from scipy import stats

ARGS = (
    "--metrics", "params,hidden_cov", "--sizes", "fast", "--ablations", "batches,seeds",
    "--repeats", "2", "--ablations-only",
)  # fmt: skip


def _run(out, *extra: str) -> subprocess.CompletedProcess:
    script = REPO_ROOT / "experiments" / "metric_report.py"
    return subprocess.run(
        [sys.executable, str(script), *ARGS, "--out", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_stopped_ablation_resumes_scoring_only_the_missing_logs(tmp_path):
    require(LOGS_ZIP)
    require(PTB_DIR)
    out = tmp_path / "report"
    done = _run(out, "--limit", "8")
    assert done.returncode == 0, done.stderr
    runs = out / "runs"
    assert sorted(p.name for p in runs.glob("*.csv")) == [
        "batches_1.csv",
        "first.csv",
        "seeds_1.csv",
    ]

    # Stop batches_1 part-way (two logs lost) and mark one kept row, so a rescore would show.
    path = runs / "batches_1.csv"
    full = pd.read_csv(path)
    cut = full.iloc[:-2].copy()
    marked = cut["log"].iloc[0]
    cut.loc[cut.index[0], "hidden_cov"] = 1e9
    cut.to_csv(path, index=False)

    done = _run(out, "--limit", "12", "--resume")
    assert done.returncode == 0, done.stderr
    resumed = pd.read_csv(path)
    assert resumed["log"].is_unique and len(resumed) > len(full)
    assert set(full["log"]) <= set(resumed["log"])
    assert resumed.set_index("log").loc[marked, "hidden_cov"] == 1e9  # reused, not rescored
    rescored = resumed.set_index("log").loc[full["log"].iloc[-2:], "hidden_cov"]
    assert rescored.tolist() == full["hidden_cov"].iloc[-2:].tolist()

    report = json.loads((out / "metric_report.json").read_text())
    tau = stats.kendalltau(resumed["hidden_cov"], resumed["test_loss"]).statistic
    assert report["ablations"]["batches"]["hidden_cov"]["taus"][1] == tau


def test_resume_refuses_runs_made_with_other_settings(tmp_path):
    require(LOGS_ZIP)
    require(PTB_DIR)
    out = tmp_path / "report"
    assert _run(out, "--limit", "3").returncode == 0
    done = _run(out, "--limit", "3", "--resume", "--sizes", "default")
    assert done.returncode != 0
    assert "other settings" in done.stderr


def test_runs_scored_side_by_side_give_the_same_report(tmp_path):
    require(LOGS_ZIP)
    require(PTB_DIR)
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(one, "--limit", "6").returncode == 0
    done = _run(two, "--limit", "6", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    reports = [json.loads((d / "metric_report.json").read_text())["ablations"] for d in (one, two)]
    assert reports[0] == reports[1]
    assert set(reports[0]) == {"batches", "seeds"}
    for run in ("first", "batches_1", "seeds_1"):
        frames = [
            pd.read_csv(d / "runs" / f"{run}.csv").drop(columns="seconds") for d in (one, two)
        ]
        pd.testing.assert_frame_equal(*frames)


def test_an_unknown_ablation_or_job_count_is_refused(tmp_path):
    for extra, message in (
        (("--ablations", "seed"), "unknown ablations"),
        (("--jobs", "0"), "--jobs"),
    ):
        done = _run(tmp_path / "report", *extra)
        assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "report").exists()
