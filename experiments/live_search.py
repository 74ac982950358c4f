"""Live search on the full cell space: which method finds the best trained model for the same
wall-clock budget?

    python experiments/live_search.py                      # CPU, reduced sizes (~15 min)
    python experiments/live_search.py --device cuda --embedding-size 400 --hidden-size 600 \\
        --time-budget 600 --confirm-steps 2000            # full size on a GPU

Methods, each given the same search wall-clock budget (``--time-budget`` seconds), then the
same confirmation (its top ``--top`` trained ``--confirm-steps`` steps with the benchmark recipe):

- ``evolution + hidden_cov`` and ``random + hidden_cov``: training-free search (with the
  stability guard, on by default; ``random + hidden_cov (no guard)`` turns it off);
- ``evolution + hidden_cov:3+hidden_drift_l1+hidden_drift_l3 (gain 1.25)``: the best recipe of
  fitness_search.py (scored with ``--init-gain 1.25``; the top cells are trained from the
  benchmark's initialisation, as every method's are);
- ``evolution + trained_loss``: the trained proxy (validation loss after ``--proxy-steps``);
- ``random sampling``: ``--top`` architectures drawn from the generator, no selection at all;
- references: the LSTM and GRU presets, trained the same way.

All use one seed; the search uses the engine as a user would (``run_search`` with
``confirm_top``), so the numbers include everything the engine does. Compute spent: the
search's wall-clock seconds plus the confirmation's training seconds. Writes
``experiments/out/live_search.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nas_engine.config import SearchConfig
from nas_engine.confirm import plan_confirmation
from nas_engine.engine import run_search
from nas_engine.spaces import get_space
from search_spaces.rnn.training import train_architecture

METHODS = {
    "evolution + hidden_cov": dict(strategy="evolution", fitness="hidden_cov"),
    "random + hidden_cov": dict(strategy="random", fitness="hidden_cov"),
    # The same without the stability guard (nas_engine.health): what the guard is for.
    "random + hidden_cov (no guard)": dict(
        strategy="random", fitness="hidden_cov", stability_guard=False
    ),
    # The best training-free recipe of experiments/fitness_search.py (its fitness and init
    # gain; the scoring sizes here are this script's, as for every method).
    "evolution + hidden_cov:3+hidden_drift_l1+hidden_drift_l3 (gain 1.25)": dict(
        strategy="evolution", fitness="hidden_cov:3+hidden_drift_l1+hidden_drift_l3", init_gain=1.25
    ),
    "evolution + trained_loss": dict(strategy="evolution", fitness="trained_loss"),
    "random sampling": dict(strategy="random", fitness="params"),
}


def run_method(name: str, base: dict, args: argparse.Namespace, tmp: str) -> dict:
    options = dict(METHODS[name])
    if name == "random sampling":  # no search: the first --top draws, all of them trained
        budget, time_budget = args.top, None
    else:
        budget, time_budget = 100_000, args.time_budget
    if options["fitness"] == "trained_loss":
        options["proxy_steps"] = args.proxy_steps
        if args.corpus is not None:
            options["proxy_train_split"] = "valid"
    config = SearchConfig(
        **base,
        **options,
        budget=budget,
        time_budget=time_budget,
        out=f"{tmp}/{name.replace(' ', '_').replace('+', '')}",
        confirm_top=args.top,
        confirm_steps=args.confirm_steps,
    )
    began = time.perf_counter()
    outcome = run_search(config)
    search_seconds = outcome.summary["total_seconds"]
    confirmation = outcome.summary["confirmation"]
    table = confirmation["table"]
    ppl = [row["test_ppl"] for row in table if row["test_ppl"] is not None]
    train_seconds = sum(row["train_seconds"] or 0.0 for row in table)
    row = {
        "method": name,
        "evaluated": outcome.summary["evaluated"],
        "failed": outcome.summary["failed"],
        "search_seconds": round(search_seconds, 1),
        "confirm_train_seconds": round(train_seconds, 1),
        "compute_seconds": round(search_seconds + train_seconds, 1),
        "best_test_ppl": round(min(ppl), 2) if ppl else None,
        "median_top_test_ppl": round(statistics.median(ppl), 2) if ppl else None,
        "top_test_ppl": [round(p, 2) for p in ppl],
        "top_trained_without_nan": len(ppl),
        "flagged_by_guard": outcome.summary["stability_guard"]["flagged"],
        "answer": outcome.summary.get("answer"),
        "kendall_tau_fitness_vs_loss": confirmation["kendall_tau_fitness_vs_loss"],
        "wall_seconds": round(time.perf_counter() - began, 1),
        "notes": confirmation["notes"],
    }
    print(json.dumps(row), flush=True)
    return row


def run_presets(base: dict, args: argparse.Namespace) -> list[dict]:
    """LSTM and GRU trained exactly as the confirmation trains (same plan)."""
    config = SearchConfig(**base, confirm_top=1, confirm_steps=args.confirm_steps)
    plan = plan_confirmation(config, config.scoring_setup().load_corpus())
    space = get_space("rnn")
    rows = []
    for preset in ("lstm", "gru"):
        record = space.to_record(space.presets()[preset])
        outcome = train_architecture(record, plan.sizes, plan.data, plan.recipe)
        rows.append(
            {
                "method": f"preset {preset}",
                "evaluated": 0,
                "failed": 0 if outcome.ok else 1,
                "search_seconds": 0.0,
                "confirm_train_seconds": round(outcome.train_seconds, 1),
                "compute_seconds": round(outcome.train_seconds, 1),
                "best_test_ppl": round(outcome.test_ppl, 2) if outcome.test_ppl else None,
                "median_top_test_ppl": round(outcome.test_ppl, 2) if outcome.test_ppl else None,
                "top_test_ppl": [round(outcome.test_ppl, 2)] if outcome.test_ppl else [],
                "kendall_tau_fitness_vs_loss": None,
                "notes": list(outcome.notes),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(report: dict) -> str:
    top = report["settings"]["top"]
    head = (
        "| method | evaluated (failed) | flagged by the guard | search s | "
        "confirmation training s | compute s | "
        f"top {top} trained without NaN | best test ppl | median top-{top} test ppl | "
        f"tau fitness vs loss (top {top}) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = [
        f"| {r['method']} | {r['evaluated']} ({r['failed']}) | {r.get('flagged_by_guard', '-')} "
        f"| {r['search_seconds']} | {r['confirm_train_seconds']} | {r['compute_seconds']} | "
        f"{r.get('top_trained_without_nan', '-')} | {r['best_test_ppl']} | "
        f"{r['median_top_test_ppl']} | {r['kendall_tau_fitness_vs_loss']} |"
        for r in report["rows"]
    ]
    settings = ", ".join(f"{k}={v}" for k, v in report["settings"].items())
    return f"{head}{chr(10).join(lines)}\n\nSettings: {settings}. Hardware: {report['hardware']}.\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time-budget", type=float, default=120.0, help="search seconds per method")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--confirm-steps", type=int, default=300)
    p.add_argument("--proxy-steps", type=int, default=20)
    p.add_argument("--embedding-size", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--corpus", default=None, help="default: the embedded synthetic corpus")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--out", default="experiments/out/live_search")
    args = p.parse_args()
    methods = [name.strip() for name in args.methods.split(",")]
    unknown = [name for name in methods if name not in METHODS]
    if unknown:  # before any method runs, not after the first ones have taken minutes
        p.error(f"unknown --methods {unknown}; known: {list(METHODS)}")

    base = dict(
        space="rnn",
        seed=args.seed,
        device=args.device,
        corpus=args.corpus,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        layers=args.layers,
        batch_size=args.batch_size,
        bptt=args.bptt,
        population=10,
        tournament=3,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    # The report is rewritten after every method, so a run stopped at a time limit (a lent
    # GPU's, say) keeps what it finished; "complete" says whether every row is in.
    with tempfile.TemporaryDirectory() as tmp:
        for name in methods:
            rows.append(run_method(name, base, args, tmp))
            write_report(out, report_of(args, rows, complete=False))
    rows += run_presets(base, args)
    report = report_of(args, rows, complete=True)
    write_report(out, report)
    print(markdown(report))


def report_of(args: argparse.Namespace, rows: list[dict], complete: bool) -> dict:
    return {
        "settings": {
            "time_budget_s": args.time_budget,
            "top": args.top,
            "confirm_steps": args.confirm_steps,
            "proxy_steps": args.proxy_steps,
            "sizes": f"E={args.embedding_size} H={args.hidden_size} layers={args.layers} "
            f"B={args.batch_size} T={args.bptt}",
            "corpus": args.corpus or "embedded",
            "seed": args.seed,
        },
        "hardware": torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}",
        "complete": complete,
        "rows": rows,
    }


def write_report(out: Path, report: dict) -> None:
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    main()
