"""In-process scoring's torch threads under competing CPU load.

The same random search (``--budget`` cells, seed 0, hidden_cov) runs in-process at tiny and at
the default sizes, with torch at 1 thread, at one thread per core, and at the engine's choice
(``--threads`` unset: the cores the other processes leave idle), first on a quiet machine,
then with one busy process per core competing. Each run is its own process; the figure is the
run's wall seconds per architecture (summary.json's ``seconds_per_arch_wall``).

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


def busy_loop() -> None:
    while True:
        pass


def run(budget: int, sizes: list[str], threads: int | None, out: Path) -> dict:
    args = [sys.executable, "-m", "nas_engine.search", "--strategy", "random", "--seed", "0",
            "--budget", str(budget), "--no-progress", "--no-report", "--out", str(out),
            *sizes]  # fmt: skip
    if threads is not None:
        args += ["--threads", str(threads)]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"search failed: {done.stderr[-500:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "threads_asked": threads,
        "threads_used": summary["execution"].get("threads"),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "seconds_per_arch": round(summary["seconds_per_arch_wall"], 4),
        "scoring_median": round(summary["seconds_per_arch_scoring_median"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--sizes", default="tiny,default")
    parser.add_argument("--json", type=Path, default=Path("experiments/out/thread_load.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in (False, True):
            hogs = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(CORES)]
            if loaded:
                for hog in hogs:
                    hog.start()
                time.sleep(65)  # the one-minute load average catches up with the hogs
            try:
                for size in args.sizes.split(","):
                    for threads in (1, CORES, None):
                        out = Path(tmp) / f"{size}-{loaded}-{threads}"
                        row = {"sizes": size, "competing_load": loaded,
                               **run(args.budget, SIZES[size], threads, out)}  # fmt: skip
                        print(json.dumps(row), flush=True)
                        rows.append(row)
            finally:
                for hog in hogs:
                    if hog.is_alive():
                        hog.terminate()
    result = {
        "command": "python experiments/thread_load.py " + " ".join(sys.argv[1:]),
        "budget": args.budget,
        "cores": CORES,
        "competing_load": f"{CORES} busy-loop processes",
        "cpu": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
