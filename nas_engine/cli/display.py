"""What the search command shows: a progress bar with the best fitness, and the top table."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import replace

import pandas as pd
from tqdm import tqdm

from ..config import SearchConfig
from ..engine import SearchOutcome, default_out, ranking, run_search
from ..errors import ConfigError
from ..fitness import Fitness
from ..result import Result
from ..runs import load_run
from ..spaces import get_space

# The top table fits a terminal of this many columns: the other metrics are in the report.
TABLE_WIDTH = 100
FIXED_COLUMNS = ("rank", "arch_id", "fitness", "origin", "seconds")


def top_table(results: list[Result], k: int, fitness: Fitness | None = None) -> pd.DataFrame:
    """The top ``k``: final fitness (see :func:`ranking`), each fitness component's value
    (where the fitness has several), where the architecture came from and its seconds."""
    components = fitness.metric_names if fitness is not None else ()
    shown = components if len(components) > 1 else ()
    rows = []
    for rank, (r, final) in enumerate(ranking(results, fitness)[:k], start=1):
        rows.append(
            {
                "rank": rank,
                "arch_id": r.arch_id,
                "fitness": final,
                **{name: r.metrics.get(name) for name in shown},
                "origin": r.origin.split(":")[0],
                "seconds": r.seconds,
            }
        )
    return pd.DataFrame(rows)


def _render(table: pd.DataFrame) -> str:
    """The table as text, dropping the rightmost component columns until it fits."""
    while True:
        text = table.to_string(index=False, float_format=lambda v: f"{v:.6g}")
        components = [
            c for c in table.columns if c not in ("rank", "arch_id", "fitness", "origin", "seconds")
        ]
        if max(map(len, text.splitlines())) <= TABLE_WIDTH or not components:
            return text
        table = table.drop(columns=components[-1])


def print_top(results: list[Result], fitness: Fitness | None, config: SearchConfig) -> None:
    """The top table, then each ranked architecture as the space describes it."""
    table = top_table(results, config.top_k, fitness)
    if not len(table):
        print("no architecture was scored successfully")
        return
    print(_render(table))
    space = get_space(config.space, config.restrict)
    for rank, (result, _) in enumerate(ranking(results, fitness)[: config.top_k], start=1):
        line = f"{rank:>4}  {space.describe(space.validate(result.arch))}"
        print(textwrap.fill(line, TABLE_WIDTH, subsequent_indent=" " * 6, break_on_hyphens=False))


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

    # The folder fixed here, so that the table can be read back from it after an interrupt.
    if config.out is None and not config.resume:  # a resume names its folder
        config = replace(config, out=default_out(config))
    try:
        outcome: SearchOutcome = run_search(
            config, on_result=on_result, on_start=on_start, on_confirmed=on_confirmed
        )
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _print_interrupted(config)
        raise
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
    print_top(outcome.results, outcome.fitness, config)
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
    if (outcome.out / "report.html").is_file():
        print(f"report: {outcome.out / 'report.html'} (and report.md)")
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


def _print_interrupted(config: SearchConfig) -> None:
    """After Ctrl-C or SIGTERM: the top table of what the run recorded, as after a budget."""
    try:
        run = load_run(config.out)
    except ConfigError:
        return  # stopped before anything was written
    print(f"stopped early: {len(run.results)} architectures evaluated", file=sys.stderr)
    print_top(run.results, run.fitness, config)
    if (run.out / "report.html").is_file():
        print(f"report: {run.out / 'report.html'} (and report.md)")
