"""The search API end to end at tiny sizes: reproducibility, records, evolution, budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nas_engine
from nas_engine import ConfigError
from nas_engine.result import Candidate, Result
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import Recipe
from search_spaces.rnn.generator import MUTATIONS, cell_distance

TINY = dict(hidden_size=16, embedding_size=16, batch_size=8, bptt=10)
QUIET = dict(report=False)  # the run report is checked in test_report.py and test_cli.py
FIELDS = {"index", "arch_id", "arch", "fitness", "metrics", "status", "error", "seconds"}
BUDGET, POPULATION = 12, 4


class Runs:
    """Searches run once per (strategy, seed) and shared by the tests of this module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[tuple[str, int, str], tuple[list[Result], Path]] = {}

    def get(self, strategy: str, seed: int, copy: str = "a") -> tuple[list[Result], Path]:
        key = (strategy, seed, copy)
        if key not in self.cache:
            out = self.root / f"{strategy}-{seed}-{copy}"
            results = nas_engine.search(
                space="rnn",
                fitness="hidden_cov",
                budget=BUDGET,
                strategy=strategy,
                seed=seed,
                out=str(out),
                population=POPULATION,
                tournament=2,
                **TINY,
            )
            self.cache[key] = (results, out)
        return self.cache[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"))


STRATEGIES = ["evolution", "random"]


def trace(results: list[Result]) -> list[tuple[str, float | None]]:
    return [(r.arch_id, r.fitness) for r in results]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_search(runs: Runs, strategy: str) -> None:
    first, _ = runs.get(strategy, 0, "a")
    second, _ = runs.get(strategy, 0, "b")
    assert len(first) == BUDGET
    assert trace(first) == trace(second)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_different_seed_different_search(runs: Runs, strategy: str) -> None:
    a, _ = runs.get(strategy, 0)
    b, _ = runs.get(strategy, 1)
    assert trace(a) != trace(b)
    assert [r.arch_id for r in a] != [r.arch_id for r in b]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_no_architecture_twice(runs: Runs, strategy: str, seed: int) -> None:
    results, _ = runs.get(strategy, seed)
    ids = [r.arch_id for r in results]
    assert len(set(ids)) == len(ids)
    # Also as architectures, not just as recorded ids.
    keys = [Recipe.from_dict(r.arch).key for r in results]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_results_file(runs: Runs, strategy: str) -> None:
    results, out = runs.get(strategy, 0)
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(results) == BUDGET
    for i, (line, result) in enumerate(zip(lines, results, strict=True)):
        record = json.loads(line)
        assert FIELDS <= set(record)
        assert record["index"] == i
        assert record["status"] in ("ok", "failed")
        # The id is the key of the recorded architecture, recomputed independently.
        assert record["arch_id"] == Recipe.from_dict(record["arch"]).key
        if record["status"] == "ok":
            assert record["error"] is None
            assert record["fitness"] == record["metrics"]["hidden_cov"]
        else:
            assert record["fitness"] is None and record["error"]
        assert record["seconds"] >= 0
        assert Result.from_json(line) == result


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_summary_file(runs: Runs, strategy: str) -> None:
    results, out = runs.get(strategy, 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["strategy"] == strategy
    assert summary["config"]["budget"] == BUDGET and summary["config"]["seed"] == 1
    assert summary["config"]["hidden_size"] == 16
    ok = [r for r in results if r.ok]
    assert summary["evaluated"] == BUDGET
    assert summary["ok"] == len(ok) and summary["failed"] == BUDGET - len(ok)
    top = summary["top"]
    assert 1 <= len(top) <= min(10, len(ok))
    fitnesses = [t["fitness"] for t in top]
    assert fitnesses == sorted(fitnesses, reverse=True)
    assert fitnesses[0] == max(r.fitness for r in ok)
    assert [t["rank"] for t in top] == list(range(1, len(top) + 1))
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 1 and config["strategy"] == strategy


def test_evolution_mutates_after_the_population_phase(runs: Runs) -> None:
    results, _ = runs.get("evolution", 0)
    assert all(r.origin == "sample" for r in results[:POPULATION])
    later = results[POPULATION:]
    assert later and all(r.origin.startswith("mutate:") for r in later)
    by_id = {r.arch_id: r for r in results}
    for r in later:
        _, kind, parent = r.origin.split(":")
        assert kind in MUTATIONS
        # Aging evolution: the parent is one of the last POPULATION successful results.
        recent_ok = [p.arch_id for p in results[: r.index] if p.ok][-POPULATION:]
        assert parent in recent_ok, (r.index, parent, recent_ok)
        child = Recipe.from_dict(r.arch)
        assert cell_distance(child, Recipe.from_dict(by_id[parent].arch)) > 0


def test_random_search_only_samples(runs: Runs) -> None:
    results, _ = runs.get("random", 0)
    assert all(r.origin == "sample" for r in results)


def test_recorded_fitness_is_reproducible_by_the_scorer(runs: Runs) -> None:
    results, _ = runs.get("evolution", 0)
    scorer = Scorer(ScoringSetup(metrics=("hidden_cov",), seed=0, **TINY))
    for r in results[:3] + results[-2:]:
        evaluation = scorer.score(Candidate(r.arch_id, r.arch))
        assert evaluation.status == r.status
        if r.ok:
            assert evaluation.metrics["hidden_cov"] == r.fitness


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_time_budget_stops_early(tmp_path: Path, strategy: str) -> None:
    # Far more than fits in the time budget (if the time budget were ignored, the test would
    # still end, and fail).
    budget = 400
    results = nas_engine.search(
        budget=budget,
        time_budget=0.3,
        strategy=strategy,
        out=str(tmp_path / "run"),
        population=4,
        tournament=2,
        **TINY,
    )
    assert len(results) < budget
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_by"] == "time budget"
    assert summary["evaluated"] == len(results)
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(results)


RNN_SIZES = ("embedding_size", "hidden_size", "layers")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"budget": 0}, "budget"),
        ({"space": "cnn"}, "unknown space 'cnn'.*known: rnn"),
        ({"fitness": "accuracy"}, "unknown metric 'accuracy'.*hidden_cov"),
        ({"strategy": "annealing"}, "unknown strategy"),
        ({"population": 2, "tournament": 3}, "tournament"),
        ({"batch_size": 1}, "batch"),
        ({"layers": 1, "fitness": "hidden_cov_l2"}, "needs at least 2 layers"),
        ({"device": "tpu"}, "unknown device"),
        ({"bptt": 10_000_000}, "too few"),
        ({"bptt": 1}, "bptt must be at least 2"),
        ({"space": "bert", "hidden_size": 64}, "--hidden-size: the bert space does not take it"),
        (
            {"space": "bert", "layers": 2, "embedding_size": 8},
            "--embedding-size, --layers: the bert space does not take them",
        ),
        ({"seed": -1}, "seed must be an integer"),
        ({"seed": 99999999999999999999999}, "seed must be an integer"),
        ({"eval_timeout": float("inf")}, "eval timeout"),
        ({"eval_timeout": 1e10}, "eval timeout"),
        ({"cell_batch": True}, "--cell-batch.*--worker-batch N with N >= 2"),
        (
            {"cell_batch": True, "worker_batch": 4, "space": "bert"},
            "--cell-batch.*the bert space cannot",
        ),
        (
            {"cell_batch": True, "worker_batch": 4, "fitness": "hidden_cov+activation_distance"},
            "--cell-batch: .*read more than the first layer",
        ),
    ],
)
def test_bad_options_raise_config_error_and_write_nothing(
    tmp_path: Path, options: dict, match: str
) -> None:
    kwargs = {**TINY, "budget": 2, "out": str(tmp_path / "run"), **options}
    if options.get("space") == "bert":  # the RNN sizes of TINY only where the case gives them
        kwargs = {k: v for k, v in kwargs.items() if k not in RNN_SIZES or k in options}
    with pytest.raises(ConfigError, match=match):
        nas_engine.search(**kwargs, **QUIET)
    assert not (tmp_path / "run").exists()


def test_out_folder_holding_a_run_is_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    nas_engine.search(budget=2, strategy="random", out=out, **TINY)
    before = {p: p.read_bytes() for p in Path(out).rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="already holds this run"):
        nas_engine.search(budget=2, strategy="random", out=out, **TINY)
    with pytest.raises(ConfigError, match="different run.*seed"):
        nas_engine.search(budget=2, strategy="random", seed=5, out=out, **TINY)
    assert {p: p.read_bytes() for p in Path(out).rglob("*") if p.is_file()} == before


def test_in_process_batches_score_what_one_at_a_time_does(tmp_path: Path) -> None:
    """--worker-batch in-process: the scorer's score_batch, N candidates in flight; random
    search proposes the same architectures, scored exactly as one at a time."""
    # one thread in both: the same sums, whatever load the machine is under
    options = dict(budget=9, strategy="random", seed=4, fitness="hidden_cov", threads=1, **TINY)
    single = nas_engine.search(out=str(tmp_path / "one"), **options)
    batched = nas_engine.search(out=str(tmp_path / "three"), worker_batch=3, **options)
    assert [r.arch_id for r in batched] == [r.arch_id for r in single]
    assert [dict(r.metrics) for r in batched] == [dict(r.metrics) for r in single]
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["execution"] == {
        "executor": "InProcessExecutor",
        "workers": 1,
        "worker_batch": 3,
        "threads": 1,
        "threads_chosen": "--threads",
        "cuda_graphs": False,
        "cell_batch": False,
    }


def test_cell_batches_in_a_search_score_what_one_at_a_time_does(tmp_path: Path) -> None:
    """--cell-batch with --worker-batch: the same architectures, their scores agreeing to
    float32 rounding; a run may be resumed with or without (an execution setting)."""
    # one thread in both: the same sums, whatever load the machine is under
    options = dict(budget=9, strategy="random", seed=4, fitness="hidden_cov", threads=1, **TINY)
    single = nas_engine.search(out=str(tmp_path / "one"), **options)
    together = nas_engine.search(
        out=str(tmp_path / "cells"), worker_batch=4, cell_batch=True, **options
    )
    assert [r.arch_id for r in together] == [r.arch_id for r in single]
    assert [r.status for r in together] == [r.status for r in single]
    for one, many in zip(single, together, strict=True):
        assert many.fitness == pytest.approx(one.fitness, rel=1e-4)
    assert "cell_batch" not in (tmp_path / "cells" / "config.json").read_text()
    summary = json.loads((tmp_path / "cells" / "summary.json").read_text())
    assert summary["execution"]["cell_batch"] is True
    assert summary["execution"]["cell_batch_fallbacks"] == 0
    assert summary["execution"]["cell_batch_failure"] is None


def test_a_search_counts_the_results_whose_cell_batch_fell_back(tmp_path, monkeypatch) -> None:
    """A cell batch that raises costs time, not scores: the summary says how many results
    were scored alone and why, and the results say which."""
    from search_spaces.rnn.batch import CellBatch

    entering_states = CellBatch.entering_states
    calls = []

    def first_one_fails(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 1:
            raise RuntimeError("out of memory in the first batch")
        return entering_states(self, *args, **kwargs)

    monkeypatch.setattr(CellBatch, "entering_states", first_one_fails)
    # one thread in both: the same sums, whatever load the machine is under
    options = dict(budget=9, strategy="random", seed=4, fitness="hidden_cov", threads=1, **TINY)
    results = nas_engine.search(out=str(tmp_path), worker_batch=4, cell_batch=True, **options)
    execution = json.loads((tmp_path / "summary.json").read_text())["execution"]
    assert len(calls) == 2  # batches of 4, 4 and 1 (one candidate runs alone anyway)
    assert execution["cell_batch_fallbacks"] == 4
    assert execution["cell_batch_failure"] == "RuntimeError: out of memory in the first batch"
    fell_back = ["cell_batch_fallback" in r.details for r in results]
    assert fell_back == [True] * 4 + [False] * 5
