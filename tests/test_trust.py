"""Trustworthy winners: dead cells fail, runaway cells are flagged and never ranked, extra
metrics never sink an architecture, the two-stage answer, and the Pareto front of a
multi-objective run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_setup, token_corpus

from nas_engine.config import SearchConfig
from nas_engine.confirm import answer
from nas_engine.engine import SearchOutcome, ranking, run_search
from nas_engine.fitness import Fitness
from nas_engine.health import DEFAULT_STABILITY_THRESHOLD, STABILITY, state_verdict
from nas_engine.metrics import metrics_of
from nas_engine.pareto import pareto_front
from nas_engine.result import FLAGGED, Candidate, Result
from nas_engine.scoring import Scorer
from nas_engine.spaces import get_space

TINY = dict(
    hidden_size=16,
    embedding_size=16,
    batch_size=8,
    bptt=10,
    population=4,
    tournament=2,
    report=False,
)

# Cells that carry no information about their input, built three ways.
DEAD_CELLS = {
    # h_new_0 is a product of previous states: zero from the zero initial state on.
    "product of states": {
        "n0": {"op": "linear", "input": ["x", "h_prev_1"]},
        "h_new_1": {"op": "activation_tanh", "input": ["n0"]},
        "h_new_0": {"op": "elementwise_prod", "input": ["h_prev_0", "h_new_1"]},
    },
    # The input reaches the output only through a product with the zero state: tanh(0) = 0.
    "zero path": {
        "n0": {"op": "linear", "input": ["x"]},
        "n1": {"op": "elementwise_prod", "input": ["n0", "h_prev_0"]},
        "h_new_0": {"op": "activation_tanh", "input": ["n1"]},
    },
    # A second state that stays zero, read through a sigmoid: every output state is 0.5.
    "constant": {
        "n0": {"op": "linear", "input": ["x"]},
        "h_new_1": {"op": "elementwise_prod", "input": ["n0", "h_prev_1"]},
        "h_new_0": {"op": "activation_sigm", "input": ["h_new_1"]},
    },
}

# A cell that training drove to NaN (found by random search + hidden_cov, reduced sizes): its
# new state is a square of an unbounded term, calm at the initial weights' small states.
RUNAWAY_CELL = {
    "n0": {"op": "linear", "input": ["h_prev_1", "x"]},
    "n1": {"op": "linear", "input": ["h_prev_0", "x"]},
    "n2": {"op": "activation_leaky_relu", "input": ["n1"]},
    "n3": {"op": "activation_leaky_relu", "input": ["n0"]},
    "h_new_0": {"op": "elementwise_prod", "input": ["n0", "n3"]},
    "h_new_1": {"op": "elementwise_sum", "input": ["n0", "n2"]},
}


def search(**options) -> SearchOutcome:
    return run_search(SearchConfig(**options))


FREE_METRICS = [m.name for m in metrics_of("rnn") if not m.trained]


def candidate(recipe: dict, key: str) -> Candidate:
    return Candidate(key, recipe)


def presets() -> dict[str, dict]:
    space = get_space("rnn")
    return {name: space.to_record(r) for name, r in space.presets().items()}


def as_result(index: int, key: str, evaluation, fitness: Fitness) -> Result:
    values = fitness.values(evaluation.metrics) if evaluation.status == "ok" else None
    return Result(
        index=index,
        arch_id=key,
        arch={},
        origin="sample",
        status=evaluation.status if values is not None else "failed",
        fitness=values[0] if values is not None else None,
        metrics=dict(evaluation.metrics),
        details=dict(evaluation.details),
        error=evaluation.error,
        seconds=0.0,
    )


@pytest.mark.parametrize("metric", FREE_METRICS)
def test_a_dead_cell_never_ranks_above_a_healthy_one(metric: str) -> None:
    setup = tiny_setup(metrics=(metric,), health_check=True, required_metrics=(metric,))
    scorer = Scorer(setup, token_corpus())
    fitness = Fitness.parse(metric, "rnn")
    results = []
    for name, recipe in {**DEAD_CELLS, **presets()}.items():
        results.append(
            as_result(len(results), name, scorer.score(candidate(recipe, name)), fitness)
        )
    for dead in DEAD_CELLS:
        (result,) = [r for r in results if r.arch_id == dead]
        assert result.status == "failed", (dead, result.metrics)
        assert "degenerate cell" in result.error
    ranked = [r.arch_id for r, _ in ranking(results, fitness)]
    assert not set(ranked) & set(DEAD_CELLS)
    healthy = [r for r in results if r.arch_id in presets() and r.ok]
    assert healthy, "at least one healthy preset scores (else the property is empty)"


def test_the_verdict_names_what_is_wrong() -> None:
    import torch

    zeros = torch.zeros(5, 4, 3)
    assert "all zero" in state_verdict([zeros]).degenerate
    constant = torch.full((5, 4, 3), 0.5)
    constant[0] = 0
    assert "constant" in state_verdict([constant]).degenerate
    same_rows = torch.arange(5.0).view(5, 1, 1).expand(5, 4, 3).clone()
    assert "same for every input" in state_verdict([same_rows]).degenerate
    alive = torch.randn(5, 4, 3)
    assert state_verdict([alive]).degenerate is None
    alive[3, 1, 2] = float("nan")
    assert "not finite" in state_verdict([alive]).degenerate
    deep = [torch.randn(5, 4, 3), torch.full((5, 4, 3), float("inf"))]
    assert "layer 2" in state_verdict(deep).degenerate


def test_stress_growth_flags_a_runaway_cell_and_not_the_presets() -> None:
    setup = tiny_setup(metrics=("hidden_cov",), health_check=True, hidden_size=32)
    scorer = Scorer(setup, token_corpus())
    runaway = scorer.score(candidate(RUNAWAY_CELL, "runaway"))
    assert runaway.status == "ok"
    assert runaway.details[STABILITY] > DEFAULT_STABILITY_THRESHOLD
    for name, recipe in presets().items():
        healthy = scorer.score(candidate(recipe, name))
        assert healthy.details[STABILITY] < DEFAULT_STABILITY_THRESHOLD, name


@pytest.fixture(scope="module")
def guarded_runs(tmp_path_factory) -> dict[str, list[Result]]:
    """The same evolution with the guard off and on, at a threshold low enough that it
    flags a good share of the cells."""
    root = tmp_path_factory.mktemp("guard")
    runs = {}
    for guard in (False, True):
        out = root / str(guard)
        search(
            budget=40,
            seed=2,
            out=str(out),
            stability_guard=guard,
            stability_threshold=-0.5,
            **TINY,
        )
        runs[str(guard)] = [json.loads(line) for line in (out / "results.jsonl").open()]
        runs[f"summary {guard}"] = json.loads((out / "summary.json").read_text())
    return runs


def test_the_guard_flags_keeps_ok_and_never_ranks_or_breeds(guarded_runs) -> None:
    records = guarded_runs["True"]
    flagged = {r["arch_id"] for r in records if r["details"].get(FLAGGED)}
    assert flagged, "the low threshold flags some cells"
    for r in records:
        if r["status"] == "ok":
            assert isinstance(r["details"][STABILITY], float)
            assert r["details"][FLAGGED] == (r["details"][STABILITY] > -0.5)
    assert all(r["status"] == "ok" for r in records if r["arch_id"] in flagged)
    summary = guarded_runs["summary True"]
    assert summary["stability_guard"]["flagged"] == len(flagged)
    assert not {t["arch_id"] for t in summary["top"]} & flagged
    parents = {r["origin"].split(":")[2] for r in records if r["origin"].startswith("mutate:")}
    assert parents and not parents & flagged
    # Off, nothing is flagged and the same kind of cells can win and breed.
    off = guarded_runs["False"]
    assert not any(FLAGGED in r["details"] for r in off)
    off_top = {t["arch_id"] for t in guarded_runs["summary False"]["top"]}
    off_flaggable = {r["arch_id"] for r in off if r["details"].get(STABILITY, -9) > -0.5}
    assert off_top & off_flaggable


def test_a_failing_extra_metric_changes_neither_the_ok_set_nor_the_top(tmp_path: Path) -> None:
    runs = {}
    for extra in ((), ("activation_distance",)):
        out = tmp_path / ("with" if extra else "without")
        outcome = search(budget=30, seed=0, strategy="random", out=str(out), metrics=extra, **TINY)
        runs[bool(extra)] = outcome
    without, with_extra = runs[False], runs[True]
    errors = [r for r in with_extra.results if "metric_errors" in r.details]
    assert errors, "activation_distance fails on some tiny cells (else nothing is tested)"
    for r in errors:
        assert r.ok and r.metrics["activation_distance"] is None
        assert r.details["metric_errors"]["activation_distance"]
    assert [r.arch_id for r in without.results if r.ok] == [
        r.arch_id for r in with_extra.results if r.ok
    ]
    assert [r.arch_id for r in without.top(10)] == [r.arch_id for r in with_extra.top(10)]
    assert with_extra.summary["failed"] == without.summary["failed"]


def test_the_answer_blends_loss_rank_and_fitness_rank() -> None:
    def row(rank: int, loss: float | None, status: str = "ok") -> dict:
        return {
            "rank": rank,
            "arch_id": f"a{rank}",
            "status": status,
            "test_loss": loss,
            "valid_loss": loss,
        }

    table = [row(1, 5.0), row(2, 4.9), row(3, 4.0), row(4, None, "failed")]
    # Loss alone picks the lowest loss; a fitness-heavy blend picks the fitness rank 1.
    assert answer(table, 0.0)["arch_id"] == "a3"
    assert answer(table, 100.0)["arch_id"] == "a1"
    chosen = answer(table, 0.25)
    assert set(chosen) == {"arch_id", "confirmed_loss", "fitness_rank", "blend"}
    # Loss ranks (larger = lower loss): a3 4, a2 3, a1 2, a4 1; fitness ranks: a1 4 .. a4 1.
    assert chosen == {"arch_id": "a3", "confirmed_loss": 4.0, "fitness_rank": 3, "blend": 4.5}
    # Two tied blends: the better fitness wins.
    assert answer([row(1, 4.0), row(2, 4.0)], 0.0)["arch_id"] == "a1"
    # A failed training never beats a finite loss, whatever its fitness rank.
    assert answer([row(1, None, "failed"), row(2, 9.0)], 0.9)["arch_id"] == "a2"
    assert answer([], 0.25) is None
    assert answer([row(1, None, "failed"), row(2, None, "failed")], 0.25) is None


def _hand_result(index: int, a: float, b: float, *, ok: bool = True, flagged: bool = False):
    return Result(
        index=index,
        arch_id=f"r{index}",
        arch={},
        origin="sample",
        status="ok" if ok else "failed",
        fitness=0.5 if ok else None,
        metrics={"hidden_cov": a, "params": b},
        details={FLAGGED: flagged},
        error=None,
        seconds=0.0,
    )


def test_the_pareto_front_is_exactly_the_non_dominated_ranked_results() -> None:
    fitness = Fitness.from_objectives(["hidden_cov", "params:min"], "rnn")
    points = [(-5, 100), (-3, 300), (-4, 200), (-4, 250), (-6, 90), (-3, 300), (-2, 500)]
    results = [_hand_result(i, a, b) for i, (a, b) in enumerate(points)]
    results.append(_hand_result(7, -1, 10, ok=False))  # would dominate all, but failed
    results.append(_hand_result(8, -1, 20, flagged=True))  # likewise, but flagged
    front = pareto_front(fitness, results)
    got = [r.arch_id for r in front]
    assert got == ["r0", "r1", "r2", "r4", "r6"]  # r3 dominated by r2; r5 repeats r1
    # Non-dominated and complete, checked by brute force against the definition.
    ranked = [r for r in results if r.ranked]

    def dominates(p, q) -> bool:
        pv = (p.metrics["hidden_cov"], -p.metrics["params"])
        qv = (q.metrics["hidden_cov"], -q.metrics["params"])
        return all(x >= y for x, y in zip(pv, qv, strict=True)) and pv != qv

    for r in front:
        assert not any(dominates(o, r) for o in ranked)
    for r in ranked:
        if r not in front:
            assert any(dominates(f, r) or f.metrics == r.metrics for f in front)


def test_a_multi_objective_run_writes_its_front_hypervolume_and_picture(tmp_path: Path) -> None:
    out = tmp_path / "mo"
    run = search(budget=40, seed=1, out=str(out), objectives=("hidden_cov", "params:min"), **TINY)
    summary = run.summary
    assert summary["strategy"]["population"], "NSGA-II records its population statistics"
    assert any(r.origin.startswith("mutate:") for r in run.results)
    front = summary["pareto_front"]
    assert front and set(front[0]) == {"arch_id", "objectives"}
    assert set(front[0]["objectives"]) == {"hidden_cov", "params"}
    assert set(summary["hypervolume"]["reference_point"]) == {"hidden_cov", "params"}
    ids = [f["arch_id"] for f in front]
    fitness = Fitness.from_objectives(["hidden_cov", "params:min"], "rnn")
    assert ids == [r.arch_id for r in pareto_front(fitness, run.results)]
    series = summary["hypervolume"]["series"]
    assert len(series) == len(run.results)
    finite = [v for v in series if v is not None]
    assert finite == sorted(finite), "the front's hypervolume never shrinks"
    recorded = [r.details["hypervolume"] for r in run.results]
    assert recorded[-1] == pytest.approx(series[-1])
    assert (out / "pareto.png").stat().st_size > 1000
    for r in run.results:
        if r.ok:
            assert math.isfinite(r.metrics["hidden_cov"]) and math.isfinite(r.metrics["params"])


def test_a_resumed_nsga2_run_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    options = dict(seed=3, objectives=("hidden_cov", "params:min"), **TINY)
    whole = search(budget=30, out=str(tmp_path / "whole"), **options)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    lines = (cut / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:13]))  # killed after 13 results
    journal = (cut / "proposals.jsonl").read_text().splitlines(keepends=True)
    kept = [line for line in journal if json.loads(line)["after"] <= 13]
    (cut / "proposals.jsonl").write_text("".join(kept))  # the 14th was in flight
    resumed = search(budget=30, out=str(cut), resume=True, **options)

    def trace(results):
        return [(r.arch_id, r.origin, r.status, r.fitness) for r in results]

    assert trace(resumed.results) == trace(whole.results)
    assert resumed.summary["pareto_front"] == whole.summary["pareto_front"]
    assert resumed.summary["hypervolume"]["series"] == whole.summary["hypervolume"]["series"]


def test_max_params_fails_the_larger_architectures(tmp_path: Path) -> None:
    capped = search(
        budget=12,
        seed=0,
        strategy="random",
        out=str(tmp_path / "b"),
        max_params=172_000,
        **TINY,
    )
    over = [r for r in capped.results if r.error and "max-params" in r.error]
    assert over, "some tiny cells have more than 172,000 parameters"
    assert all(r.metrics["params"] > 172_000 for r in over)
    assert all(r.metrics["params"] <= 172_000 for r in capped.results if r.ok)
    assert np.all([not r.ok for r in over])
    assert not {r.arch_id for r in over} & {t["arch_id"] for t in capped.summary["top"]}
