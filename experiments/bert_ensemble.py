"""Transformer metrics vs GLUE: single metrics, ensembles chosen on held-out halves, and
metrics inside the deep_wide restriction.

    python experiments/bert_ensemble.py [--scores PATH/scores.csv] [--splits 20]

Reads the ``scores.csv`` of ``python -m nas_engine.benchmark nbbert --metrics all`` and
computes, with the engine's own fitness rule (:class:`nas_engine.fitness.Fitness`, a weighted
mean of mid-rank percentiles of the direction-applied metrics):

* Kendall tau with GLUE of every metric (direction applied) on all entries;
* ensembles of 1 to 3 metrics with weights 1 or 2: for each of ``--splits`` random halvings
  the recipe with the best tau on one half is reported on the other half (the honest
  estimate of choosing an ensemble on this data), and the recipe chosen most often is then
  reported on all entries;
* every metric's tau inside the deep_wide preset (hidden 256, 4 layers): what a metric adds
  once the space is restricted.

Writes ``experiments/out/bert_ensemble.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas_engine.fitness import Fitness
from nas_engine.metrics import metric_names

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"


def spec_of(weights: dict[str, int]) -> str:
    return "+".join(f"{m}:{w}" if w != 1 else m for m, w in weights.items())


def fitness_tau(frame: pd.DataFrame, spec: str) -> float:
    fitness = Fitness.parse(spec, "bert")
    rows = [fitness.values(r) for r in frame[list(fitness.metric_names)].to_dict("records")]
    keep = [i for i, v in enumerate(rows) if v is not None]
    scores = fitness.rank([rows[i] for i in keep])
    glue = frame["glue"].to_numpy()[keep]
    return float(stats.kendalltau(scores, glue).statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", default=str(OUT / "nbbert_dev_ptb" / "scores.csv"))
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--max-size", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.scores).exists():
        print(f"error: {args.scores} not found; run the nbbert benchmark first", file=sys.stderr)
        return 2
    scores = pd.read_csv(args.scores)
    metrics = [m for m in metric_names("bert") if m in scores.columns]
    single = {m: fitness_tau(scores, m) for m in metrics}

    recipes = []
    for k in range(1, args.max_size + 1):
        for names in itertools.combinations(metrics, k):
            for ws in itertools.product((1, 2), repeat=k):
                if min(ws) == 2:
                    continue  # the same as all ones
                recipes.append(spec_of(dict(zip(names, ws, strict=True))))

    rng = np.random.default_rng(0)
    chosen, held_out, held_out_params = [], [], []
    for _ in range(args.splits):
        order = rng.permutation(len(scores))
        a, b = scores.iloc[order[: len(order) // 2]], scores.iloc[order[len(order) // 2 :]]
        taus = {r: fitness_tau(a, r) for r in recipes}
        best = max(taus, key=lambda r: (taus[r], -len(r)))
        chosen.append(best)
        held_out.append(fitness_tau(b, best))
        held_out_params.append(fitness_tau(b, "params"))
    most_common, times = Counter(chosen).most_common(1)[0]
    all_taus = {r: fitness_tau(scores, r) for r in recipes}
    top_all = sorted(all_taus.items(), key=lambda kv: -kv[1])[:10]

    family = scores[(scores.hidden_size == 256) & (scores.num_layers == 4)]
    within = {m: fitness_tau(family, m) for m in metrics}

    result = {
        "scores": args.scores,
        "entries": len(scores),
        "single_metric_tau": single,
        "selection": {
            "recipes_tried": len(recipes),
            "splits": args.splits,
            "held_out_tau_of_chosen_mean": float(np.mean(held_out)),
            "held_out_tau_of_chosen_sd": float(np.std(held_out)),
            "held_out_tau_of_params_mean": float(np.mean(held_out_params)),
            "chosen": dict(Counter(chosen)),
            "most_chosen": most_common,
            "most_chosen_times": times,
            "most_chosen_tau_all_entries": all_taus[most_common],
        },
        "best_on_all_entries_in_sample": dict(top_all),
        "deep_wide_entries": len(family),
        "tau_inside_deep_wide": within,
    }
    (OUT / "bert_ensemble.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Transformer metrics vs GLUE (dev benchmark)",
        "",
        f"{len(scores)} entries; scores from `{args.scores}`.",
        "",
        "| metric | tau (all) | tau inside deep_wide |",
        "| --- | --- | --- |",
        *[f"| `{m}` | {single[m]:+.3f} | {within[m]:+.3f} |" for m in metrics],
        "",
        f"Ensemble selection ({len(recipes)} recipes, {args.splits} random halvings): the recipe "
        f"with the best tau on one half has tau {np.mean(held_out):.3f} ± {np.std(held_out):.3f} "
        f"on the other half (params alone: {np.mean(held_out_params):.3f}); chosen most often "
        f"({times}/{args.splits}): `{most_common}`, tau {all_taus[most_common]:.3f} on all "
        "entries.",
        "",
        "Best recipes on all entries (in-sample, optimistic):",
        "",
        *[f"- `{r}`: {t:.3f}" for r, t in top_all],
    ]
    (OUT / "bert_ensemble.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
