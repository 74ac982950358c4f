"""Seconds per architecture for the ``hidden_cov`` metric (layer 1): engine vs. baseline.

What it measures, on this machine, at the benchmark's default sizes (E=400, H=600, 3 layers,
B=50 columns, T=70 steps, vocabulary = the corpus vocabulary), over the SAME architectures
(the "OK" recipes of the NAS-Bench-NLP logs, first N in sorted file-name order):

- engine: one ``Scorer.score`` call (model build + forward + scoring), the Scorer (corpus
  load) created once outside the timing;
- baseline, "the straightforward way" as the paper's code does it: build the same model
  (seed 0), autograd on, interpret the cell graph node by node (``RecipeCell.step``) for every
  step of all 3 layers, run the decoder, then on the host ``np.corrcoef`` of the (H, B*T)
  matrix of states entering layer 1 and a general eigen-solver ``np.linalg.eig`` (real parts).
  Build, forward and scoring are timed separately (the baseline lives in
  ``nas_engine.analysis.bench``).

Engine and baseline alternate per architecture, after one untimed warm-up of each. The two
scores are checked for agreement (max relative difference, Kendall tau); architectures where
the baseline gives NaN (a constant hidden unit makes ``np.corrcoef`` undefined, while the
engine counts it as a zero eigenvalue) are counted separately and left out of the check.

Run (from the repository root):

    python experiments/bench_hidden_cov.py --n 40          # first 40 architectures
    python experiments/bench_hidden_cov.py --n 0           # all of them
    python experiments/bench_hidden_cov.py --device cuda   # on a GPU

The figures are printed and saved as JSON (``--json``, default
experiments/out/bench_hidden_cov.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from nas_engine.analysis.bench import (
    SEED,
    agreement,
    baseline_run,
    cpu_name,
    finite_or_null,
    load_recipes,
    sync,
)
from nas_engine.corpus import first_batch, load_corpus
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes, Recipe

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared/data"
EMBEDDING, HIDDEN, LAYERS, BATCH, BPTT = 400, 600, 3, 50, 70


# ----------------------------------------------------------------------------- engine
def engine_run(scorer: Scorer, key: str, recipe: dict) -> tuple[float, float]:
    """(seconds, score) of one full ``Scorer.score`` call; score is NaN when it failed."""
    sync(scorer.device)
    t0 = time.perf_counter()
    ev = scorer.score(Candidate(key, recipe))
    sync(scorer.device)
    seconds = time.perf_counter() - t0
    return seconds, ev.metrics.get("hidden_cov", math.nan) if ev.status == "ok" else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="architectures (0: all)")
    parser.add_argument("--corpus", type=Path, default=SHARED_DATA / "ptb")
    parser.add_argument("--logs", type=Path, default=SHARED_DATA / "nasbench_nlp_wt2/logs.zip")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, default=REPO / "experiments/out/bench_hidden_cov.json")
    args = parser.parse_args()

    if not (args.corpus / "test.txt").is_file() and not args.corpus.is_file():
        sys.exit(f"error: PTB corpus not found at {args.corpus} (need test.txt; pass --corpus)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available")
    device = torch.device(args.device)
    archs = load_recipes(args.logs, args.n)
    if not archs:
        sys.exit("error: no architectures to measure")

    # Setup outside the timing: corpus, vocabulary, input batch, the engine's Scorer.
    corpus = load_corpus(args.corpus, "test")
    setup = ScoringSetup(
        metrics=("hidden_cov",),
        embedding_size=EMBEDDING,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        batch_size=BATCH,
        bptt=BPTT,
        corpus=str(args.corpus),
        seed=SEED,
        device=args.device,
    )
    scorer = Scorer(setup, corpus)
    sizes = ModelSizes(len(corpus.vocab), EMBEDDING, HIDDEN, LAYERS)
    tokens = first_batch(corpus.split("test"), BATCH, BPTT).to(device)
    keys = [Recipe.from_dict(r).key for _, r in archs]

    load_before = os.getloadavg()[0]  # other work on the machine skews the timings

    # Warm-up of one architecture each (not timed).
    engine_run(scorer, keys[0], archs[0][1])
    baseline_run(archs[0][1], sizes, tokens, device)

    print(f"{len(archs)} architectures, device {device}, {torch.get_num_threads()} threads")
    print(f"{'#':>3} {'file':<44} {'engine s':>9} {'base s':>8} {'engine':>12} {'baseline':>12}")
    per_arch = []
    for i, ((name, recipe), key) in enumerate(zip(archs, keys, strict=True)):
        e_sec, e_score = engine_run(scorer, key, recipe)
        parts, b_score = baseline_run(recipe, sizes, tokens, device)
        per_arch.append(
            {
                "file": name,
                "key": key,
                "engine_seconds": e_sec,
                "baseline_seconds": parts,
                "engine_score": e_score,
                "baseline_score": b_score,
            }
        )
        print(
            f"{i:>3} {name[:44]:<44} {e_sec:>9.3f} {parts['total']:>8.3f} "
            f"{e_score:>12.2f} {b_score:>12.2f}"
        )

    e_secs = [a["engine_seconds"] for a in per_arch]
    b_secs = [a["baseline_seconds"]["total"] for a in per_arch]
    e_scores = [a["engine_score"] for a in per_arch]
    b_scores = [a["baseline_score"] for a in per_arch]
    max_rel, tau, compared = agreement(e_scores, b_scores)
    e_med, b_med = statistics.median(e_secs), statistics.median(b_secs)
    result = {
        "engine_seconds_per_arch_median": e_med,
        "engine_seconds_per_arch_mean": statistics.fmean(e_secs),
        "baseline_seconds_per_arch_median": b_med,
        "baseline_seconds_per_arch_mean": statistics.fmean(b_secs),
        "baseline_parts_median": {
            part: statistics.median(a["baseline_seconds"][part] for a in per_arch)
            for part in ("build", "forward", "scoring")
        },
        "speedup_median": b_med / e_med,
        "engine_archs_per_s": len(e_secs) / sum(e_secs),
        "baseline_archs_per_s": len(b_secs) / sum(b_secs),
        "n": len(per_arch),
        "engine_failed": sum(not math.isfinite(s) for s in e_scores),
        "baseline_nan": sum(not math.isfinite(s) for s in b_scores),
        "compared": compared,
        "max_rel_diff": max_rel,
        "kendall_tau_engine_vs_baseline": tau,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min_before": load_before,
        "torch_version": torch.__version__,
        "cpu": cpu_name(),
        "sizes": {
            "embedding": EMBEDDING,
            "hidden": HIDDEN,
            "layers": LAYERS,
            "batch": BATCH,
            "bptt": BPTT,
            "vocab": len(corpus.vocab),
        },
        "corpus": str(args.corpus),
        "per_arch": per_arch,
    }

    result = finite_or_null(result)
    summary = {k: v for k, v in result.items() if k != "per_arch"}
    print()
    print(f"engine   median {e_med:.3f} s/arch  mean {result['engine_seconds_per_arch_mean']:.3f}")
    print(
        f"baseline median {b_med:.3f} s/arch  mean {result['baseline_seconds_per_arch_mean']:.3f}"
        f"  (build {result['baseline_parts_median']['build']:.3f}, forward "
        f"{result['baseline_parts_median']['forward']:.3f}, scoring "
        f"{result['baseline_parts_median']['scoring']:.3f})"
    )
    print(f"speedup (median) {result['speedup_median']:.1f}x")
    print(
        f"agreement over {compared}: max rel diff {max_rel:.2e}, Kendall tau {tau:.4f}; "
        f"baseline NaN {result['baseline_nan']}, engine failed {result['engine_failed']}"
    )
    if (
        load_before > 0.5 * os.cpu_count()
        or max(statistics.fmean(e_secs) / e_med, statistics.fmean(b_secs) / b_med) > 1.5
    ):
        print("warning: timings look disturbed by other work on the machine; prefer medians")
    print(json.dumps(summary, indent=2, allow_nan=False))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
