"""Does training-free search pay? Regret of each search method against compute, simulated on
the real NAS-Bench-NLP learning curves.

    python experiments/regret_simulation.py [--orderings 200] [--half-pools 100]
        [--budgets 121] [--top-k 1,2,3,5,7,10,15,20,30,50] [--seed 0]

**Pool**: the OK WikiText-2 logs (341 of 345). For each architecture: the final test loss
(epoch 50), the validation loss after every epoch and each epoch's logged seconds (the
benchmark's GPU runs), and training-free scores with their measured seconds per architecture
from ``experiments/out/nbnlp_all_metrics_fast/scores.csv`` (fast sizes E=48, H=64, B=25, T=35,
the 2-core AMD EPYC CPU of the dev machine; each metric timed on its own, model build
included). The parameter count is the log's ``num_params``. The two recipes of
``fitness_search.py`` (``--recipe``: the one it chose, and the one its rule chooses among the
settings at the benchmark's initialisation, gain 1) are each scored at their own setting, from
that script's score tables (its probe's seconds, 2-core Intel Xeon, one thread).

**Budget**: seconds of search compute, on a log grid from one architecture-epoch (the pool's
median first-epoch seconds) to the whole pool's first epoch (the sum of every architecture's
first-epoch seconds). Training costs the logged epoch seconds; training-free scoring costs
the measured scoring seconds. The final training of the chosen architecture is the same for
every method and not counted.

**Methods**, for one random ordering of the pool (``nas_engine.analysis.regret`` has the exact
rules): random choice (the first architecture); parameter count and training-free
(``hidden_cov``; the ensemble chosen in ``ensemble_selection.json``; the two fitness_search
recipes; each ranked by the engine's
``Fitness`` against the architectures scored so far): score in order while the budget lasts,
choose the best fitness; trained proxy with E = 1, 3, 10 epochs: train in order while the
budget lasts, choose the lowest validation loss after E epochs; the multi-stage designs, each
scoring in order with at most half of the budget (the whole pool when that allows) with one of
the ``PREFILTERS`` (single metrics and ensembles, from 7 s to 745 s for the pool):
*two-stage* trains the top k by fitness for E epochs with the rest and chooses the lowest
validation loss (E = 1, 3; also 10 for the original ``hidden_cov`` and ensemble grid; k in
``--top-k``); *successive halving* trains the top k1 one epoch, continues the k2 lowest
epoch-1 losses to epoch 3 with what is left and chooses the lowest epoch-3 loss (k1 in
``SH_TOP_K``, k2 < k1 in ``SH_KEEP``); *two-stage blend* is two-stage (one epoch) choosing by
the weighted mid-rank sum of epoch-1 loss and fitness rank among those trained (k in
``BLEND_TOP_K``, fitness weight in ``BLEND_WEIGHTS``); *cost-aware two-stage* is two-stage
(one epoch) training its top k cheapest first by parameter count, scored and paid with the
fitness (k in ``COST_AWARE_TOP_K``).

**Regret** = the chosen architecture's final test loss minus the pool's best; mean over
``--orderings`` random orderings (or over half-pools) with a 95% percentile-bootstrap band.

**Headline**: the target is the lowest mean regret a trained proxy reaches with the whole
pool's first-epoch budget; for each multi-stage setting, the smallest grid budget whose mean
regret is at most the target (*reaches*) and the smallest from which it stays there at every
larger grid budget (*stays*), each as a compute ratio (whole first epoch / that budget). Once
the pool is scored, a multi-stage choice does not depend on the ordering, so splitting
orderings would hold nothing out, and one fixed pool makes the answer hinge on where its few
best architectures rank. So the design and its settings are selected on ``--half-pools``
random half-pools (a random half of the architectures, in a random order, each its own pool
with its own best, targets and budgets; rule: the largest *stays* ratio, then the largest
*reaches* ratio, then the lower mean regret over the grid) and reported on as many other
random half-pools and on the full pool. The two sets of half-pools are drawn from the same
341 architectures, so they hold out pool composition and ordering, not architectures. Every
setting runs on the selection half-pools; the original two-stage grid, each design's best
per pre-filter and the selected one run on the others. The fitness_search recipe was itself
chosen on half of the logs, which make up about half of every half-pool; so the reported
settings also run on each half of the logs as a pool of its own (random orderings): the half
the recipe was chosen on, and the half it never saw.

**Scoring costs on other hardware**: the same simulation with training-free scoring charged
at the H100 full-size seconds (``hidden_cov``: ``bench_hidden_cov_cuda_h100.json``; other
metrics: ``nbnlp_full_size_h100/``; a metric not measured there keeps its CPU seconds), and at
100 times the CPU seconds. The logged epochs ran on the benchmark's 2020 GPUs, at the
benchmark's sizes; the fast-size CPU scoring is charged as measured on a slower processor.

Writes experiments/out/regret_simulation.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nas_engine.analysis.ensembles import split_halves
from nas_engine.analysis.regret import (
    CostAwareTwoStage,
    Pool,
    RandomChoice,
    RegretCurves,
    SuccessiveHalving,
    TrainedProxy,
    TrainingFree,
    TwoStage,
    TwoStageBlend,
    confidence_band,
    first_budget_reaching,
    first_budget_staying,
    log_budgets,
    pool_from_logs,
    simulate,
)
from nas_engine.benchmarks.nbnlp import LogsError, read_logs
from nas_engine.fitness import Fitness

OUT = Path(__file__).parent / "out"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROXY_EPOCHS = (1, 3, 10)
# Pre-filters of the multi-stage designs: the single metric, the ensemble of
# ensemble_selection.json (whose ntk_cond costs 600 of its 745 s per pool), the two recipes of
# fitness_search.json (each scored at its own setting, from that script's score tables), and
# cheaper ones
# built from hidden_cov (7 s per pool) with the cheapest gradient metrics, grad_norm (73 s)
# and synflow (137 s), or from hidden_cov's first three layers (34 s).
PREFILTERS = (
    "hidden_cov",
    "ensemble",
    "recipe",
    "recipe_gain1",
    "grad_norm",
    "hidden_cov+grad_norm",
    "hidden_cov+synflow",
    "hidden_cov+synflow+grad_norm",
    "hidden_cov_l1+hidden_cov_l2+hidden_cov_l3",
)
# fitness_search.json's keys of the two recipes: the chosen one, and the rule's pick at gain 1.
RECIPES = {"recipe": "chosen", "recipe_gain1": "chosen_at_gain_1"}
ORIGINAL = ("hidden_cov", "ensemble")  # the first two-stage grid, kept whole (epochs 1, 3, 10)
SH_TOP_K, SH_KEEP, SH_EPOCHS = (5, 10, 20, 50), (1, 2, 3, 5), 3
BLEND_TOP_K, BLEND_WEIGHTS = (10, 30), (0.25, 1.0)
COST_AWARE_TOP_K = (10, 20, 30, 50)
MULTI_STAGE = (TwoStage, SuccessiveHalving, TwoStageBlend, CostAwareTwoStage)
DESIGNS = {
    TwoStage: "two-stage",
    SuccessiveHalving: "successive halving",
    TwoStageBlend: "two-stage blend",
    CostAwareTwoStage: "cost-aware two-stage",
}
TABLE_FRACTIONS = (1 / 348, 1 / 100, 1 / 30, 1 / 20, 1 / 10, 1 / 3, 1)  # table columns


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(SHARED / "nasbench_nlp_wt2" / "logs.zip"))
    parser.add_argument("--scores", default=str(OUT / "nbnlp_all_metrics_fast" / "scores.csv"))
    parser.add_argument("--ensemble", default=str(OUT / "ensemble_selection.json"))
    parser.add_argument(
        "--recipe",
        default=str(OUT / "fitness_search" / "fitness_search.json"),
        help="fitness_search.py's result: its two recipes are pre-filters, their metrics "
        "taken from the score tables of the recipes' settings beside it",
    )
    parser.add_argument("--orderings", type=int, default=200)
    parser.add_argument("--half-pools", type=int, default=100, help="per selection / report")
    parser.add_argument("--budgets", type=int, default=121, help="grid points (log scale)")
    parser.add_argument("--top-k", default="1,2,3,5,7,10,15,20,30,50")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "regret_simulation"))
    args = parser.parse_args()
    if args.orderings < 2 or args.half_pools < 2 or args.budgets < 2:
        parser.error("--orderings, --half-pools and --budgets must be at least 2")
    try:
        args.top_k = tuple(int(k) for k in args.top_k.split(","))
    except ValueError:
        parser.error(f"--top-k must be comma-separated integers, not {args.top_k!r}")
    return args


def h100_seconds(pool: Pool) -> tuple[dict[str, float], dict[str, str]]:
    """Per-metric seconds per architecture at full size on the H100, where measured."""
    seconds, source = {}, {}
    bench = OUT / "bench_hidden_cov_cuda_h100.json"
    if bench.exists():
        seconds["hidden_cov"] = json.loads(bench.read_text())["engine_seconds_per_arch_median"]
        source["hidden_cov"] = bench.name
    for part in sorted((OUT / "nbnlp_full_size_h100").glob("correlations_part*.json")):
        for metric, c in json.loads(part.read_text()).items():
            if metric in pool.metrics and metric not in seconds:
                seconds[metric] = c["seconds_per_arch"]
                source[metric] = f"nbnlp_full_size_h100/{part.name}"
    for metric in pool.metrics:
        source.setdefault(metric, "not measured on the H100: CPU seconds kept")
    return seconds, source


@dataclass(frozen=True)
class SearchedRecipe:
    """fitness_search.py's chosen recipe: its spec, size setting, score table (one row per
    log, the script's forward metrics with the probe's seconds) and the names of the logs of
    the half it was chosen on."""

    spec: str
    setting: str
    table: pd.DataFrame
    chosen_on: frozenset[str]


def fitness_search_recipes(path: Path) -> dict[str, SearchedRecipe]:
    """The recipes of fitness_search.py's result, by their ``RECIPES`` key."""
    result = json.loads(path.read_text())
    out = {}
    for key, entry in RECIPES.items():
        chosen = result[entry]
        table = pd.read_csv(path.parent / f"scores_{chosen['setting']}.csv")
        names = list(table["log"])
        chosen_rows, _ = split_halves(len(names), result["split_seed"])
        chosen_on = frozenset(names[i] for i in chosen_rows)
        out[key] = SearchedRecipe(chosen["spec"], chosen["setting"], table, chosen_on)
    return out


def with_recipe_scores(scores: pd.DataFrame, recipe: SearchedRecipe, fitness: Fitness):
    """``scores`` with the recipe's metrics (and seconds) replaced by the recipe table's, at
    the recipe's setting. The probe's seconds, which serve all its metrics at once, are split
    evenly among the recipe's metrics, so that the recipe costs one probe."""
    table = recipe.table.set_index("log").loc[scores["log"]]
    out = scores.copy()
    for m in fitness.metric_names:
        out[m] = table[m].to_numpy()
        out[f"{m}_seconds"] = table["seconds"].to_numpy() / len(fitness.metric_names)
    return out


def baselines_for(fitnesses: dict[str, Fitness]) -> list:
    policies: list = [RandomChoice(), TrainingFree(fitnesses["params"], label="parameter count")]
    policies += [TrainedProxy(e) for e in PROXY_EPOCHS]
    return policies + [TrainingFree(fitnesses[key]) for key in ("hidden_cov", "ensemble", *RECIPES)]


def candidates_for(fitnesses: dict[str, Fitness], top_k: tuple[int, ...]) -> list:
    """Every multi-stage setting the selection chooses from."""
    policies: list = [
        TwoStage(fitnesses[key], epochs=e, top_k=k)
        for key in PREFILTERS
        for e in (PROXY_EPOCHS if key in ORIGINAL else (1, 3))
        for k in top_k
    ]
    policies += [
        SuccessiveHalving(fitnesses[key], top_k=k, keep=keep, epochs=SH_EPOCHS)
        for key in PREFILTERS
        for k in SH_TOP_K
        for keep in SH_KEEP
        if keep < k
    ]
    policies += [
        TwoStageBlend(fitnesses[key], epochs=1, top_k=k, fitness_weight=w)
        for key in PREFILTERS
        for k in BLEND_TOP_K
        for w in BLEND_WEIGHTS
    ]
    policies += [
        CostAwareTwoStage(fitnesses[key], epochs=1, top_k=k)
        for key in PREFILTERS
        for k in COST_AWARE_TOP_K
    ]
    return policies


@dataclass(frozen=True)
class Replicate:
    """One simulated search: a pool, one ordering of it, and the same pool with each recipe's
    metrics, by the recipe's fitness name (a fitness_search recipe is scored at its own
    setting, so its hidden_cov is not the fast-size one the other pre-filters read)."""

    pool: Pool
    order: np.ndarray
    recipe_pools: Mapping[str, Pool]

    def pool_key(self, policy) -> str | None:
        """The recipe whose pool ``policy`` reads, or None for the common pool."""
        fitness = getattr(policy, "fitness", None)
        name = None if fitness is None else fitness.name
        return name if name in self.recipe_pools else None

    def pool_for(self, policy) -> Pool:
        key = self.pool_key(policy)
        return self.pool if key is None else self.recipe_pools[key]

    def subset(self, members: np.ndarray, order: np.ndarray) -> Replicate:
        pools = {k: p.subset(members) for k, p in self.recipe_pools.items()}
        return Replicate(self.pool.subset(members), order, pools)


def run_replicates(
    replicates: list[Replicate], policies: list, fractions: np.ndarray
) -> dict[str, RegretCurves]:
    """Each policy's regret per replicate (a pool and one ordering of it) and budget, the
    budgets being ``fractions`` of that replicate pool's whole first epoch; a policy ranking
    by a recipe runs on the replicate's pool of that recipe."""
    per = []
    for r in replicates:
        budgets = fractions * r.pool.first_epoch_total()
        groups: dict[str | None, list] = {}
        for p in policies:
            groups.setdefault(r.pool_key(p), []).append(p)
        curves = {}
        for key, group in groups.items():
            pool = r.pool if key is None else r.recipe_pools[key]
            curves.update(simulate(pool, group, [r.order], budgets))
        per.append(curves)
    return {
        p.name: RegretCurves(
            p.name,
            fractions,
            np.vstack([c[p.name].regret for c in per]),
            np.vstack([c[p.name].fallback for c in per]),
            np.vstack([c[p.name].spent for c in per]),
        )
        for p in policies
    }


def evaluate(
    curves: dict[str, RegretCurves],
    policies: list,
    seed: int,
    summarise: Collection[str] | None = None,
) -> dict:
    """Target, every multi-stage setting's compute ratios and the summaries over the
    replicates of ``curves``: ``ratio`` from the first budget whose mean regret reaches the
    target (the issue's definition), ``staying`` from the first budget after which it never
    rises above it again. Mean curves and bands only for ``summarise`` (default all)."""
    fractions = next(iter(curves.values())).budgets
    mean = {name: c.regret.mean(axis=0) for name, c in curves.items()}
    proxies = [p.name for p in policies if isinstance(p, TrainedProxy)]
    target_method = min(proxies, key=lambda n: mean[n][-1])
    target = float(mean[target_method][-1])
    ratio, staying, grid_mean = {}, {}, {}
    for p in policies:
        if isinstance(p, MULTI_STAGE):
            grid_mean[p.name] = float(mean[p.name].mean())
            b = first_budget_reaching(fractions, mean[p.name], target)
            ratio[p.name] = None if b is None else float(1 / b)
            b = first_budget_staying(fractions, mean[p.name], target)
            staying[p.name] = None if b is None else float(1 / b)
    summaries = {}
    for name, c in curves.items():
        if summarise is not None and name not in summarise:
            continue
        low, high = confidence_band(c.regret, seed=seed)
        summaries[name] = {
            "mean": np.round(mean[name], 6).tolist(),
            "ci95_low": np.round(low, 6).tolist(),
            "ci95_high": np.round(high, 6).tolist(),
            "fallback_rate": np.round(c.fallback.mean(axis=0), 4).tolist(),
        }
    return {
        "fractions": fractions,
        "replicates": len(next(iter(curves.values())).regret),
        "target_method": target_method,
        "target": target,
        "ratio": ratio,
        "staying": staying,
        "grid_mean": grid_mean,
        "methods": summaries,
    }


def selection_key(evaluation: dict, name: str) -> tuple[float, float, float]:
    """Rank of a setting on the selection half-pools: first the compute ratio from which its
    mean regret stays at or below the target, then the first reaching ratio, then the lower
    mean regret over the grid. Staying first, because with hundreds of settings the largest
    first-reaching ratio rewards a mean curve that dips to the target and rises again (on the
    selection half-pools, grad_norm -> top 50, 3 epochs reaches it at 1/14.4 of the first
    epoch but stays there only from 1/5.1)."""
    return (
        evaluation["staying"][name] or 0.0,
        evaluation["ratio"][name] or 0.0,
        -evaluation["grid_mean"][name],
    )


def select_setting(evaluation: dict, names: list[str] | None = None) -> str:
    """The best multi-stage setting (among ``names``, default all) by :func:`selection_key`."""
    return max(names or evaluation["ratio"], key=lambda n: selection_key(evaluation, n))


def table_columns(fractions: np.ndarray) -> list[int]:
    """Grid indices nearest to the TABLE_FRACTIONS of the whole first epoch."""
    cols = [int(np.argmin(np.abs(np.log(fractions / f)))) for f in TABLE_FRACTIONS]
    return sorted(set(cols))


def fmt_ratio(ratio: float | None, missing: str = "not reached") -> str:
    return missing if ratio is None else f"{ratio:.1f}x"


def markdown(result: dict, evals: dict, shown: list[str], selected: str) -> str:
    full = evals["full"]
    pool = result["pool"]
    cols = table_columns(full["fractions"])
    epochs = pool["first_epoch_total_architecture_epochs"]
    head = " | ".join(
        f"1/{1 / full['fractions'][c]:.3g} ({full['fractions'][c] * epochs:.3g})" for c in cols
    )
    lines = [
        "# Regret simulation (NAS-Bench-NLP WikiText-2 learning curves)",
        "",
        f"`{result['command']}`. Pool: the {pool['size']} OK architectures; one "
        f"architecture-epoch = {pool['architecture_epoch_seconds']:.0f} s (the median first "
        f"epoch); the whole pool's first epoch = {pool['first_epoch_total_seconds']:.0f} s = "
        f"{pool['first_epoch_total_architecture_epochs']:.0f} architecture-epochs.",
        "",
        f"Mean regret (final test loss minus the pool's best) over {full['replicates']} "
        "orderings [95% bootstrap band], by budget as a fraction of the whole pool's first "
        "epoch (in architecture-epochs):",
        "",
        f"| method | {head} |",
        "| --- |" + " --- |" * len(cols),
    ]
    for name in shown:
        s = full["methods"][name]
        cells = " | ".join(
            f"{s['mean'][c]:.3f} [{s['ci95_low'][c]:.3f}, {s['ci95_high'][c]:.3f}]" for c in cols
        )
        lines.append(f"| {name}{' (selected)' if name == selected else ''} | {cells} |")
    lines += [
        "",
        f"Multi-stage setting selected on {evals['selection']['replicates']} random half-pools "
        f"among {len(result['selection_ratios'])} settings (the largest ratio from which the "
        "mean regret stays at or below the target, then the largest first-reaching ratio): "
        f"**{selected}**. Target: the lowest mean regret of a trained proxy with the whole "
        "first-epoch budget. Compute ratio = the whole first epoch / the budget: *reaches* = "
        "the first grid budget whose mean regret is at most the target (the issue's "
        "definition), *stays* = the first from which it stays there at every larger budget.",
        "",
        "| pools | target | reaches it with | compute ratio (reaches) | compute ratio (stays) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label in (
        ("full", "all architectures, orderings"),
        ("selection", "random half-pools, selection"),
        ("report", "random half-pools, held out"),
        ("recipe_chosen_on", "the logs fitness_search chose its recipe on, one pool, orderings"),
        ("recipe_held_out", "the logs fitness_search held out, one pool, orderings"),
    ):
        e = evals[key]
        ratio = e["ratio"][selected]
        reached = "-" if ratio is None else f"1/{ratio:.1f} of the first epoch"
        lines.append(
            f"| {label} ({e['replicates']}) | {e['target_method']}: {e['target']:.4f} | "
            f"{reached} | {fmt_ratio(ratio)} | {fmt_ratio(e['staying'][selected])} |"
        )
    lines += [
        "",
        "The best setting of each design and pre-filter on the selection half-pools (same "
        "rule), compute ratio reaches / stays ('-': not within the grid):",
        "",
        "| design, pre-filter | setting | half-pools, selection | half-pools, held out "
        "| all architectures |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, name in result["best_per_design"].items():
        cells = " | ".join(
            " / ".join(fmt_ratio(evals[k][kind][name], "-") for kind in ("ratio", "staying"))
            for k in ("selection", "report", "full")
        )
        lines.append(f"| {label} | {name} | {cells} |")
    lines += [
        "",
        "Scoring charged at other speeds (all architectures, selected setting):",
        "",
        "| scoring cost | seconds to score the pool (hidden_cov / ensemble / selected's "
        "pre-filter) | compute ratio (reaches) |",
        "| --- | --- | --- |",
    ]
    for name, scen in result["cost_scenarios"].items():
        sec = scen["scoring_seconds_whole_pool"]
        lines.append(
            f"| {name} | {sec['hidden_cov']:.1f} / {sec['ensemble']:.1f} / "
            f"{sec['selected']:.1f} | {fmt_ratio(scen['ratio'])} |"
        )
    lines += [
        "",
        "Every setting of the original two-stage grid: the compute ratio at which its mean "
        "regret reaches the target ('-': not within the grid):",
        "",
        "| setting | all architectures | half-pools, selection | half-pools, held out |",
        "| --- | --- | --- | --- |",
    ]
    for name, ratios in result["original_two_stage_ratios"].items():
        cells = " | ".join(fmt_ratio(ratios[k], "-") for k in ("full", "selection", "report"))
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(evals: dict, shown: list[str], selected: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.4), sharey=True)
    for ax, key, title in (
        (axes[0], "full", "all OK architectures, random orderings"),
        (axes[1], "report", "random half-pools, held out (setting chosen on others)"),
    ):
        e = evals[key]
        x = e["fractions"]
        for name in shown:
            s = e["methods"][name]
            style = {"lw": 1.3}
            if name == selected:
                style = {"lw": 2.6, "color": "k"}
            elif name.startswith(("two-stage", "successive halving", "cost-aware")):
                style = {"lw": 1.0, "ls": "--"}
            (line,) = ax.plot(x, s["mean"], label=name, **style)
            ax.fill_between(x, s["ci95_low"], s["ci95_high"], color=line.get_color(), alpha=0.15)
        ax.axhline(e["target"], color="grey", lw=0.8, ls=":")
        if e["ratio"][selected] is not None:
            ax.axvline(1 / e["ratio"][selected], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("search budget / the whole pool's first epoch (log)")
        ax.set_title(f"{title} ({e['replicates']})", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("regret: final test loss - pool's best (mean, 95% band)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compact_json(value: object) -> str:
    """Indented JSON with every list of numbers on one line (the curves stay readable)."""
    text = json.dumps(value, indent=1)
    return re.sub(
        r"\[\s*(-?[\d.eE+-]+|null|true|false)(?:,\s*(?:-?[\d.eE+-]+|null|true|false))*\s*\]",
        lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "),
        text,
    )


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    try:
        logs = read_logs(args.logs)
    except LogsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in (args.scores, args.ensemble, args.recipe):
        if not Path(path).exists():
            print(f"error: {path} not found (run its experiment first)", file=sys.stderr)
            return 2
    ensemble_spec = json.loads(Path(args.ensemble).read_text())["best_recipe"]
    recipes = fitness_search_recipes(Path(args.recipe))
    recipe = recipes["recipe"]
    fitnesses = {
        "params": Fitness.parse("params", "rnn"),
        "ensemble": Fitness.parse(ensemble_spec, "rnn"),
        **{key: Fitness.parse(r.spec, "rnn") for key, r in recipes.items()},
    }
    fitnesses.update({key: Fitness.parse(key, "rnn") for key in PREFILTERS if key not in fitnesses})
    names = [f.name for f in fitnesses.values()]
    if len(set(names)) != len(names):  # a recipe's pool is found by its fitness name
        print(f"error: two pre-filters share a fitness name: {names}", file=sys.stderr)
        return 2
    # A recipe's metrics exist only at its own setting, in its pool.
    metrics = sorted(
        {m for key, f in fitnesses.items() if key not in RECIPES for m in f.metric_names}
    )
    scores = pd.read_csv(args.scores)
    pool = pool_from_logs(logs, scores, metrics)
    recipe_pools = {
        fitnesses[key].name: pool_from_logs(
            logs,
            with_recipe_scores(scores, r, fitnesses[key]),
            sorted(set(metrics) | set(fitnesses[key].metric_names)),
        )
        for key, r in recipes.items()
    }
    baselines = baselines_for(fitnesses)
    candidates = candidates_for(fitnesses, args.top_k)

    # Full pool: budgets from one architecture-epoch to the whole first epoch.
    total, unit = pool.first_epoch_total(), pool.architecture_epoch()
    fractions = log_budgets(unit / total, 1.0, args.budgets)
    rng = np.random.default_rng(args.seed)
    full_orders = [
        Replicate(pool, rng.permutation(pool.size), recipe_pools) for _ in range(args.orderings)
    ]
    # Random half-pools (a random half of the architectures, in a random order): the first
    # half of them select the multi-stage setting, the others report it.
    half_fractions = log_budgets(2 * unit / total, 1.0, args.budgets)
    half_pools = []
    for _ in range(2 * args.half_pools):
        members = np.sort(rng.choice(pool.size, pool.size // 2, replace=False))
        order = rng.permutation(pool.size // 2)
        half_pools.append(full_orders[0].subset(members, order))
    # Every setting runs on the selection half-pools; only those reported (the original grid,
    # each design's best on the selection half-pools, the selected) on the others.
    selection_curves = run_replicates(
        half_pools[: args.half_pools], baselines + candidates, half_fractions
    )
    selection = evaluate(selection_curves, baselines + candidates, args.seed, summarise=())
    selected = select_setting(selection)
    best_per_design = {}
    for design in DESIGNS.values():
        for key in PREFILTERS:
            names = [
                p.name
                for p in candidates
                if DESIGNS[type(p)] == design and p.fitness.name == fitnesses[key].name
            ]
            best_per_design[f"{design}, {fitnesses[key].name}"] = select_setting(selection, names)
    reported = baselines + [
        p
        for p in candidates
        if p.name in best_per_design.values()
        or (isinstance(p, TwoStage) and p.fitness.name in {fitnesses[k].name for k in ORIGINAL})
    ]
    reported_names = [p.name for p in reported]
    selection = evaluate(
        selection_curves, baselines + candidates, args.seed, summarise=reported_names
    )
    full_curves = run_replicates(full_orders, reported, fractions)
    report_curves = run_replicates(half_pools[args.half_pools :], reported, half_fractions)
    evals = {
        "full": evaluate(full_curves, reported, args.seed),
        "selection": selection,
        "report": evaluate(report_curves, reported, args.seed),
    }
    # The recipe was chosen on half of the logs, and every half-pool holds about half of
    # those: the two halves as pools of their own (random orderings), the held-out one never
    # seen by the recipe's choice.
    for key, inside in (("recipe_chosen_on", True), ("recipe_held_out", False)):
        members = np.array(
            [i for i, n in enumerate(pool.names) if (n in recipe.chosen_on) == inside]
        )
        # The pools are cut once; the orderings share them.
        first = full_orders[0].subset(members, rng.permutation(len(members)))
        replicates = [first] + [
            replace(first, order=rng.permutation(len(members))) for _ in range(args.orderings - 1)
        ]
        sub_fractions = log_budgets(
            first.pool.architecture_epoch() / first.pool.first_epoch_total(), 1.0, args.budgets
        )
        evals[key] = evaluate(
            run_replicates(replicates, reported, sub_fractions), reported, args.seed
        )
    print(f"simulated in {time.perf_counter() - started:.0f} s; selected: {selected}")

    # The full pool with scoring charged at other speeds (trained proxies are unaffected).
    h100, h100_source = h100_seconds(pool)
    chosen = next(p for p in candidates if p.name == selected)
    chosen_pool = full_orders[0].pool_for(chosen)

    def scenarios(p: Pool) -> dict[str, Pool]:
        return {
            "CPU as measured (fast sizes; the recipe at its own sizes)": p,
            "H100, full-size seconds": p.with_scoring_seconds(h100),
            "100 x the CPU seconds": p.with_scoring_seconds(
                {m: 100 * np.asarray(s) for m, s in p.scoring_seconds.items()}
            ),
        }

    scenario_pools, regular_scenarios = scenarios(chosen_pool), scenarios(pool)
    cost_scenarios = {}
    for name, scenario_pool in scenario_pools.items():
        orders = [Replicate(scenario_pool, r.order, {}) for r in full_orders]
        curves = run_replicates(orders, [chosen], fractions)[selected]
        b = first_budget_reaching(fractions, curves.mean, evals["full"]["target"])
        regular = regular_scenarios[name]
        seconds = {
            key: float(regular.scoring_cost(fitnesses[key]).sum())
            for key in ("hidden_cov", "ensemble")
        }
        seconds["selected"] = float(scenario_pool.scoring_cost(chosen.fitness).sum())
        cost_scenarios[name] = {
            "scoring_seconds_whole_pool": seconds,
            "ratio": None if b is None else float(1 / b),
        }

    original = {fitnesses[key].name for key in ORIGINAL}
    # Shown in the figure and the first table: the original grid's former pick and its
    # hidden_cov counterpart, and each design's best on the selection half-pools.
    others = [
        f"two-stage, {fitnesses[key].name} -> top {k}, 1 ep"
        for key, k in (("hidden_cov", 10), ("ensemble", 30))
    ]
    others += [
        select_setting(selection, [p.name for p in candidates if DESIGNS[type(p)] == design])
        for design in DESIGNS.values()
    ]
    others = [n for n in others if n in reported_names]
    shown = [p.name for p in baselines] + [selected]
    shown += [n for n in dict.fromkeys(others) if n != selected]
    command = (
        "python experiments/regret_simulation.py"
        f" --orderings {args.orderings} --half-pools {args.half_pools}"
        f" --budgets {args.budgets} --top-k {','.join(map(str, args.top_k))} --seed {args.seed}"
    )
    result = {
        "command": command,
        "settings": {
            "orderings": args.orderings,
            "half_pools": args.half_pools,
            "budget_points": args.budgets,
            "top_k": list(args.top_k),
            "proxy_epochs": list(PROXY_EPOCHS),
            "prefilters": {key: fitnesses[key].name for key in PREFILTERS},
            "successive_halving": {
                "top_k": list(SH_TOP_K),
                "keep": list(SH_KEEP),
                "epochs": SH_EPOCHS,
            },
            "blend": {"top_k": list(BLEND_TOP_K), "fitness_weights": list(BLEND_WEIGHTS)},
            "cost_aware": {"top_k": list(COST_AWARE_TOP_K), "cost_metric": "params"},
            "selection_rule": selection_key.__doc__.split("\n\n")[0],
            "scoring_share": 0.5,
            "seed": args.seed,
            "logs": args.logs,
            "scores": args.scores,
            "ensemble": ensemble_spec,
            **{
                key: {"spec": r.spec, "setting": r.setting, "from": args.recipe}
                for key, r in recipes.items()
            },
        },
        "hardware": {
            "training": "the logged epoch seconds of NAS-Bench-NLP (its GPU runs at the "
            "benchmark's sizes, batch 20)",
            "scoring": "the measured seconds per architecture in scores.csv: 2-core AMD EPYC "
            "CPU, torch 2.13, fast sizes (E=48, H=64, B=25, T=35), each metric on its own",
            "simulation": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        },
        "definitions": __doc__.split("\n\n", 2)[2],
        "pool": {
            "size": pool.size,
            "best_test_loss": pool.best_test_loss,
            "architecture_epoch_seconds": unit,
            "first_epoch_total_seconds": total,
            "first_epoch_total_architecture_epochs": total / unit,
            "scoring_seconds_whole_pool": {
                key: float(recipe_pools.get(f.name, pool).scoring_cost(f).sum())
                for key, f in fitnesses.items()
            },
        },
        "headline": {
            "selected_setting": selected,
            "target_method": evals["full"]["target_method"],
            "target": evals["full"]["target"],
            "ratio_all_architectures": evals["full"]["ratio"][selected],
            "ratio_half_pools_selection": evals["selection"]["ratio"][selected],
            "ratio_half_pools_held_out": evals["report"]["ratio"][selected],
            "ratio_recipe_chosen_on_logs": evals["recipe_chosen_on"]["ratio"][selected],
            "ratio_recipe_held_out_logs": evals["recipe_held_out"]["ratio"][selected],
            "ratio_staying_all_architectures": evals["full"]["staying"][selected],
            "ratio_staying_half_pools_selection": evals["selection"]["staying"][selected],
            "ratio_staying_half_pools_held_out": evals["report"]["staying"][selected],
            "target_half_pools_held_out": evals["report"]["target"],
            "target_method_half_pools_held_out": evals["report"]["target_method"],
            "goal": "the same regret for at least 20 times less compute",
        },
        "cost_scenarios": cost_scenarios,
        "h100_seconds": {"seconds": h100, "source": h100_source},
        "best_per_design": best_per_design,
        "reported_ratios": {
            n: {
                key: {"reaches": evals[key]["ratio"][n], "stays": evals[key]["staying"][n]}
                for key in ("full", "selection", "report", "recipe_chosen_on", "recipe_held_out")
            }
            for n in reported_names
            if n in evals["full"]["ratio"]
        },
        "original_two_stage_ratios": {
            p.name: {key: evals[key]["ratio"][p.name] for key in ("full", "selection", "report")}
            for p in reported
            if isinstance(p, TwoStage) and p.fitness.name in original
        },
        "selection_ratios": {
            n: {
                "reaches": selection["ratio"][n],
                "stays": selection["staying"][n],
                "mean_over_grid": round(selection["grid_mean"][n], 6),
            }
            for n in selection["ratio"]
        },
        "evaluations": {
            key: {
                "replicates": e["replicates"],
                "budget_fractions": np.round(e["fractions"], 7).tolist(),
                "target_method": e["target_method"],
                "target": e["target"],
                "methods": e["methods"],
            }
            for key, e in evals.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out.with_suffix(s) for s in (".json", ".md", ".png"))
    json_path.write_text(compact_json(result) + "\n")
    md_path.write_text(markdown(result, evals, shown, selected))
    plot(evals, shown, selected, png_path)
    print(md_path.read_text())
    print(f"wrote {json_path}, {md_path}, {png_path} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
