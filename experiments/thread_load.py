"""In-process scoring's torch threads under competing CPU load.

The same random search (``--budget`` cells, seed 0, hidden_cov) runs in-process at tiny and at
the default sizes, with torch at 1 thread, at one thread per core, and at the engine's choice
(``--threads`` unset: the cores the other processes leave idle, followed during the run), on a
quiet machine, with one busy process per core competing throughout, and with that load
arriving a third of the way into the run. Each run is its own process; the figure is the
run's wall seconds per architecture (summary.json's ``seconds_per_arch_wall``), over the cells
done when a run is stopped at ``--cap-seconds``.

    python experiments/thread_load.py                      # 200 cells, both sizes
    python experiments/thread_load.py --budget 50 --sizes tiny

Writes experiments/out/thread_load.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": ["--embedding-size", "16", "--hidden-size", "16", "--batch-size", "8", "--bptt", "10"],
    "default": [],
}
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
LOADS = ("none", "throughout", "arrives")


def busy_loop() -> None:
    while True:
        pass


def run(
    budget: int,
    sizes: list[str],
    threads: int | None,
    out: Path,
    cap_seconds: float,
    load_after: float | None = None,
) -> dict:
    """One search in its own process; with ``load_after``, one busy process per core starts
    that many seconds into it (and stops when it ends). A run past ``cap_seconds`` is stopped
    with SIGTERM (the engine then writes its summary): its figure is over the cells done."""
    args = [sys.executable, "-m", "nas_engine.search", "--strategy", "random", "--seed", "0",
            "--budget", str(budget), "--no-progress", "--no-report", "--out", str(out),
            *sizes]  # fmt: skip
    if threads is not None:
        args += ["--threads", str(threads)]
    started = time.perf_counter()
    search = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    hogs: list[multiprocessing.Process] = []
    capped = False
    try:
        if load_after is not None:
            try:
                search.wait(timeout=load_after)
            except subprocess.TimeoutExpired:
                hogs = start_hogs()
        try:
            search.wait(timeout=max(1.0, cap_seconds - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            capped = True
            search.terminate()
            search.wait(timeout=120)
    finally:
        stop_hogs(hogs)
    stderr = search.stderr.read() if search.stderr else ""
    if search.returncode not in (0, 143, -15) or not (out / "summary.json").exists():
        raise SystemExit(f"search failed ({search.returncode}): {stderr[-500:]}")
    summary = json.loads((out / "summary.json").read_text())
    execution = summary["execution"]
    return {
        "threads_asked": threads,
        "threads_used": execution.get("threads_range", execution.get("threads")),
        "thread_changes": execution.get("thread_changes", 0),
        "evaluated": summary.get("evaluated"),
        "capped_at_seconds": cap_seconds if capped else None,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "seconds_per_arch": round(summary["seconds_per_arch_wall"], 4),
        "scoring_median": round(summary["seconds_per_arch_scoring_median"], 4),
    }


def start_hogs() -> list[multiprocessing.Process]:
    hogs = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(CORES)]
    for hog in hogs:
        hog.start()
    return hogs


def stop_hogs(hogs: list[multiprocessing.Process]) -> None:
    for hog in hogs:
        if hog.is_alive():
            hog.terminate()
    for hog in hogs:
        hog.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--sizes", default="tiny,default")
    parser.add_argument("--cap-seconds", type=float, default=420.0, help="per run")
    parser.add_argument("--json", type=Path, default=Path("experiments/out/thread_load.json"))
    args = parser.parse_args()
    rows = []
    quiet_wall: dict[tuple[str, int | None], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for load in LOADS:
            hogs = start_hogs() if load == "throughout" else []
            time.sleep(3)
            try:
                for size in args.sizes.split(","):
                    for threads in (1, CORES, None):
                        out = Path(tmp) / f"{size}-{load}-{threads}"
                        after = None
                        if load == "arrives":  # a third of the way into the quiet run
                            after = quiet_wall[(size, threads)] / 3
                        result = run(
                            args.budget, SIZES[size], threads, out, args.cap_seconds, after
                        )
                        if load == "none":
                            quiet_wall[(size, threads)] = result["wall_seconds"]
                        row = {"sizes": size, "competing_load": load, "load_after_s": after}
                        row.update(result)
                        print(json.dumps(row), flush=True)
                        rows.append(row)
            finally:
                stop_hogs(hogs)
    result = {
        "command": "python experiments/thread_load.py " + " ".join(sys.argv[1:]),
        "budget": args.budget,
        "cores": CORES,
        "competing_load": {
            "none": "nothing else running",
            "throughout": f"{CORES} busy-loop processes, started before the run",
            "arrives": f"{CORES} busy-loop processes, started a third of the way into the run "
            "(by the same setting's quiet wall time)",
        },
        "cpu": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
