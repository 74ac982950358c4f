"""Kendall tau of hidden_cov with the final WikiText-2 test loss of the NAS-Bench-NLP logs,
with two inputs: PTB test text and the engine's embedded synthetic corpus.

    python experiments/reproduce_hidden_cov.py [--metrics hidden_cov,params] [--limit N]

Every OK log is scored at its own sizes (E=400, H=600, 3 layers) on the first batch
(T=70 x B=50) of each input, seed 0. Prints a table and writes
experiments/out/reproduce_hidden_cov.json and .md. Reference (the benchmark's own model code
with the paper's formula, first PTB test batch): tau = -0.33 on these logs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from nas_engine.benchmarks.correlate import correlations
from nas_engine.benchmarks.nbnlp import BenchmarkSettings, read_logs, score_logs
from nas_engine.corpus import embedded_corpus, load_corpus

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(SHARED / "nasbench_nlp_wt2" / "logs.zip"))
    parser.add_argument("--ptb", default=str(SHARED / "ptb"))
    parser.add_argument("--metrics", default="hidden_cov,params")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = parser.parse_args()
    for path in (args.logs, args.ptb):
        if not Path(path).exists():
            print(f"error: {path} not found (the shared reference data)", file=sys.stderr)
            return 2

    logs = read_logs(args.logs)[: args.limit]
    metrics = tuple(m.strip() for m in args.metrics.split(","))
    settings = BenchmarkSettings(metrics=metrics, device=args.device)
    inputs = {"ptb_test": load_corpus(args.ptb, "test"), "embedded": embedded_corpus()}
    report: dict = {
        "logs": len(logs),
        "logs_ok": sum(log.ok for log in logs),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "inputs": {},
    }
    for name, corpus in inputs.items():
        started = time.perf_counter()
        scores = score_logs(logs, corpus, settings)
        corr = correlations(scores, metrics)
        report["inputs"][name] = {
            "corpus": corpus.description,
            "seconds": round(time.perf_counter() - started, 1),
            "correlations": corr,
            "constant_unit_cells": int((scores.get("hidden_cov_l1_constant_units", 0) > 0).sum()),
        }
        print(f"{name}: {corpus.description}")
        for metric, c in corr.items():
            print(
                f"  {metric:<14} tau {c['kendall_tau']:+.3f}  rho {c['spearman_rho']:+.3f}  "
                f"n {c['n']}  failed {c['failed']}  {c['seconds_per_arch']:.3f} s/arch"
            )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce_hidden_cov.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| input | metric | Kendall tau | Spearman rho | n | failed | s/arch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in report["inputs"].items():
        for metric, c in entry["correlations"].items():
            lines.append(
                f"| {name} | {metric} | {c['kendall_tau']:+.3f} | {c['spearman_rho']:+.3f} | "
                f"{c['n']} | {c['failed']} | {c['seconds_per_arch']:.3f} |"
            )
    (out / "reproduce_hidden_cov.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'reproduce_hidden_cov.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
