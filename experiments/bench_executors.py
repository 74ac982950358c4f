"""Scoring throughput: the Ray executor against in-process, on the same architectures.

    python experiments/bench_executors.py --n 60 --workers 1,2 [--device cuda --gpu-share]

Each configuration runs a random search of N architectures with the same seed (so every
configuration scores the same architectures) and times it from the moment the workers are
ready (``steady``) and from the call (``with_startup``, which includes starting Ray and its
workers). With ``--gpu-share`` and ``--device cuda`` each Ray configuration of W workers asks
1/W GPU per worker, so W workers share one GPU. Prints a table and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from nas_engine.config import SearchConfig
from nas_engine.engine import run_search


def measure(config: SearchConfig) -> dict:
    ready: list[float] = []
    began = time.perf_counter()

    def workers_ready(corpus: str, restored: int) -> None:
        ready.append(time.perf_counter())

    outcome = run_search(config, on_start=workers_ready)
    ended = time.perf_counter()
    n = len(outcome.results)
    steady = ended - ready[0]
    return {
        "executor": config.executor,
        "workers": config.workers if config.executor == "ray" else 1,
        "gpus_per_worker": config.gpus_per_worker,
        "n": n,
        "ok": sum(r.ok for r in outcome.results),
        "archs_per_s": round(n / steady, 3),
        "archs_per_s_with_startup": round(n / (ended - began), 3),
        "steady_seconds": round(steady, 2),
        "startup_seconds": round(ready[0] - began, 2),
        "scores": {r.arch_id: r.fitness for r in outcome.results},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60, help="architectures per configuration")
    p.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    p.add_argument("--metric", default="hidden_cov")
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu-share", action="store_true", help="W workers share one GPU")
    p.add_argument("--corpus", default=None)
    p.add_argument("--json", default="experiments/out/bench_executors.json")
    args = p.parse_args()

    base = dict(
        space="rnn",
        fitness=args.metric,
        strategy="random",
        budget=args.n,
        seed=0,
        device=args.device,
        corpus=args.corpus,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        configs = [SearchConfig(**base, out=f"{tmp}/inprocess")]
        for w in (int(x) for x in args.workers.split(",")):
            share = 1.0 / w if args.gpu_share else 0.0
            configs.append(
                SearchConfig(
                    **base, out=f"{tmp}/ray{w}", executor="ray", workers=w, gpus_per_worker=share
                )
            )
        for config in configs:
            row = measure(config)
            rows.append(row)
            print(
                f"{row['executor']:>9} workers={row['workers']} "
                f"{row['archs_per_s']:.2f} archs/s steady, "
                f"{row['archs_per_s_with_startup']:.2f} with startup "
                f"({row['startup_seconds']:.1f} s to start)",
                flush=True,
            )
    reference = rows[0]
    for row in rows:
        row["speedup_vs_inprocess"] = round(row["archs_per_s"] / reference["archs_per_s"], 3)
        same = row["scores"].keys() == reference["scores"].keys()
        row["same_architectures_as_inprocess"] = same
        row["largest_score_difference"] = (
            max(abs(row["scores"][k] - v) for k, v in reference["scores"].items() if v is not None)
            if same
            else None
        )
    for row in rows:
        row.pop("scores")
    report = {
        "metric": args.metric,
        "sizes": "E=400 H=600 3 layers B=50 T=70",
        "device": args.device,
        "hardware": torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"{os.cpu_count()}-core {platform.processor() or platform.machine()} CPU",
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(rows, indent=2))
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
