"""Which NAS-Bench-BERT families score best: the analysis behind the ``deep_wide`` preset.

    python experiments/bert_space_analysis.py [--benchmark PATH] [--out DIR]

Reads the dev benchmark (250 entries), tabulates GLUE by family (hidden size x depth), by
operation mix and by the other per-layer choices, gives the Kendall tau of each simple
description of a configuration with GLUE, and simulates what a restriction buys a search:
the GLUE of the best of k random configurations drawn from the entries inside a restriction
versus from all entries (the regret against the best entry overall). Writes
``OUT/analysis.json``, ``OUT/analysis.md`` and ``OUT/families.png``.

``--network as-trained`` describes each entry by the network that was trained for its GLUE
score (search_spaces/bert/networks.py): every layer was SDP attention whatever its label, and
``feed_forward_dimension`` counts only in a ``num_feed_forward`` = 3 layer; the operation labels
are then left out of the descriptions (they did not change the network). Either view also
groups the entries by their as-trained network (hidden size and per layer: heads, feed-forward
depth, and F where the depth is 3): how many distinct trained networks there are, and the
spread of GLUE among entries that trained the same network (the benchmark's noise floor).
Default output for that view: ``experiments/out/bert_space_analysis_as_trained/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas_engine.analysis.bert import as_trained_key
from nas_engine.benchmarks.nbbert import read_benchmark
from nas_engine.parameters import count_parameters
from search_spaces.bert import parse_restriction, preset_names
from search_spaces.bert.networks import build_network

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARK = ROOT.parent / "shared" / "data" / "nasbench_bert" / "benchmark_dev.json"
OPERATIONS = ("SA:SDP", "SA:WMA", "LT:DFT", "LT:DCT", "DSC:5", "DSC:9")
CANDIDATE_RESTRICTIONS = {
    "whole space": None,
    "num_layers=4": "num_layers=4",
    "hidden_size=256": "hidden_size=256",
    "deep_wide (hidden_size=256, num_layers=4)": "deep_wide",
    "deep_wide without LT": "hidden_size=256,num_layers=4,operation_type=SA|DSC",
    "deep_wide, num_feed_forward=3": "hidden_size=256,num_layers=4,num_feed_forward=3",
}


LABEL_FEATURES = ("n_SA", "n_LT", "n_DSC", *(f"n_{op}" for op in OPERATIONS))


def frame(entries) -> pd.DataFrame:
    rows = []
    for e in entries:
        layers = e.config.layers
        deep = [x for x in layers if x.num_feed_forward == 3]
        row = {
            "id": e.id,
            "glue": e.glue,
            "hidden_size": e.config.hidden_size,
            "num_layers": e.config.num_layers,
            "family": f"H{e.config.hidden_size} x {e.config.num_layers} layers",
            "n_SA": sum(x.operation_type == "SA" for x in layers),
            "n_LT": sum(x.operation_type == "LT" for x in layers),
            "n_DSC": sum(x.operation_type == "DSC" for x in layers),
            "share_heads_4": np.mean([x.num_operation_heads == 4 for x in layers]),
            "share_ff_1024": np.mean([x.feed_forward_dimension == 1024 for x in layers]),
            "share_ff_depth_3": np.mean([x.num_feed_forward == 3 for x in layers]),
            "share_ff_depth_3_width_1024": np.mean(
                [x.feed_forward_dimension == 1024 for x in deep] if deep else [0.0]
            )
            * len(deep)
            / len(layers),
            "as_trained_params": count_parameters(build_network(e.config, "as-trained", "meta")),
            "network": as_trained_key(e.config),
            "network_without_heads": as_trained_key(e.config, heads=False),
            "time_to_train": e.time_to_train,
        }
        for op in OPERATIONS:
            row[f"n_{op}"] = sum(x.operation == op for x in layers)
        rows.append(row)
    return pd.DataFrame(rows)


def replicates(df: pd.DataFrame, key: str) -> dict:
    """Entries grouped by ``key``: the distinct networks, and the GLUE spread among entries of
    one network (pooled within-group standard deviation, ddof 1 per group) against the
    spread over all entries; and the Kendall tau with GLUE of a predictor that knows each
    network's mean GLUE over its *other* entries (entries of replicated networks only): what
    a perfect predictor of the network's quality can reach on single training runs."""
    groups = df.groupby(key)["glue"]
    sizes = groups.size()
    replicated = df[df[key].map(sizes) >= 2]
    within = replicated.groupby(key)["glue"]
    ss = float(((replicated["glue"] - within.transform("mean")) ** 2).sum())
    dof = int((within.size() - 1).sum())
    pooled = float(np.sqrt(ss / dof)) if dof else float("nan")
    overall = float(df["glue"].std(ddof=1))
    sums, counts = within.transform("sum"), within.transform("size")
    others = (sums - replicated["glue"]) / (counts - 1)
    ceiling = float(stats.kendalltau(others, replicated["glue"]).statistic)
    return {
        "key": key,
        "entries": len(df),
        "distinct_networks": int(len(sizes)),
        "networks_with_replicates": int((sizes >= 2).sum()),
        "entries_in_replicated_networks": len(replicated),
        "largest_group": int(sizes.max()),
        "pooled_within_network_glue_std": round(pooled, 3),
        "within_network_degrees_of_freedom": dof,
        "overall_glue_std": round(overall, 3),
        "noise_share_of_variance": round(pooled**2 / overall**2, 3),
        "leave_one_out_network_mean_tau": round(ceiling, 3),
    }


def best_of_k(glue: np.ndarray, k: int, best: float, rng: np.random.Generator, reps: int) -> dict:
    picks = rng.integers(0, len(glue), size=(reps, k))
    found = glue[picks].max(axis=1)
    regret = best - found
    return {"mean_best_glue": float(found.mean()), "mean_regret": float(regret.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default=str(DEFAULT_BENCHMARK))
    ap.add_argument("--out", default=None, help="output folder (default: by --network)")
    ap.add_argument(
        "--network",
        choices=("labels", "as-trained"),
        default="labels",
        help="describe entries by their labels (the space as written) or by the network "
        "trained for their GLUE (operation labels left out) (default: %(default)s)",
    )
    args = ap.parse_args()
    as_trained = args.network == "as-trained"
    default_out = "bert_space_analysis_as_trained" if as_trained else "bert_space_analysis"
    args.out = args.out or str(ROOT / "experiments" / "out" / default_out)
    entries = read_benchmark(args.benchmark)
    df = frame(entries)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    families = (
        df.groupby("family")["glue"]
        .agg(["count", "mean", "median", "std", "min", "max"])
        .sort_values("mean", ascending=False)
    )
    by_lt = df.groupby(["num_layers", "n_LT"])["glue"].agg(["count", "mean"]).reset_index()
    skip = {"id", "glue", "family", "time_to_train", "network", "network_without_heads"}
    if as_trained:  # the labels did not change the trained network
        skip |= set(LABEL_FEATURES)
    else:  # the labels' view, as before
        skip |= {"share_ff_depth_3_width_1024", "as_trained_params"}
    features = [c for c in df.columns if c not in skip]
    taus = {c: float(stats.kendalltau(df[c].astype(float), df["glue"]).statistic) for c in features}
    # within the best family, what still matters
    best = df[(df.hidden_size == 256) & (df.num_layers == 4)]
    taus_within = {
        c: float(stats.kendalltau(best[c].astype(float), best["glue"]).statistic)
        for c in features
        if best[c].nunique() > 1
    }

    rng = np.random.default_rng(0)
    top_glue = float(df["glue"].max())
    top10 = set(df.nlargest(10, "glue")["id"])
    restrictions = {}
    for label, spec in CANDIDATE_RESTRICTIONS.items():
        r = parse_restriction(spec)
        inside = [e for e in entries if r.contains(e.config)]
        ids = {e.id for e in inside}
        glue = np.array([e.glue for e in inside])
        restrictions[label] = {
            "spec": spec,
            "configurations": r.size,
            "entries": len(inside),
            "mean_glue": float(glue.mean()),
            "best_glue": float(glue.max()),
            "top10_inside": len(top10 & ids),
            "best_of_5": best_of_k(glue, 5, top_glue, rng, 20000),
            "best_of_20": best_of_k(glue, 20, top_glue, rng, 20000),
        }

    result = {
        "benchmark": str(args.benchmark),
        "entries": len(df),
        "families": families.round(3).reset_index().to_dict(orient="records"),
        "glue_by_depth_and_lt_layers": by_lt.round(3).to_dict(orient="records"),
        "kendall_tau_with_glue": {
            k: round(v, 3) for k, v in sorted(taus.items(), key=lambda kv: -abs(kv[1]))
        },
        "kendall_tau_within_deep_wide": {
            k: round(v, 3) for k, v in sorted(taus_within.items(), key=lambda kv: -abs(kv[1]))
        },
        "restrictions": restrictions,
        "presets": preset_names(),
        "view": args.network,
        "as_trained_networks": replicates(df, "network"),
        "as_trained_networks_ignoring_heads": replicates(df, "network_without_heads"),
    }
    (out / "analysis.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [
        "# NAS-Bench-BERT dev benchmark: which families score best",
        "",
        f"{len(df)} entries of `{Path(args.benchmark).name}`; GLUE = `scores.glue`.",
        "",
        "## GLUE by family (hidden size x depth)",
        "",
        "| family | entries | mean | median | sd | min | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {f} | {int(r['count'])} | {r['mean']:.2f} | {r['median']:.2f} | {r['std']:.2f} | "
            f"{r['min']:.2f} | {r['max']:.2f} |"
            for f, r in families.iterrows()
        ],
        "",
        "Mean GLUE by depth and number of LT layers: "
        + ", ".join(
            f"{int(r.num_layers)} layers / {int(r.n_LT)} LT: {r['mean']:.2f} (n={int(r['count'])})"
            for _, r in by_lt.iterrows()
        ),
        "",
        "## Entries that trained the same network (as-trained view)",
        "",
        "| grouping | distinct networks | with replicates | entries in them | pooled "
        "within-network GLUE sd | overall sd | noise share of variance | leave-one-out "
        "network-mean tau |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {label} | {r['distinct_networks']} | {r['networks_with_replicates']} | "
            f"{r['entries_in_replicated_networks']} | {r['pooled_within_network_glue_std']:.2f} | "
            f"{r['overall_glue_std']:.2f} | {r['noise_share_of_variance']:.2f} | "
            f"{r['leave_one_out_network_mean_tau']:+.3f} |"
            for label, r in (
                ("network (H, heads, n, F if n = 3)", result["as_trained_networks"]),
                ("ignoring heads", result["as_trained_networks_ignoring_heads"]),
            )
        ],
        "",
        "## Kendall tau of simple descriptions with GLUE (all entries)"
        + (" (as-trained view: operation labels left out)" if as_trained else ""),
        "",
        "| feature | tau |",
        "| --- | --- |",
        *[f"| `{k}` | {v:+.3f} |" for k, v in result["kendall_tau_with_glue"].items()],
        "",
        "## Inside the best family (hidden 256, 4 layers)",
        "",
        "| feature | tau |",
        "| --- | --- |",
        *[f"| `{k}` | {v:+.3f} |" for k, v in result["kendall_tau_within_deep_wide"].items()],
        "",
        "## What a restriction buys a random search",
        "",
        "Best GLUE among k entries drawn at random (with replacement) from the entries inside "
        "the restriction, mean over 20,000 draws; regret = best entry overall "
        f"({top_glue:.2f}) minus the GLUE found.",
        "",
        "| restriction | configurations | entries | mean GLUE | best | top-10 inside | "
        "best of 5 (regret) | best of 20 (regret) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in restrictions.items():
        lines.append(
            f"| {label} | {r['configurations']:,} | {r['entries']} | {r['mean_glue']:.2f} | "
            f"{r['best_glue']:.2f} | {r['top10_inside']} | "
            f"{r['best_of_5']['mean_best_glue']:.2f} ({r['best_of_5']['mean_regret']:.2f}) | "
            f"{r['best_of_20']['mean_best_glue']:.2f} ({r['best_of_20']['mean_regret']:.2f}) |"
        )
    (out / "analysis.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(families.index)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].boxplot([df[df.family == f]["glue"] for f in order], tick_labels=order)
    axes[0].set_ylabel("GLUE")
    axes[0].set_title("GLUE by family (dev benchmark)")
    axes[0].tick_params(axis="x", rotation=20)
    for depth, marker in ((2, "o"), (4, "s")):
        sub = by_lt[by_lt.num_layers == depth]
        axes[1].plot(sub["n_LT"], sub["mean"], marker=marker, label=f"{depth} layers")
    axes[1].set_xlabel("LT layers in the configuration")
    axes[1].set_ylabel("mean GLUE")
    axes[1].set_title("Mean GLUE by number of LT layers")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "families.png", dpi=110)
    plt.close(fig)
    print((out / "analysis.md").read_text())


if __name__ == "__main__":
    main()
