"""Multi-objective search: NSGA-II against random search with the same budget.

    python experiments/multi_objective.py            # about 5 minutes on a 2-core CPU

For each seed, NSGA-II (``--objectives hidden_cov,params:min``, the engine's default
strategy with objectives) and random search evaluate ``--budget`` architectures at the fast
sizes (``--fast``: E=48, H=64, B=25, T=35) on the embedded corpus. Both hypervolumes are
measured against one reference point: NSGA-II's run fixes it from its first ``--population``
ranked results (nas_engine.pareto) and the random run is given it (``reference_point``), so
the two numbers are comparable. Prints and saves ``experiments/out/multi_objective.{json,md}``
(front sizes, hypervolumes at several budgets, the ratio) and the NSGA-II run's
``pareto.png`` as ``experiments/out/multi_objective_pareto.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from nas_engine.config import FAST_SIZES, SearchConfig
from nas_engine.engine import run_search

OBJECTIVES = ("hidden_cov", "params:min")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--out", default="experiments/out/multi_objective")
    args = p.parse_args()
    base = dict(
        objectives=OBJECTIVES,
        budget=args.budget,
        population=args.population,
        embedding_size=FAST_SIZES.embedding_size,
        hidden_size=FAST_SIZES.hidden_size,
        batch_size=FAST_SIZES.batch_size,
        bptt=FAST_SIZES.bptt,
    )
    checkpoints = [b for b in (250, 500, 1000, 2000, 5000) if b < args.budget] + [args.budget]
    rows = []
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            nsga = run_search(SearchConfig(**base, seed=seed, out=f"{tmp}/nsga2-{seed}"))
            reference = nsga.summary["hypervolume"]["reference_point"]
            ref = tuple(reference[o.split(":")[0]] for o in OBJECTIVES)
            random = run_search(
                SearchConfig(
                    **base,
                    seed=seed,
                    strategy="random",
                    reference_point=ref,
                    out=f"{tmp}/random-{seed}",
                )
            )
            row = {"seed": seed, "reference_point": reference}
            for name, run in (("nsga2", nsga), ("random", random)):
                series = run.summary["hypervolume"]["series"]
                row[name] = {
                    "evaluated": run.summary["evaluated"],
                    "failed": run.summary["failed"],
                    "flagged": run.summary["stability_guard"]["flagged"],
                    "front_size": len(run.summary["pareto_front"]),
                    "hypervolume": {str(b): series[b - 1] for b in checkpoints},
                    "seconds": run.summary["total_seconds"],
                }
            final = str(args.budget)
            row["hypervolume_ratio"] = round(
                row["nsga2"]["hypervolume"][final] / row["random"]["hypervolume"][final], 4
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
            if seed == rows[0]["seed"]:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(nsga.out / "pareto.png", f"{out}_pareto.png")
    report = {
        "settings": {
            "objectives": list(OBJECTIVES),
            "budget": args.budget,
            "population": args.population,
            "sizes": f"fast: E={FAST_SIZES.embedding_size} H={FAST_SIZES.hidden_size} "
            f"B={FAST_SIZES.batch_size} T={FAST_SIZES.bptt}, 3 layers, embedded corpus",
            "command": "python experiments/multi_objective.py",
        },
        "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}",
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report, checkpoints))
    print(markdown(report, checkpoints))


def markdown(report: dict, checkpoints: list[int]) -> str:
    head = (
        "| seed | strategy | front size | "
        + " | ".join(f"hypervolume at {b}" for b in checkpoints)
        + " | seconds |\n| --- | --- | --- | "
        + " | ".join("---" for _ in checkpoints)
        + " | --- |\n"
    )
    lines = []
    for row in report["rows"]:
        for name in ("nsga2", "random"):
            r = row[name]
            volumes = " | ".join(f"{r['hypervolume'][str(b)]:.4g}" for b in checkpoints)
            lines.append(
                f"| {row['seed']} | {name} | {r['front_size']} | {volumes} | {r['seconds']} |"
            )
    ratios = ", ".join(f"{row['hypervolume_ratio']:.3f}" for row in report["rows"])
    return (
        head
        + "\n".join(lines)
        + f"\n\nHypervolume ratio NSGA-II / random at the full budget, per seed: {ratios}.\n"
        f"Settings: {report['settings']}. Hardware: {report['hardware']}.\n"
    )


if __name__ == "__main__":
    main()
