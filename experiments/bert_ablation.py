"""How much the forward-only transformer metrics' tau with GLUE depends on the seed and the text.

    python experiments/bert_ablation.py [--seeds 0,1,2] [--metrics head_confidence,...]

Scores the dev benchmark's entries (NAS-Bench-BERT JSON) with the given metrics (sharing one
probe per entry) once per seed on PTB test text, and once with the embedded synthetic corpus
(seed 0), at 8 sequences x 64 tokens; prints and writes ``experiments/out/bert_ablation.json``
with the Kendall tau of each run and the mean and sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from nas_engine.benchmarks.nbbert import (
    BertBenchmarkSettings,
    correlations,
    read_benchmark,
    score_entries,
)
from nas_engine.corpus import embedded_corpus, load_corpus

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default=str(DATA / "nasbench_bert" / "benchmark_dev.json"))
    ap.add_argument("--corpus", default=str(DATA / "ptb"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--metrics", default="head_confidence,activation_distance,head_softmax_confidence"
    )
    args = ap.parse_args()
    entries = read_benchmark(args.benchmark)
    metrics = tuple(args.metrics.split(","))
    runs = {}
    texts = {"ptb": load_corpus(args.corpus, "test"), "embedded": embedded_corpus()}
    plan = [("ptb", int(s)) for s in args.seeds.split(",")] + [("embedded", 0)]
    for text, seed in plan:
        settings = BertBenchmarkSettings(
            metrics=metrics, batch_size=8, length=64, seed=seed, together=True
        )
        start = time.perf_counter()
        scores = score_entries(entries, texts[text], settings)
        corr = correlations(scores, metrics, target="glue")
        runs[f"{text}, seed {seed}"] = {
            m: {"kendall_tau": c["kendall_tau"], "n": c["n"], "failed": c["failed"]}
            for m, c in corr.items()
        }
        print(
            f"{text}, seed {seed}: "
            + ", ".join(f"{m} {c['kendall_tau']:+.3f}" for m, c in corr.items())
            + f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    seeds = [k for k in runs if k.startswith("ptb")]
    summary = {
        m: {
            "tau_mean_over_seeds": statistics.fmean(runs[k][m]["kendall_tau"] for k in seeds),
            "tau_sd_over_seeds": statistics.pstdev(runs[k][m]["kendall_tau"] for k in seeds),
            "tau_embedded_corpus_seed0": runs["embedded, seed 0"][m]["kendall_tau"],
        }
        for m in metrics
    }
    out = ROOT / "experiments" / "out" / "bert_ablation.json"
    out.write_text(
        json.dumps({"entries": len(entries), "runs": runs, "summary": summary}, indent=2) + "\n"
    )
    for m, s in summary.items():
        print(
            f"{m}: tau {s['tau_mean_over_seeds']:+.3f} ± {s['tau_sd_over_seeds']:.3f} over seeds "
            f"(PTB); embedded corpus {s['tau_embedded_corpus_seed0']:+.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
