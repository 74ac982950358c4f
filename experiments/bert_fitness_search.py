"""A recommended BERT fitness: small metric ensembles vs GLUE on the dev entries, as-trained.

    python experiments/bert_fitness_search.py [--scores PATH/scores.csv] [--splits 20]

Reads the ``scores.csv`` of an all-metrics benchmark run on the dev entries and the
``as-trained`` networks (default: the table's run, made by ``experiments/bert_benchmark_table.py``
or by hand with ``python -m nas_engine.benchmark nbbert --benchmark
../shared/data/nasbench_bert/benchmark_dev.json --network as-trained --metrics all --together
--out experiments/out/bert_benchmark_table/as-trained``) and scores every recipe of one to
``--max-size`` metrics with integer weights 1 to ``--max-weight`` (a weight vector and its
multiples counted once) by the benchmark's own rule (``spec_column`` of
:mod:`nas_engine.benchmarks.specs`: the engine's weighted mean of mid-rank percentiles,
the scored set as the population), and its Kendall tau with GLUE. Only the dev entries are
used (part of the benchmark is held back).

Overfitting guards:

* selection on half, report on the other half: for ``--splits`` seeds, the entries are
  halved (``random``: a permutation of the entries; ``grouped``: a permutation of the trained
  networks, so that entries that trained the same network, i.e. replicates, never sit on both
  sides); the best recipe on the selection half is reported on the held-out half, with the
  percentiles recomputed inside each half (the engine's population);
* the recommended recipe is the one chosen most often over those selections (not the best on
  all 250), and its tau is reported on every half of every split.

Writes ``experiments/out/bert_fitness_search.json``. If the confirmation run of the real
command exists (``--confirm DIR``: ``python -m nas_engine.benchmark nbbert ... --metrics SPEC``),
its tau, timings and agreement with the offline value are added.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import Counter
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas_engine.analysis.bert import as_trained_key
from nas_engine.analysis.ensembles import split_halves
from nas_engine.benchmarks.nbbert import read_benchmark
from nas_engine.benchmarks.specs import spec_column
from nas_engine.fitness import Fitness
from nas_engine.metrics import get_metric, metric_names

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"
DEFAULT_SCORES = OUT / "bert_benchmark_table" / "as-trained" / "scores.csv"
DEFAULT_BENCHMARK = ROOT.parent / "shared" / "data" / "nasbench_bert" / "benchmark_dev.json"
DEFAULT_CONFIRM = OUT / "bert_fitness_confirm"
GOAL = 0.62


def spec_of(weights: dict[str, int]) -> str:
    return "+".join(f"{m}:{w}" if w != 1 else m for m, w in weights.items())


def recipes(metrics: list[str], max_size: int, max_weight: int) -> list[dict[str, int]]:
    """Every ensemble of 1..max_size metrics with weights 1..max_weight, up to a common
    factor (2:2 is 1:1)."""
    out = []
    for k in range(1, max_size + 1):
        for names in itertools.combinations(metrics, k):
            for ws in itertools.product(range(1, max_weight + 1), repeat=k):
                if reduce(math.gcd, ws) != 1:
                    continue
                out.append(dict(zip(names, ws, strict=True)))
    return out


def percentiles(signed: pd.DataFrame, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per metric, the mid-rank percentile of each of ``rows`` among ``rows`` (the engine's
    rule; no metric has a missing value here)."""
    n = len(rows)
    return {m: (stats.rankdata(signed[m].to_numpy()[rows]) - 0.5) / n for m in signed}


def tau_of(recipe: dict[str, int], pct: dict[str, np.ndarray], glue: np.ndarray) -> float:
    fitness = sum(w * pct[m] for m, w in recipe.items()) / sum(recipe.values())
    return float(stats.kendalltau(fitness, glue).statistic)


def grouped_halves(keys: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Halves of the entries by trained network: a seed-``seed`` permutation of the distinct
    networks, filled into the first half until it holds half the entries."""
    networks = np.unique(keys)
    order = np.random.default_rng(seed).permutation(len(networks))
    first, count = set(), 0
    sizes = Counter(keys)
    for i in order:
        if count >= len(keys) // 2:
            break
        first.add(networks[i])
        count += sizes[networks[i]]
    mask = np.array([k in first for k in keys])
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", default=str(DEFAULT_SCORES))
    ap.add_argument("--benchmark", default=str(DEFAULT_BENCHMARK))
    ap.add_argument("--splits", type=int, default=20, help="seeds per kind of halving")
    ap.add_argument("--max-size", type=int, default=3)
    ap.add_argument("--max-weight", type=int, default=3)
    ap.add_argument("--confirm", default=str(DEFAULT_CONFIRM))
    ap.add_argument("--out", default=str(OUT / "bert_fitness_search.json"))
    args = ap.parse_args()
    path = Path(args.scores)
    if not path.exists():
        print(f"error: {path} not found; run the nbbert benchmark first", file=sys.stderr)
        return 2
    scores = pd.read_csv(path).sort_values("id").reset_index(drop=True)
    run = json.loads((path.parent / "run.json").read_text())
    metrics = [m for m in metric_names("bert") if m in scores.columns]
    if scores[metrics].isna().any().any():
        print("error: a metric failed on some entry; this search assumes none", file=sys.stderr)
        return 2
    signed = pd.DataFrame({m: get_metric(m, "bert").sign * scores[m] for m in metrics})
    glue = scores["glue"].to_numpy(dtype=float)
    configs = {e.id: e.config for e in read_benchmark(args.benchmark)}
    keys = np.array([as_trained_key(configs[i]) for i in scores["id"]])
    everyone = np.arange(len(scores))
    all_pct = percentiles(signed, everyone)

    candidates = recipes(metrics, args.max_size, args.max_weight)
    print(f"{len(candidates)} recipes over {len(metrics)} metrics, {len(scores)} entries")
    full = {spec_of(r): tau_of(r, all_pct, glue) for r in candidates}
    by_spec = {spec_of(r): r for r in candidates}

    # selection on one half, report on the other
    selections = []
    half_taus: dict[str, list[float]] = {}
    for kind in ("random", "grouped"):
        for seed in range(args.splits):
            a, b = (
                split_halves(len(scores), seed) if kind == "random" else grouped_halves(keys, seed)
            )
            pa, pb = percentiles(signed, a), percentiles(signed, b)
            on_a = {s: tau_of(r, pa, glue[a]) for s, r in by_spec.items()}
            on_b = {s: tau_of(r, pb, glue[b]) for s, r in by_spec.items()}
            for s in by_spec:
                half_taus.setdefault(s, []).extend([on_a[s], on_b[s]])
            for sel, rep, sel_name in ((on_a, on_b, "A"), (on_b, on_a, "B")):
                best = max(sel, key=sel.get)
                selections.append(
                    {
                        "kind": kind,
                        "seed": seed,
                        "selected_on": sel_name,
                        "spec": best,
                        "tau_selection_half": round(sel[best], 4),
                        "tau_held_out_half": round(rep[best], 4),
                        "params_tau_held_out_half": round(rep["params"], 4),
                    }
                )
    counts = Counter(s["spec"] for s in selections)
    recommended = counts.most_common(1)[0][0]
    fitness = Fitness.parse(recommended, "bert")
    column = spec_column(scores, fitness)  # the benchmark command's own computation
    rec_tau = float(stats.kendalltau(column, glue).statistic)
    assert math.isclose(rec_tau, full[recommended], rel_tol=0, abs_tol=1e-12)

    def held_out(kind: str) -> dict:
        held = [s["tau_held_out_half"] for s in selections if s["kind"] == kind]
        base = [s["params_tau_held_out_half"] for s in selections if s["kind"] == kind]
        return {
            "selections": len(held),
            "held_out_tau_mean": round(float(np.mean(held)), 4),
            "held_out_tau_sd": round(float(np.std(held, ddof=1)), 4),
            "held_out_tau_min": round(float(np.min(held)), 4),
            "params_held_out_tau_mean": round(float(np.mean(base)), 4),
        }

    def half_summary(spec: str) -> dict:
        t = np.array(half_taus[spec])
        n = len(t) // 2
        return {
            "halves": len(t),
            "mean": round(float(t.mean()), 4),
            "sd": round(float(t.std(ddof=1)), 4),
            "min": round(float(t.min()), 4),
            "share_at_least_goal": round(float((t >= GOAL).mean()), 3),
            "random_halves_mean": round(float(t[:n].mean()), 4),
            "grouped_halves_mean": round(float(t[n:].mean()), 4),
        }

    # what the configuration alone says (no network built), and the recipe inside each family
    descriptors = {
        c: round(float(stats.kendalltau(scores[c], glue).statistic), 4)
        for c in ("num_layers", "hidden_size")
    }
    within = {}
    for (hidden, depth), part in scores.groupby(["hidden_size", "num_layers"]):
        rows = part.index.to_numpy()
        pct = percentiles(signed, rows)
        within[f"H{hidden} x {depth} layers"] = {
            "entries": len(rows),
            **{
                s: round(tau_of(by_spec[s], pct, glue[rows]), 4)
                for s in dict.fromkeys([recommended, "params", *metrics])
                if s in by_spec
            },
        }

    top = sorted(full, key=full.get, reverse=True)[:25]
    result = {
        "scores": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "scoring": {k: run["settings"][k] for k in ("network", "batch_size", "length", "seed")}
        | {"corpus": run["corpus"], "entries": len(scores)},
        "data": "the 250 dev entries only (benchmark_dev.json); part of the benchmark is held "
        "back and was not used",
        "rule": "fitness = the engine's ensemble rule (weighted mean of mid-rank percentiles "
        "of the direction-applied metrics) with the scored set as population; tau = Kendall "
        "tau with scores.glue",
        "recipes": len(candidates),
        "max_size": args.max_size,
        "weights": list(range(1, args.max_weight + 1)),
        "single_metric_tau": {
            m: round(full[m], 4) for m in sorted(metrics, key=lambda m: -full[m])
        },
        "best_on_all_entries": [
            {"spec": s, "tau": round(full[s], 4), "halves": half_summary(s)} for s in top
        ],
        "selection_protocol": {
            "random_halves": held_out("random"),
            "grouped_halves_by_trained_network": held_out("grouped"),
            "chosen_most_often": [
                {"spec": s, "times": c, "tau_all": round(full[s], 4)}
                for s, c in counts.most_common(10)
            ],
            "selections": selections,
        },
        "recommended": {
            "spec": recommended,
            "why": "the recipe chosen most often when selecting on one half",
            "kendall_tau": round(rec_tau, 4),
            "spearman_rho": round(float(stats.spearmanr(column, glue).statistic), 4),
            "rank_among_all_recipes_on_all_entries": top.index(recommended) + 1
            if recommended in top
            else sorted(full, key=full.get, reverse=True).index(recommended) + 1,
            "halves": half_summary(recommended),
            "params_halves": half_summary("params"),
            "meets_goal": rec_tau >= GOAL,
        },
        "goal_tau": GOAL,
        "configuration_descriptors_tau": descriptors,
        "tau_inside_each_family": within,
    }
    confirm = Path(args.confirm)
    if (confirm / "correlations.json").exists():
        corr = json.loads((confirm / "correlations.json").read_text())
        run_file = confirm / "run.json"
        meta = json.loads(run_file.read_text()) if run_file.exists() else {}
        if recommended in corr:
            result["recommended"]["confirmed_by_command"] = {
                "out": str(confirm.relative_to(ROOT)),
                "kendall_tau": corr[recommended]["kendall_tau"],
                "spearman_rho": corr[recommended]["spearman_rho"],
                "n": corr[recommended]["n"],
                "failed": corr[recommended]["failed"],
                "seconds_per_arch_median": corr[recommended]["seconds_per_arch"],
                "total_seconds": meta.get("total_seconds"),
                "settings": meta.get("settings"),
                "agrees_with_offline": math.isclose(
                    corr[recommended]["kendall_tau"], rec_tau, abs_tol=1e-9
                ),
            }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("single_metric_tau", "recommended")}, indent=2))
    print(json.dumps({k: v for k, v in result["selection_protocol"].items() if k != "selections"}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
