"""Crash safety: real search processes killed (SIGKILL, SIGTERM, SIGINT) and resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, run_module

import nas_engine
from nas_engine import ConfigError
from nas_engine.storage import RunStore

# Slow enough (about 0.1 s per architecture) that a kill lands mid-run; an ensemble fitness so
# that the restored standings matter (its recorded value depends on the results before it).
BUDGET = 60
SEARCH = [
    "--strategy",
    "evolution",
    "--population",
    "6",
    "--tournament",
    "3",
    "--fitness",
    "hidden_cov:2+params",
    "--budget",
    str(BUDGET),
    "--seed",
    "3",
    "--hidden-size",
    "480",
    "--embedding-size",
    "200",
    "--batch-size",
    "32",
    "--bptt",
    "50",
    "--layers",
    "1",
    "--no-progress",
]


TINY = dict(
    hidden_size=16,
    embedding_size=16,
    batch_size=8,
    bptt=10,
    population=4,
    tournament=2,
    report=False,
)


def comparable(out: Path) -> list[tuple]:
    """Everything a run decided and measured, without the wall-clock seconds."""
    return [
        (r.index, r.arch_id, r.origin, r.status, r.fitness, tuple(sorted(r.metrics.items())))
        for r in RunStore(out).read_results()
    ]


def assert_same_results(got: list[tuple], expected: list[tuple]) -> None:
    """The same decisions (indices, architectures, origins, states, fitness) and the same
    measurements to float rounding: with the cores busy, two runs' hidden_cov of the same
    architecture were seen to differ in the seventh digit (-10241.6339 against -10241.6288;
    the threaded multiplies' summation order, not pinned down further)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:5] == e[:5]
        assert [name for name, _ in g[5]] == [name for name, _ in e[5]]
        assert [v for _, v in g[5]] == pytest.approx([v for _, v in e[5]], rel=1e-5)


def start_search(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas_engine.search", *SEARCH, "--out", str(out), *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A shell's background job inherits SIGINT ignored, and Python then keeps ignoring
        # it: give the run the default disposition, as a terminal's Ctrl-C would find it.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_after(proc: subprocess.Popen, out: Path, results: int, sig: int) -> None:
    """Send ``sig`` once the run has reported ``results`` results (and before it ends)."""
    path = out / "results.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= results:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped: {proc.stderr.read()[-500:]}")
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("whole") / "run"
    done = run_module("nas_engine.search", *SEARCH, "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    return comparable(out)


@pytest.mark.parametrize(
    ("sig", "exit_code"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143), (signal.SIGINT, 130)],
    ids=["SIGKILL", "SIGTERM", "SIGINT"],
)
def test_a_stopped_run_resumes_to_the_uninterrupted_results(
    tmp_path: Path, uninterrupted: list[tuple], sig: int, exit_code: int
) -> None:
    out = tmp_path / "run"
    proc = start_search(out)
    stop_after(proc, out, 12, sig)
    assert proc.returncode == exit_code
    before = comparable(out)
    assert 12 <= len(before) < BUDGET
    assert_same_results(before, uninterrupted[: len(before)])
    summary_written = (out / "summary.json").exists()
    if sig == signal.SIGKILL:
        assert not summary_written  # nothing ran after the kill: the journal is all there is
    else:  # Ctrl-C and SIGTERM stop cleanly, with the summary of what was done
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stopped_by"] == "interrupted"
        assert summary["evaluated"] == len(before)
        # ... the top table of what was recorded, as after a budget, and the report
        printed = proc.stdout.read()
        assert "arch_id" in printed and summary["top"][0]["arch_id"] in printed
        assert "report.html" in printed and (out / "report.html").is_file()

    done = run_module("nas_engine.search", *SEARCH, "--out", str(out), "--resume", timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert f"{len(before)} results restored" in done.stderr
    assert_same_results(comparable(out), uninterrupted)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == len(before)
    assert summary["evaluated"] == BUDGET


def test_resume_after_a_line_cut_short_by_the_crash(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    nas_engine.search(budget=10, out=str(whole), seed=1, **TINY)
    cut = tmp_path / "cut"
    nas_engine.search(budget=6, out=str(cut), seed=1, **TINY)
    # The config records budget 6; a crash of the budget-10 run looks like this plus a torn
    # last line, so give the folder the budget-10 identity and tear its last record.
    config = json.loads((whole / "config.json").read_text())
    (cut / "config.json").write_text(json.dumps(config))
    (cut / "summary.json").unlink()
    with (cut / "results.jsonl").open("a") as f:
        f.write('{"index": 6, "arch_id": "trunc')
    resumed = nas_engine.search(budget=10, out=str(cut), seed=1, resume=True, **TINY)
    assert_same_results(comparable(cut), comparable(whole))
    assert [r.index for r in resumed] == list(range(10))


def test_resume_refuses_a_run_with_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    nas_engine.search(budget=5, out=str(out), seed=1, **TINY)
    with pytest.raises(ConfigError, match="differs in: seed"):
        nas_engine.search(budget=5, out=str(out), seed=2, resume=True, **TINY)
    with pytest.raises(ConfigError, match="differs in: init_gain"):
        nas_engine.search(budget=5, out=str(out), seed=1, init_gain=1.5, resume=True, **TINY)
    with pytest.raises(ConfigError, match="holds no run"):
        nas_engine.search(budget=5, out=str(tmp_path / "empty"), resume=True, **TINY)
    with pytest.raises(ConfigError, match="needs --out"):
        nas_engine.search(budget=5, resume=True, **TINY)


def test_resume_reads_a_folder_written_before_a_setting_existed(tmp_path: Path) -> None:
    """A config.json without a later setting (init_gain) ran at that setting's default: it
    resumes at the default and is refused at another value."""
    out = tmp_path / "run"
    nas_engine.search(budget=4, out=str(out), seed=1, **TINY)
    config = json.loads((out / "config.json").read_text())
    del config["init_gain"]
    (out / "config.json").write_text(json.dumps(config))
    (out / "summary.json").unlink()
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:2]))  # stopped after two results
    resumed = nas_engine.search(budget=4, out=str(out), seed=1, resume=True, **TINY)
    assert [r.index for r in resumed] == list(range(4))
    with pytest.raises(ConfigError, match="differs in: init_gain"):
        nas_engine.search(budget=4, out=str(out), seed=1, init_gain=2.0, resume=True, **TINY)


def test_resume_refuses_a_journal_the_strategy_does_not_reproduce(tmp_path: Path) -> None:
    out = tmp_path / "run"
    nas_engine.search(budget=5, out=str(out), seed=1, **TINY)
    lines = (out / "proposals.jsonl").read_text().splitlines()
    forged = json.loads(lines[2]) | {"key": "0123456789abcdef"}
    lines[2] = json.dumps(forged)
    (out / "proposals.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="proposal 2"):
        nas_engine.search(budget=5, out=str(out), seed=1, resume=True, **TINY)


def test_resume_of_a_finished_run_scores_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = nas_engine.search(budget=6, out=str(out), seed=1, **TINY)
    again = nas_engine.search(budget=6, out=str(out), seed=1, resume=True, **TINY)
    assert again == first
    assert len((out / "results.jsonl").read_text().splitlines()) == 6


def test_eval_timeout_in_process_records_failures_and_goes_on(tmp_path: Path) -> None:
    # Benchmark sizes take far longer than 1 ms to score.
    results = nas_engine.search(
        budget=3, out=str(tmp_path / "run"), eval_timeout=0.001, strategy="random"
    )
    assert [r.status for r in results] == ["failed"] * 3
    assert all("timed out" in r.error and "--eval-timeout 0.001" in r.error for r in results)
    # The timer is gone afterwards: nothing fires later in this process.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_folder_in_use_is_refused_and_freed_by_a_kill(tmp_path: Path) -> None:
    """Two runs on one --out: the second (and a --resume while the first runs) is one line
    and exit 2, with nothing written; once the first is SIGKILLed its lock is gone."""
    out = tmp_path / "run"
    # A budget the first run cannot finish while the others start (each start takes seconds).
    long_search = [*SEARCH[: SEARCH.index("--budget")], "--budget", "5000",
                   *SEARCH[SEARCH.index("--budget") + 2 :]]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_engine.search", *long_search, "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        path = out / "results.jsonl"
        deadline = time.monotonic() + 180
        while not (path.exists() and path.read_text().count("\n")):
            assert time.monotonic() < deadline and proc.poll() is None, "the first run ended"
            time.sleep(0.02)
        for extra in ((), ("--resume",)):
            second = run_module("nas_engine.search", *long_search, "--out", str(out), *extra)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and "in use by another run" in lines[0], second.stderr
        assert proc.poll() is None, "the first run was still going throughout"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(len(records)))
    store = RunStore(out)
    store.claim()  # the killed run's lock went with its process
    store.release()


def test_a_held_folder_is_refused_in_process_and_free_after(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = RunStore(out)
    holder.claim()
    try:
        with pytest.raises(ConfigError, match="in use by another run"):
            nas_engine.search(budget=3, out=str(out), seed=1, **TINY)
    finally:
        holder.release()
    assert len(nas_engine.search(budget=3, out=str(out), seed=1, **TINY)) == 3


@pytest.mark.parametrize("where", ["file/sub", "/proc/nas-engine-test/run"])
def test_an_out_that_cannot_be_created_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    out = where if where.startswith("/") else str(tmp_path / where)
    proc = run_module("nas_engine.search", "--budget", "2", "--out", out, "--hidden-size", "16",
                      "--embedding-size", "16", "--batch-size", "4", "--bptt", "8")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be created" in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda lines: lines[:3] + ["garbage\n"] + lines[3:], "line 4 is not JSON"),
        (lambda lines: lines[:3] + [lines[3][:20] + "\n"] + lines[4:], "line 4 is not JSON"),
        (lambda lines: lines[:3] + ['{"index": 3}\n'] + lines[4:], "line 4 is not a result"),
        (lambda lines: lines[:4] + [lines[3]] + lines[5:], "line 5 holds result 3"),
        (lambda lines: lines[:3] + lines[4:], "line 4 holds result 4"),
    ],
    ids=["garbage", "torn-with-newline", "wrong-shape", "duplicated", "missing"],
)
def test_a_damaged_results_file_is_refused_on_resume_with_its_line(
    tmp_path: Path, damage, match: str
) -> None:
    out = tmp_path / "run"
    nas_engine.search(budget=6, out=str(out), seed=1, **TINY)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(damage(lines)))
    with pytest.raises(ConfigError, match=match):
        nas_engine.search(budget=6, out=str(out), seed=1, resume=True, **TINY)
    proc = run_module("nas_engine.search", "--budget", "6", "--out", str(out), "--seed", "1",
                      "--resume", "--hidden-size", "16", "--embedding-size", "16",
                      "--batch-size", "8", "--bptt", "10", "--population", "4",
                      "--tournament", "2")  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_sigterm_on_a_ray_run_stops_it_cleanly_with_exit_143(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny = ["--hidden-size", "16", "--embedding-size", "16", "--batch-size", "8", "--bptt", "10"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_engine.search", "--executor", "ray", "--workers", "1",
         "--budget", "3000", "--no-progress", "--out", str(out), *tiny],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    stop_after(proc, out, 5, signal.SIGTERM)
    assert proc.returncode == 143, proc.stderr.read()[-1000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "interrupted"
    assert summary["evaluated"] == len((out / "results.jsonl").read_text().splitlines()) < 3000


def test_resume_with_worker_batches_killed_inside_a_batch_is_exact(tmp_path: Path) -> None:
    options = dict(seed=2, worker_batch=4, population=8, tournament=3,
                   hidden_size=16, embedding_size=16, batch_size=8, bptt=10)  # fmt: skip
    whole = nas_engine.search(budget=40, out=str(tmp_path / "whole"), **options)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    (cut / "summary.json").unlink()
    lines = (cut / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:30]))  # killed after 2 of a batch of 4
    journal = (cut / "proposals.jsonl").read_text().splitlines(keepends=True)
    kept = [line for line in journal if json.loads(line)["after"] <= 30]
    assert len(kept) == 32  # the batch of proposals 28..31 was in flight
    (cut / "proposals.jsonl").write_text("".join(kept))
    resumed = nas_engine.search(budget=40, out=str(cut), resume=True, **options)
    assert [(r.arch_id, r.origin, r.fitness) for r in resumed] == [
        (r.arch_id, r.origin, r.fitness) for r in whole
    ]
    assert (cut / "proposals.jsonl").read_text() == (
        tmp_path / "whole" / "proposals.jsonl"
    ).read_text()


@pytest.mark.parametrize(
    ("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_second_stop_signal_does_not_cut_the_summary_short(
    tmp_path: Path, sig: int, exit_code: int
) -> None:
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        proc = start_search(out)
        path = out / "results.jsonl"
        deadline = time.monotonic() + 180
        while not (path.exists() and path.read_text().count("\n") >= 3):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(sig)
        time.sleep(0.005 * attempt)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        stderr = proc.stderr.read()
        assert proc.returncode == exit_code, stderr[-1000:]
        assert "Traceback" not in stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stopped_by"] == "interrupted"
