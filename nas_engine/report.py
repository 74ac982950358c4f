"""What the search command shows: a progress bar with the best fitness, and the top table."""

from __future__ import annotations

import sys

import pandas as pd
from tqdm import tqdm

from .config import SearchConfig
from .engine import SearchOutcome, ranking, run_search
from .fitness import Fitness
from .result import Result
from .spaces import get_space


def top_table(results: list[Result], k: int, fitness: Fitness | None = None) -> pd.DataFrame:
    """The top ``k``: final fitness (see :func:`ranking`), then each fitness component's value,
    then the other recorded metrics."""
    first = fitness.metric_names if fitness is not None else ()
    rows = []
    for rank, (r, final) in enumerate(ranking(results, fitness)[:k], start=1):
        rows.append(
            {
                "rank": rank,
                "arch_id": r.arch_id,
                "fitness": final,
                **{name: r.metrics[name] for name in first},
                **{name: v for name, v in r.metrics.items() if name not in first},
                "origin": r.origin.split(":")[0],
                "seconds": r.seconds,
            }
        )
    return pd.DataFrame(rows)


def run_with_progress(config: SearchConfig, progress: bool = True) -> int:
    bar = None
    failures = [0]

    def on_start(corpus: str, restored: int) -> None:
        nonlocal bar
        print(f"corpus: {corpus}", file=sys.stderr)
        if config.strategy == "evolution" and not config.objectives:
            if config.population >= config.budget:
                print(
                    f"note: --population {config.population} is not below --budget "
                    f"{config.budget}: evolution mutates only after its population of random "
                    "samples, so every architecture of this run is a random sample",
                    file=sys.stderr,
                )
        if config.resume:
            print(f"resuming: {restored} results restored, not scored again", file=sys.stderr)
        bar = tqdm(
            total=config.budget,
            initial=restored,
            disable=not progress,
            unit="arch",
            file=sys.stderr,
        )

    def on_result(result: Result, best: Result | None) -> None:
        assert bar is not None
        bar.update(1)
        failures[0] += not result.ok
        bar.set_postfix(
            best=f"{best.fitness:.4g}" if best else "-", failed=failures[0], refresh=False
        )

    def on_confirmed(record: dict) -> None:
        loss = record["test_loss"] if record["test_loss"] is not None else record["valid_loss"]
        shown = f"loss {loss:.4f}" if loss is not None else record["error"]
        print(f"confirmed rank {record['rank']} {record['arch_id']}: {shown}", file=sys.stderr)

    try:
        outcome: SearchOutcome = run_search(
            config, on_result=on_result, on_start=on_start, on_confirmed=on_confirmed
        )
    finally:
        if bar is not None:
            bar.close()
    s = outcome.summary
    flagged = s["stability_guard"]["flagged"]
    print(
        f"evaluated {s['evaluated']} architectures ({s['ok']} ok, {s['failed']} failed"
        + (f", {flagged} ok ones flagged by the stability guard" if flagged else "")
        + f") in {s['total_seconds']:.1f} s; stopped by {s['stopped_by']}"
    )
    if outcome.fitness is not None and outcome.fitness.is_ensemble:
        print(f"fitness {outcome.fitness.name}: rank-based ensemble, against all ok results")
    table = top_table(outcome.results, config.top_k, outcome.fitness)
    if len(table):
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        space = get_space(config.space)
        for rank, (result, _) in enumerate(
            ranking(outcome.results, outcome.fitness)[: config.top_k], 1
        ):
            print(f"{rank:>4}  {result.arch_id}  {space.describe(space.validate(result.arch))}")
    else:
        print("no architecture was scored successfully")
    confirmation = outcome.summary.get("confirmation")
    if confirmation is not None:
        print(f"\nconfirmation training ({confirmation['corpus']}):")
        for note in confirmation["notes"]:
            print(f"  {note}")
        table = pd.DataFrame(confirmation["table"]).dropna(axis=1, how="all")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        tau = confirmation["kendall_tau_fitness_vs_loss"]
        n = sum(row["status"] == "ok" for row in confirmation["table"])
        if tau is None or n < 5:
            print(f"Kendall tau, fitness vs confirmed loss: n/a (n = {n}; shown from n = 5)")
        else:
            print(
                f"Kendall tau, fitness vs confirmed loss: {tau} (n = {n}; negative means a "
                "higher fitness went with a lower loss, as hoped)"
            )
        print(f"confirmed: {outcome.out / 'confirmed.jsonl'}")
    print(f"results: {outcome.out / 'results.jsonl'}\nsummary: {outcome.out / 'summary.json'}")
    chosen = outcome.summary.get("answer")
    if "answer" in outcome.summary and chosen is None:
        print("answer: none (no confirmed training reached a finite loss)")
    if chosen is not None:
        loss = chosen["confirmed_loss"]
        shown = f"confirmed loss {loss:.4f}" if loss is not None else "no confirmed loss"
        weight = config.answer_blend
        print(
            f"answer: {chosen['arch_id']} (fitness rank {chosen['fitness_rank']}, {shown}): "
            f"the best blend of confirmed-loss rank and {weight:g} x fitness rank among the "
            "confirmed (summary.json: answer_rule)"
        )
    return 0
