"""Fault drill: kills, torn files, concurrent runs, timeouts and bad input, at tiny sizes.

    python experiments/fault_drill.py          # about 4 minutes on a 2-core CPU

Each scenario runs the real command lines in subprocesses, the way a user or a scheduler
would hit them, and is compared with what the README promises. Prints and saves a table
(``experiments/out/fault_drill.{json,md}``): scenario, expected, observed, records lost
(architectures of the uninterrupted run with the same seed missing from the finished run),
and whether it held.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

TINY = ["--embedding-size", "16", "--hidden-size", "16", "--batch-size", "8", "--bptt", "10",
        "--no-progress"]  # fmt: skip
# Slow enough (about 0.1 s an architecture) that a signal lands mid-run.
SLOW = ["--embedding-size", "200", "--hidden-size", "480", "--batch-size", "32", "--bptt", "50",
        "--layers", "1", "--population", "6", "--tournament", "3", "--no-progress"]  # fmt: skip


@dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    records_lost: int | None
    held: bool


def search(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas_engine.search", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas_engine.search", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )


def records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_for(out: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(records(out)) >= n:
            return
        time.sleep(0.02)


def lost(out: Path, reference: list[dict]) -> int:
    have = {r["arch_id"] for r in records(out)}
    return sum(r["arch_id"] not in have for r in reference)


def one_line(proc: subprocess.CompletedProcess) -> bool:
    lines = proc.stderr.strip().splitlines()
    return proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr


def first_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1][:90] if lines else ""


def drill(tmp: Path) -> list[Row]:
    rows: list[Row] = []
    slow = [*SLOW, "--fitness", "hidden_cov:2+params", "--budget", "60", "--seed", "3"]
    whole = tmp / "whole"
    search(*slow, "--out", str(whole))
    reference = records(whole)

    for name, sig, code in (("SIGKILL", signal.SIGKILL, -9), ("SIGTERM", signal.SIGTERM, 143),
                            ("Ctrl-C", signal.SIGINT, 130)):  # fmt: skip
        out = tmp / f"kill-{name}"
        proc = start(*slow, "--out", str(out))
        wait_for(out, 12, proc)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        resumed = search(*slow, "--out", str(out), "--resume")
        same = [r["arch_id"] for r in records(out)] == [r["arch_id"] for r in reference]
        rows.append(Row(
            f"{name} after 12 results, then --resume",
            f"exit {code}, resume exit 0, the uninterrupted run's records",
            f"exit {proc.returncode}, resume exit {resumed.returncode}, same records: {same}",
            lost(out, reference),
            proc.returncode == code and resumed.returncode == 0 and same,
        ))  # fmt: skip

    for sig, code, label in ((signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")):
        out = tmp / f"twice-{label}"
        proc = start(*slow, "--out", str(out))
        wait_for(out, 5, proc)
        proc.send_signal(sig)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        stderr = proc.stderr.read()
        summary = (out / "summary.json").exists()
        rows.append(Row(
            f"{label} twice in a row", f"exit {code}, summary written, no traceback",
            f"exit {proc.returncode}, summary: {summary}, traceback: {'Traceback' in stderr}",
            None, proc.returncode == code and summary and "Traceback" not in stderr,
        ))  # fmt: skip

    out = tmp / "busy"
    busy = [*SLOW, "--fitness", "hidden_cov:2+params", "--budget", "2000", "--seed", "3"]
    proc = start(*busy, "--out", str(out))
    wait_for(out, 3, proc)
    second = search(*busy, "--out", str(out))
    during = search(*busy, "--out", str(out), "--resume")
    going = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    indices = [r["index"] for r in records(out)]
    rows.append(Row(
        "a second run, and a --resume, on a folder whose run is going",
        "both one line and exit 2; the first run's records whole, no duplicates",
        f"exit {second.returncode} / {during.returncode} ('{first_line(second)[-35:]}'); "
        f"first run still going: {going}, then SIGTERM: exit {proc.returncode}, "
        f"{len(indices)} records, duplicates: {len(indices) - len(set(indices))}",
        0 if indices == list(range(len(indices))) else None,
        one_line(second) and one_line(during) and going and indices == list(range(len(indices))),
    ))  # fmt: skip

    tiny = [*TINY, "--budget", "12", "--population", "4", "--tournament", "2", "--seed", "1"]
    base = tmp / "tiny"
    search(*tiny, "--out", str(base))
    for label, damage, expect_ok in (
        ("a last line torn by a crash (no newline)", lambda t: t[:-40], True),
        ("a garbage line", lambda t: t.replace("\n", "\ngarbage\n", 1), False),
        ("a torn line that ends in a newline",
         lambda t: "\n".join(x[:30] if i == 2 else x for i, x in enumerate(t.split("\n"))), False),
        ("a duplicated line", lambda t: t.split("\n")[0] + "\n" + t, False),
    ):  # fmt: skip
        out = tmp / f"damaged-{len(rows)}"
        out.mkdir()
        for f in ("config.json", "proposals.jsonl"):
            (out / f).write_text((base / f).read_text())
        (out / "results.jsonl").write_text(damage((base / "results.jsonl").read_text()))
        proc = search(*tiny, "--out", str(out), "--resume")
        held = proc.returncode == 0 if expect_ok else one_line(proc)
        rows.append(Row(
            f"--resume of a results.jsonl with {label}",
            "resumes (the torn line dropped)" if expect_ok else "one line naming the line, exit 2",
            f"exit {proc.returncode}: {first_line(proc)[:70] or 'ok'}",
            lost(out, records(base)) if expect_ok else None,
            held,
        ))  # fmt: skip

    batch = [*tiny, "--worker-batch", "4", "--budget", "24", "--population", "8"]
    whole_batch, cut = tmp / "batch-whole", tmp / "batch-cut"
    search(*batch, "--out", str(whole_batch))
    cut.mkdir()
    (cut / "config.json").write_text((whole_batch / "config.json").read_text())
    lines = (whole_batch / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:14]))
    journal = (whole_batch / "proposals.jsonl").read_text().splitlines(keepends=True)
    (cut / "proposals.jsonl").write_text(
        "".join(x for x in journal if json.loads(x)["after"] <= 14)
    )
    proc = search(*batch, "--out", str(cut), "--resume")
    same = (cut / "proposals.jsonl").read_text() == (whole_batch / "proposals.jsonl").read_text()
    rows.append(Row(
        "--worker-batch 4 killed inside a batch, then --resume",
        "the uninterrupted run's proposals and records",
        f"exit {proc.returncode}, same proposals: {same}",
        lost(cut, records(whole_batch)), proc.returncode == 0 and same,
    ))  # fmt: skip

    ray = [*TINY, "--executor", "ray", "--workers", "1", "--strategy", "random", "--seed", "5"]
    out = tmp / "ray-timeout"
    proc = search(*ray, "--budget", "10", "--eval-timeout", "0.35", "--out", str(out))
    timed = sum("timed out" in (r["error"] or "") for r in records(out))
    rows.append(Row(
        "Ray, one worker, --eval-timeout 0.35 (cells score in 0.01-0.3 s)",
        "no false timeouts", f"exit {proc.returncode}, {timed} of {len(records(out))} timed out",
        None, proc.returncode == 0 and timed == 0,
    ))  # fmt: skip

    out = tmp / "ray-term"
    proc = start(*ray, "--budget", "3000", "--out", str(out))
    wait_for(out, 5, proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    )
    rows.append(Row(
        "SIGTERM on a Ray run", "exit 143, summary stopped_by interrupted",
        f"exit {proc.returncode}, stopped_by {summary.get('stopped_by')}",
        None, proc.returncode == 143 and summary.get("stopped_by") == "interrupted",
    ))  # fmt: skip

    began = time.monotonic()
    proc = search(*ray, "--budget", "2", "--ray-address", "127.0.0.1:1", "--out", str(tmp / "x"))
    seconds = time.monotonic() - began
    rows.append(Row(
        "--ray-address 127.0.0.1:1 (nothing listens)", "one line, exit 2, within 30 s",
        f"exit {proc.returncode} after {seconds:.1f} s", None, one_line(proc) and seconds < 30,
    ))  # fmt: skip

    proc = search(*ray, "--budget", "3", "--out", str(tmp / "stale"),
                  env={"RAY_ADDRESS": "127.0.0.1:1"}, timeout=180)  # fmt: skip
    rows.append(Row(
        "a stale RAY_ADDRESS, no --ray-address", "a private local instance; exit 0",
        f"exit {proc.returncode}", None, proc.returncode == 0,
    ))  # fmt: skip

    (tmp / "a-file").write_text("x")
    for label, args in (
        ("--seed -1", ["--seed", "-1"]),
        ("--seed 99999999999999999999999", ["--seed", "99999999999999999999999"]),
        ("--eval-timeout inf", ["--eval-timeout", "inf"]),
        ("--bptt 1", ["--bptt", "1"]),
        ("--out under a file", ["--out", str(tmp / "a-file" / "sub")]),
        ("--out under /proc", ["--out", "/proc/nas-engine-drill"]),
        ("--space bert --hidden-size 16", ["--space", "bert"]),
    ):
        out_args = [] if "--out" in args else ["--out", str(tmp / f"bad-{len(rows)}")]
        proc = search(*TINY, "--budget", "2", *args, *out_args)
        rows.append(Row(f"bad input: {label}", "one line, exit 2", f"exit {proc.returncode}: "
                        f"{first_line(proc)[:70]}", None, one_line(proc)))  # fmt: skip

    logs = tmp / "logs.zip"
    with zipfile.ZipFile(logs, "w") as z:
        z.writestr("a.json", json.dumps({"recepie": "{not json", "status": "OK"}))
    proc = subprocess.run(
        [sys.executable, "-m", "nas_engine.benchmark", "nbnlp", "--logs", str(logs),
         "--out", str(tmp / "nb"), "--metrics", "params"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    rows.append(
        Row(
            "nbnlp: a log whose recepie is not JSON",
            "one line, exit 2, before scoring",
            f"exit {proc.returncode}: {first_line(proc)[:70]}",
            None,
            one_line(proc),
        )
    )
    return rows


def markdown(report: dict) -> str:
    lines = [
        "| scenario | expected | observed | records lost | held |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lost_text = "-" if r["records_lost"] is None else str(r["records_lost"])
        observed = r["observed"].replace("|", "/")
        lines.append(
            f"| {r['scenario']} | {r['expected']} | {observed} | {lost_text} | "
            f"{'yes' if r['held'] else '**no**'} |"
        )
    held = sum(r["held"] for r in report["rows"])
    return (
        "\n".join(lines)
        + f"\n\n{held} of {len(report['rows'])} scenarios held. Hardware: {report['hardware']}.\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/out/fault_drill")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = drill(Path(tmp))
    report = {
        "command": "python experiments/fault_drill.py",
        "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU, Python "
        f"{platform.python_version()}",
        "rows": [asdict(r) for r in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
