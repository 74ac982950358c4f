"""Does training-free search pay? Regret of each search method against compute, simulated on
the real NAS-Bench-NLP learning curves.

    python experiments/regret_simulation.py [--orderings 200] [--half-pools 100]
        [--budgets 121] [--top-k 1,2,3,5,7,10,15,20,30,50] [--seed 0]

**Pool**: the OK WikiText-2 logs (341 of 345). For each architecture: the final test loss
(epoch 50), the validation loss after every epoch and each epoch's logged seconds (the
benchmark's GPU runs), and training-free scores with their measured seconds per architecture
from ``experiments/out/nbnlp_all_metrics_fast/scores.csv`` (fast sizes E=48, H=64, B=25, T=35,
the 2-core AMD EPYC CPU of the dev machine; each metric timed on its own, model build
included). The parameter count is the log's ``num_params``.

**Budget**: seconds of search compute, on a log grid from one architecture-epoch (the pool's
median first-epoch seconds) to the whole pool's first epoch (the sum of every architecture's
first-epoch seconds). Training costs the logged epoch seconds; training-free scoring costs
the measured scoring seconds. The final training of the chosen architecture is the same for
every method and not counted.

**Methods**, for one random ordering of the pool (``nas_engine.simulation`` has the exact
rules): random choice (the first architecture); parameter count and training-free
(``hidden_cov``; the ensemble chosen in ``ensemble_selection.json``, ranked by the engine's
``Fitness`` against the architectures scored so far): score in order while the budget lasts,
choose the best fitness; trained proxy with E = 1, 3, 10 epochs: train in order while the
budget lasts, choose the lowest validation loss after E epochs; two-stage: score in order with
at most half of the budget (the whole pool when that allows), train the top k by fitness for
E epochs with the rest, choose the lowest validation loss. Every (fitness, E, k) with k in
``--top-k`` is simulated and reported.

**Regret** = the chosen architecture's final test loss minus the pool's best; mean over
``--orderings`` random orderings (or over half-pools) with a 95% percentile-bootstrap band.

**Headline**: the target is the lowest mean regret a trained proxy reaches with the whole
pool's first-epoch budget; for each two-stage setting (fitness, E, k), the smallest grid budget
whose mean regret is at most the target, and the compute ratio (whole first epoch / that
budget). Once the pool is scored, two-stage's choice does not depend on the ordering, so
splitting orderings would hold nothing out, and one fixed pool makes the answer hinge on where
its few best architectures rank. So the setting is selected on ``--half-pools`` random
half-pools (a random half of the architectures, in a random order, each its own pool with its
own best, targets and budgets) and reported on as many other random half-pools, next to every
setting's numbers on the full pool.

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
from pathlib import Path

import numpy as np
import pandas as pd

from nas_engine.fitness import Fitness
from nas_engine.nbnlp import LogsError, read_logs
from nas_engine.simulation import (
    Pool,
    RandomChoice,
    RegretCurves,
    TrainedProxy,
    TrainingFree,
    TwoStage,
    confidence_band,
    first_budget_reaching,
    log_budgets,
    pool_from_logs,
    simulate,
)

OUT = Path(__file__).parent / "out"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROXY_EPOCHS = (1, 3, 10)
TABLE_FRACTIONS = (1 / 348, 1 / 100, 1 / 30, 1 / 20, 1 / 10, 1 / 3, 1)  # table columns


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(SHARED / "nasbench_nlp_wt2" / "logs.zip"))
    parser.add_argument("--scores", default=str(OUT / "nbnlp_all_metrics_fast" / "scores.csv"))
    parser.add_argument("--ensemble", default=str(OUT / "ensemble_selection.json"))
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


def policies_for(fitnesses: dict[str, Fitness], top_k: tuple[int, ...]) -> list:
    policies: list = [RandomChoice(), TrainingFree(fitnesses["params"], label="parameter count")]
    policies += [TrainedProxy(e) for e in PROXY_EPOCHS]
    policies += [TrainingFree(fitnesses[key]) for key in ("hidden_cov", "ensemble")]
    policies += [
        TwoStage(fitnesses[key], epochs=e, top_k=k)
        for key in ("hidden_cov", "ensemble")
        for e in PROXY_EPOCHS
        for k in top_k
    ]
    return policies


def run_replicates(
    replicates: list[tuple[Pool, np.ndarray]], policies: list, fractions: np.ndarray
) -> dict[str, RegretCurves]:
    """Each policy's regret per replicate (a pool and one ordering of it) and budget, the
    budgets being ``fractions`` of that replicate pool's whole first epoch."""
    per = [
        simulate(pool, policies, [order], fractions * pool.first_epoch_total())
        for pool, order in replicates
    ]
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


def evaluate(curves: dict[str, RegretCurves], rows: slice, policies: list, seed: int) -> dict:
    """Target, every two-stage setting's compute ratio and the summaries over ``rows``."""
    fractions = next(iter(curves.values())).budgets
    mean = {name: c.regret[rows].mean(axis=0) for name, c in curves.items()}
    proxies = [p.name for p in policies if isinstance(p, TrainedProxy)]
    target_method = min(proxies, key=lambda n: mean[n][-1])
    target = float(mean[target_method][-1])
    ratio = {}
    for p in policies:
        if isinstance(p, TwoStage):
            b = first_budget_reaching(fractions, mean[p.name], target)
            ratio[p.name] = None if b is None else float(1 / b)
    summaries = {}
    for name, c in curves.items():
        low, high = confidence_band(c.regret[rows], seed=seed)
        summaries[name] = {
            "mean": np.round(mean[name], 6).tolist(),
            "ci95_low": np.round(low, 6).tolist(),
            "ci95_high": np.round(high, 6).tolist(),
            "fallback_rate": np.round(c.fallback[rows].mean(axis=0), 4).tolist(),
        }
    return {
        "fractions": fractions,
        "replicates": len(range(*rows.indices(len(next(iter(curves.values())).regret)))),
        "target_method": target_method,
        "target": target,
        "ratio": ratio,
        "methods": summaries,
    }


def select_setting(evaluation: dict) -> str:
    """The two-stage setting reaching the target with the least compute (largest ratio);
    ties, and settings that never reach it, go by the lower mean regret over the grid."""
    methods = evaluation["methods"]
    return max(
        evaluation["ratio"],
        key=lambda n: (evaluation["ratio"][n] or 0.0, -np.mean(methods[n]["mean"])),
    )


def table_columns(fractions: np.ndarray) -> list[int]:
    """Grid indices nearest to the TABLE_FRACTIONS of the whole first epoch."""
    cols = [int(np.argmin(np.abs(np.log(fractions / f)))) for f in TABLE_FRACTIONS]
    return sorted(set(cols))


def fmt_ratio(ratio: float | None) -> str:
    return "not reached" if ratio is None else f"{ratio:.1f}x"


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
        f"Two-stage setting selected on {evals['selection']['replicates']} random half-pools: "
        f"**{selected}**. Target: the lowest mean regret of a trained proxy with the whole "
        "first-epoch budget.",
        "",
        "| pools | target | two-stage reaches it with | compute ratio |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in (
        ("full", "all architectures, orderings"),
        ("selection", "random half-pools, selection"),
        ("report", "random half-pools, held out"),
    ):
        e = evals[key]
        ratio = e["ratio"][selected]
        reached = "-" if ratio is None else f"1/{ratio:.1f} of the first epoch"
        lines.append(
            f"| {label} ({e['replicates']}) | {e['target_method']}: {e['target']:.4f} | "
            f"{reached} | {fmt_ratio(ratio)} |"
        )
    lines += [
        "",
        "Scoring charged at other speeds (all architectures, selected setting):",
        "",
        "| scoring cost | seconds to score the pool (hidden_cov / ensemble) | compute ratio |",
        "| --- | --- | --- |",
    ]
    for name, scen in result["cost_scenarios"].items():
        sec = scen["scoring_seconds_whole_pool"]
        lines.append(
            f"| {name} | {sec['hidden_cov']:.1f} / {sec['ensemble']:.1f} | "
            f"{fmt_ratio(scen['ratio'])} |"
        )
    lines += [
        "",
        "Every two-stage setting: the compute ratio at which its mean regret reaches the target "
        "('-': not within the grid):",
        "",
        "| setting | all architectures | half-pools, selection | half-pools, held out |",
        "| --- | --- | --- | --- |",
    ]
    for name, ratios in result["two_stage_ratios"].items():
        cells = " | ".join("-" if r is None else f"{r:.1f}x" for r in ratios.values())
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
            elif name.startswith("two-stage"):
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
    for path in (args.scores, args.ensemble):
        if not Path(path).exists():
            print(f"error: {path} not found (run its experiment first)", file=sys.stderr)
            return 2
    ensemble_spec = json.loads(Path(args.ensemble).read_text())["best_recipe"]
    fitnesses = {
        "params": Fitness.parse("params", "rnn"),
        "hidden_cov": Fitness.parse("hidden_cov", "rnn"),
        "ensemble": Fitness.parse(ensemble_spec, "rnn"),
    }
    metrics = sorted({m for f in fitnesses.values() for m in f.metric_names})
    pool = pool_from_logs(logs, pd.read_csv(args.scores), metrics)
    policies = policies_for(fitnesses, args.top_k)
    names = [p.name for p in policies]

    # Full pool: budgets from one architecture-epoch to the whole first epoch.
    total, unit = pool.first_epoch_total(), pool.architecture_epoch()
    fractions = log_budgets(unit / total, 1.0, args.budgets)
    rng = np.random.default_rng(args.seed)
    full_orders = [(pool, rng.permutation(pool.size)) for _ in range(args.orderings)]
    full_curves = run_replicates(full_orders, policies, fractions)
    # Random half-pools (a random half of the architectures, in a random order): the first
    # half of them select the two-stage setting, the others report it.
    half_fractions = log_budgets(2 * unit / total, 1.0, args.budgets)
    half_pools = []
    for _ in range(2 * args.half_pools):
        members = np.sort(rng.choice(pool.size, pool.size // 2, replace=False))
        half_pools.append((pool.subset(members), rng.permutation(pool.size // 2)))
    half_curves = run_replicates(half_pools, policies, half_fractions)
    evals = {
        "full": evaluate(full_curves, slice(None), policies, args.seed),
        "selection": evaluate(half_curves, slice(0, args.half_pools), policies, args.seed),
        "report": evaluate(half_curves, slice(args.half_pools, None), policies, args.seed),
    }
    selected = select_setting(evals["selection"])
    print(f"simulated in {time.perf_counter() - started:.0f} s; selected: {selected}")

    # The full pool with scoring charged at other speeds (trained proxies are unaffected).
    h100, h100_source = h100_seconds(pool)
    chosen = next(p for p in policies if p.name == selected)
    scenario_pools = {
        "CPU as measured (2-core EPYC, fast sizes)": pool,
        "H100, full-size seconds": pool.with_scoring_seconds(h100),
        "100 x the CPU seconds": pool.with_scoring_seconds(
            {m: 100 * np.asarray(s) for m, s in pool.scoring_seconds.items()}
        ),
    }
    cost_scenarios = {}
    for name, scenario_pool in scenario_pools.items():
        orders = [(scenario_pool, order) for _, order in full_orders]
        curves = run_replicates(orders, [chosen], fractions)[selected]
        b = first_budget_reaching(fractions, curves.mean, evals["full"]["target"])
        cost_scenarios[name] = {
            "scoring_seconds_whole_pool": {
                key: float(scenario_pool.scoring_cost(fitnesses[key]).sum())
                for key in ("hidden_cov", "ensemble")
            },
            "ratio": None if b is None else float(1 / b),
        }

    others = [
        f"two-stage, {fitnesses[key].name} -> top {k}, {e} ep"
        for key in ("hidden_cov", "ensemble")
        for e, k in ((1, 10), (3, 10))
    ]
    shown = [n for n in names if not n.startswith("two-stage")]
    shown += [selected] + [n for n in others if n != selected]
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
            "scoring_share": 0.5,
            "seed": args.seed,
            "logs": args.logs,
            "scores": args.scores,
            "ensemble": ensemble_spec,
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
                key: float(pool.scoring_cost(f).sum()) for key, f in fitnesses.items()
            },
        },
        "headline": {
            "selected_setting": selected,
            "target_method": evals["full"]["target_method"],
            "target": evals["full"]["target"],
            "ratio_all_architectures": evals["full"]["ratio"][selected],
            "ratio_half_pools_selection": evals["selection"]["ratio"][selected],
            "ratio_half_pools_held_out": evals["report"]["ratio"][selected],
            "target_half_pools_held_out": evals["report"]["target"],
            "target_method_half_pools_held_out": evals["report"]["target_method"],
            "goal": "the same regret for at least 20 times less compute",
        },
        "cost_scenarios": cost_scenarios,
        "h100_seconds": {"seconds": h100, "source": h100_source},
        "two_stage_ratios": {
            n: {key: evals[key]["ratio"][n] for key in ("full", "selection", "report")}
            for n in names
            if n.startswith("two-stage")
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
