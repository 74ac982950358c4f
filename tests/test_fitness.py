"""Fitness specs and the ensemble rule: parsing, directions, ranks, weights, failures, search."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_module
from hypothesis import given
from hypothesis import strategies as st

import nas_engine
from nas_engine import ConfigError, SearchConfig
from nas_engine.engine import run_search
from nas_engine.executors import InProcessExecutor
from nas_engine.fitness import Fitness, parse_spec
from nas_engine.metrics import metric_names
from nas_engine.result import Result
from nas_engine.spaces import get_space
from nas_engine.strategies import AgingEvolution

TINY = dict(hidden_size=16, embedding_size=16, batch_size=8, bptt=10, report=False)
ENSEMBLE = "hidden_cov+params"


def fit(spec: str) -> Fitness:
    return Fitness.parse(spec, "rnn")


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "components", "name"),
    [
        ("hidden_cov", [("hidden_cov", 1.0)], "hidden_cov"),
        ("  params ", [("params", 1.0)], "params"),
        ("hidden_cov+params", [("hidden_cov", 1.0), ("params", 1.0)], "hidden_cov+params"),
        (" hidden_cov : 2 +params", [("hidden_cov", 2.0), ("params", 1.0)], "hidden_cov:2+params"),
        (
            "hidden_cov_l2:0.5+hidden_cov:1+params:1.5",
            [("hidden_cov_l2", 0.5), ("hidden_cov", 1.0), ("params", 1.5)],
            "hidden_cov_l2:0.5+hidden_cov+params:1.5",
        ),
        ("hidden_cov:1e1+params", [("hidden_cov", 10.0), ("params", 1.0)], "hidden_cov:10+params"),
        ("params:0.1+hidden_cov:0.3", [("params", 0.1), ("hidden_cov", 0.3)], None),
    ],
)
def test_good_specs(spec: str, components: list, name: str) -> None:
    f = fit(spec)
    assert [(c.metric.name, float(c.weight)) for c in f.components] == components
    assert f.name == (name or spec)
    assert f.is_ensemble == (len(components) > 1)
    assert [(n, float(w)) for n, w in parse_spec(spec)] == components
    # The canonical name parses back to the same fitness.
    assert fit(f.name) == f


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("hidden_cov:0+params", "bad weight '0' for hidden_cov"),
        ("hidden_cov:x+params", "bad weight 'x'"),
        ("hidden_cov:-1+params", "bad weight '-1'"),
        ("hidden_cov:+params", "bad weight ''"),
        ("hidden_cov:inf+params", "bad weight 'inf'"),
        ("hidden_cov:nan+params", "bad weight 'nan'"),
        ("hidden_cov:1:2+params", "bad weight '1:2'"),
        ("hidden_cov:1e999+params", "bad weight '1e999'"),
        ("hidden_cov:1/0+params", "bad weight '1/0'"),
        ("hidden_cov++params", "empty component"),
        ("hidden_cov+", "empty component"),
        ("+params", "empty component"),
        (":2+params", "names no metric"),
        ("", "empty fitness spec"),
        ("   ", "empty fitness spec"),
        ("hidden_cov+hidden_cov", "'hidden_cov' appears twice"),
        ("hidden_cov:2 + params + hidden_cov", "'hidden_cov' appears twice"),
        ("hidden_cov+accuracy", "unknown metric 'accuracy'"),
        ("accuracy", "unknown metric 'accuracy'"),
    ],
)
def test_bad_specs_are_one_line_config_errors(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        fit(spec)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        fit("params+jacobian_magic")
    for name in metric_names("rnn"):
        assert name in str(info.value)


def test_scored_metrics_include_every_component() -> None:
    config = SearchConfig(fitness=" hidden_cov:2 + params", metrics=("hidden_cov_l2", "params"))
    assert config.fitness_metrics() == ("hidden_cov", "params")
    assert config.scored_metrics() == ("hidden_cov", "params", "hidden_cov_l2")
    assert config.scoring_setup().metrics == ("hidden_cov", "params", "hidden_cov_l2")
    assert SearchConfig(fitness="params", metrics=("hidden_cov",)).scored_metrics() == (
        "params",
        "hidden_cov",
    )


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("hidden_cov:0+params", "bad weight"),
        ("hidden_cov+hidden_cov", "twice"),
        ("hidden_cov+accuracy", "unknown metric 'accuracy'.*params"),
        ("params+hidden_cov_l3", "needs at least 3 layers"),
    ],
)
def test_search_refuses_a_bad_spec_and_writes_nothing(tmp_path: Path, spec, match) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        nas_engine.search(fitness=spec, budget=2, layers=2, out=str(out), **TINY)
    assert not out.exists()


# -- the rule ----------------------------------------------------------------------------


def test_single_metric_is_the_direction_applied_value(temp_metric) -> None:
    low = temp_metric("test_low_single", direction="lower")
    assert fit(low).values({low: 3.0}) == (-3.0,)
    assert fit("params").values({"params": 3.0, "hidden_cov": 1.0}) == (3.0,)
    # No rank transform: the value, whatever the population.
    assert fit("params").rank([(5.0,), (-2.0,), (5.0,)]) == [5.0, -2.0, 5.0]
    # A weight on a single metric changes nothing (a weighted mean of one term).
    assert fit("params:3").rank([(5.0,), (-2.0,)]) == [5.0, -2.0]
    assert "single metric" in fit(low).rule and "-test_low_single" in fit(low).rule


def test_direction_is_respected(temp_metric) -> None:
    low = temp_metric("test_low", direction="lower")
    f = fit(f"{low}+params")
    rows = [
        f.values({low: 1.0, "params": 10.0}),
        f.values({low: 2.0, "params": 10.0}),
        f.values({low: 3.0, "params": 10.0}),
    ]
    assert rows[0] == (-1.0, 10.0)
    scores = f.rank(rows)
    # The lowest raw value of a lower-is-better metric ranks best.
    assert scores[0] > scores[1] > scores[2]
    assert [p[0] for p in f.percentiles(rows)] == [5 / 6, 3 / 6, 1 / 6]
    # The same population under a higher-is-better twin ranks the other way round.
    high = temp_metric("test_high")
    g = fit(f"{high}+params")
    twin = [g.values({high: v, "params": 10.0}) for v in (1.0, 2.0, 3.0)]
    assert g.rank(twin) == scores[::-1]


def test_mid_rank_percentiles_on_a_hand_made_population() -> None:
    f = fit(ENSEMBLE)
    rows = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)]
    assert f.percentiles(rows) == [(1 / 6, 1 / 6), (3 / 6, 5 / 6), (5 / 6, 3 / 6)]
    assert f.rank(rows) == [1 / 6, 4 / 6, 4 / 6]


def test_ties_share_their_mean_rank() -> None:
    f = fit(ENSEMBLE)
    rows = [(1.0, 7.0), (1.0, 7.0), (2.0, 7.0)]
    # hidden_cov: the two 1.0 hold ranks 1 and 2 -> 1.5 each; params: all tied at rank 2.
    assert f.percentiles(rows) == [(1 / 3, 1 / 2), (1 / 3, 1 / 2), (5 / 6, 1 / 2)]
    assert f.rank(rows) == [5 / 12, 5 / 12, 2 / 3]
    assert f.rank([(4.0, 4.0)] * 5) == [0.5] * 5


def test_a_population_of_one_scores_one_half() -> None:
    assert fit(ENSEMBLE).rank([(-123.0, 1e9)]) == [0.5]
    assert fit(ENSEMBLE).rank([]) == []


def test_weights() -> None:
    rows = [(1.0, 2.0), (2.0, 1.0)]
    assert fit("hidden_cov+params").rank(rows) == [0.5, 0.5]
    # hidden_cov counts three times: (3 * 1/4 + 3/4) / 4 and (3 * 3/4 + 1/4) / 4.
    assert fit("hidden_cov:3+params").rank(rows) == [0.375, 0.625]
    assert fit("hidden_cov+params:3").rank(rows) == [0.625, 0.375]
    # Only the weights' ratio matters.
    assert fit("hidden_cov:0.5+params:1.5").rank(rows) == fit("hidden_cov+params:3").rank(rows)
    rows = [(1.0, 2.0), (2.0, 1.0), (0.0, 5.0), (3.0, 3.0)]
    assert fit("hidden_cov:0.1+params:0.3").rank(rows) == fit("hidden_cov+params:3").rank(rows)


def test_equal_weighted_means_are_exact_ties() -> None:
    # Members 3 and 4 have the same rank sum (12); summed in floating point they would come
    # out as 0.6999999999999998 and 0.7000000000000001. The rule is computed exactly.
    rows = [(1.0, 1.0, 1.0), (2.0, 2.0, 3.0), (3.0, 3.0, 5.0), (4.0, 4.0, 4.0), (5.0, 5.0, 2.0)]
    scores = fit("hidden_cov+params+hidden_cov_l2").rank(rows)
    assert scores[3] == scores[4] == 0.7
    # Decimal weights are exact: 0.1 : 0.2 : 0.4 is 1 : 2 : 4, so (2, 2, 2) and (4, 3, 1) tie.
    rows = [(1.0, 1.0, 3.0), (2.0, 2.0, 2.0), (4.0, 3.0, 1.0), (3.0, 4.0, 4.0)]
    scores = fit("hidden_cov:0.1+params:0.2+hidden_cov_l2:0.4").rank(rows)
    assert scores[1] == scores[2] == 0.375


def test_invariant_to_each_metric_scale() -> None:
    rows = [(1.0, 1e6), (5.0, 2e6), (3.0, 1.5e6), (2.0, 3e6)]
    squashed = [(a / 1000.0, b**0.5) for a, b in rows]
    assert fit(ENSEMBLE).rank(rows) == fit(ENSEMBLE).rank(squashed)


populations = st.lists(
    st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(-3, 3)), min_size=1, max_size=12
)
weight_sets = st.sampled_from(["1 1 1", "2 1 1", "0.5 3 1", "0.1 0.2 0.3"])


def three(weights: str) -> Fitness:
    names = ("hidden_cov", "params", "hidden_cov_l2")
    return fit("+".join(f"{n}:{w}" for n, w in zip(names, weights.split(), strict=True)))


@given(populations, weight_sets, st.data())
def test_adding_a_worse_result_never_lowers_a_score(rows, weights, data) -> None:
    f = three(weights)
    i = data.draw(st.integers(0, len(rows) - 1))
    worse = tuple(v - data.draw(st.integers(1, 3)) for v in rows[i])
    before, after = f.rank(rows), f.rank([*rows, worse])
    assert after[i] > before[i]
    # In particular the best stays best (ties possible).
    best = max(range(len(rows)), key=lambda j: before[j])
    bottom = tuple(min(r[k] for r in rows) - 1 for k in range(3))
    grown = f.rank([*rows, bottom])
    assert grown[best] == max(grown)
    # A new result below everyone keeps the existing order exactly.
    order = sorted(range(len(rows)), key=lambda j: (-before[j], j))
    assert sorted(range(len(rows)), key=lambda j: (-grown[j], j)) == order


@given(populations, weight_sets)
def test_scores_are_in_the_open_unit_interval(rows, weights) -> None:
    scores = three(weights).rank(rows)
    assert all(0 < s < 1 for s in scores)
    # Reordering the population only reorders the scores.
    assert three(weights).rank(rows[::-1]) == scores[::-1]


def test_a_missing_or_non_finite_component_gives_no_fitness() -> None:
    f = fit(ENSEMBLE)
    assert f.values({"hidden_cov": 1.0}) is None
    assert f.values({"hidden_cov": 1.0, "params": float("nan")}) is None
    assert f.values({"hidden_cov": float("inf"), "params": 2.0}) is None
    assert f.missing({"hidden_cov": 1.0}) == ["params"]
    assert f.values({"hidden_cov": 1.0, "params": 2.0}) == (1.0, 2.0)


# -- evolution ---------------------------------------------------------------------------


def test_evolution_compares_against_its_current_population() -> None:
    f = fit("hidden_cov:2+params")
    strategy = AgingEvolution(get_space("rnn"), 0, population_size=3, tournament_size=2, fitness=f)
    metrics = [(5.0, 1.0), (1.0, 9.0), (3.0, 3.0), (0.0, 0.0), (9.0, 2.0), (2.0, 8.0)]
    told: list[tuple[float, float]] = []
    for i, (h, p) in enumerate(metrics):
        candidate = strategy.ask()
        # A recorded fitness that is deliberately meaningless: the strategy must not use it.
        result = Result(
            i, candidate.key, candidate.arch, candidate.origin, "ok", 100.0 - i,
            {"hidden_cov": h, "params": p}, {}, None, 0.0,
        )  # fmt: skip
        strategy.tell(candidate, result)
        told.append((h, p))
        alive = told[-3:]
        assert [ind["values"] for ind in strategy.population] == alive
        assert [ind.fitness.values[0] for ind in strategy.population] == f.rank(alive)
    # A failed result never joins.
    candidate = strategy.ask()
    strategy.tell(
        candidate,
        Result(9, candidate.key, candidate.arch, candidate.origin, "failed", None, {}, {}, "x", 0),
    )
    assert [ind["values"] for ind in strategy.population] == told[-3:]


# -- failures --------------------------------------------------------------------------


def test_a_failed_component_fails_the_result(temp_metric, tmp_path: Path) -> None:
    def picky(probe):  # fails for every cell with a blend node
        has_blend = any(n.op == "blend" for _, n in probe.recipe.nodes)
        return float("nan") if has_blend else float(len(probe.recipe.nodes))

    name = temp_metric("test_picky_component", picky)
    out = tmp_path / "run"
    results = nas_engine.search(
        fitness=f"hidden_cov+{name}", budget=20, strategy="random", seed=3, out=str(out), **TINY
    )
    failed = [r for r in results if not r.ok]
    ok = [r for r in results if r.ok]
    assert failed and ok, "seed 3 should draw cells with and without a blend"
    for r in failed:
        assert r.status == "failed" and r.fitness is None
        assert name in r.error
        assert "hidden_cov" in r.metrics  # measured, but no partial fitness from it
    for r in ok:
        assert 0 < r.fitness < 1
    summary = json.loads((out / "summary.json").read_text())
    assert {t["arch_id"] for t in summary["top"]} <= {r.arch_id for r in ok}


class DroppingExecutor(InProcessExecutor):
    """Reports every other evaluation as ok but without ``params`` (a broken executor)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def wait(self):
        done = []
        for candidate, evaluation in super().wait():
            self.calls += 1
            if self.calls % 2 == 0 and evaluation.status == "ok":
                kept = {k: v for k, v in evaluation.metrics.items() if k != "params"}
                evaluation = replace(evaluation, metrics=kept)
            done.append((candidate, evaluation))
        return done


def test_an_ok_evaluation_missing_a_component_is_recorded_as_failed(tmp_path: Path) -> None:
    config = SearchConfig(
        fitness=ENSEMBLE, budget=6, strategy="random", out=str(tmp_path / "run"), **TINY
    )
    outcome = run_search(config, executor=DroppingExecutor())
    dropped = outcome.results[1::2]
    assert all(r.status == "failed" and r.fitness is None for r in dropped)
    # A dead cell fails before any metric (nas_engine.health): nothing was left to drop.
    assert all("params" in r.error or r.error.startswith("degenerate cell") for r in dropped)
    assert any("params" in r.error for r in dropped)
    kept = [r for r in outcome.results[0::2] if r.ok]
    assert kept and all(r.fitness is not None for r in kept)
    assert outcome.summary["failed"] >= len(dropped)


# -- search end to end -----------------------------------------------------------------


def ensemble_search(out: Path, seed: int = 0) -> list[Result]:
    return nas_engine.search(
        fitness=ENSEMBLE,
        budget=10,
        strategy="evolution",
        seed=seed,
        out=str(out),
        population=4,
        tournament=2,
        **TINY,
    )


@pytest.fixture(scope="module")
def ensemble_runs(tmp_path_factory) -> tuple[list[Result], list[Result], Path]:
    root = tmp_path_factory.mktemp("ensemble")
    first = ensemble_search(root / "a")
    second = ensemble_search(root / "b")
    return first, second, root / "a"


def test_ensemble_search_is_deterministic(ensemble_runs) -> None:
    first, second, _ = ensemble_runs
    assert len(first) == 10
    assert [(r.arch_id, r.fitness, r.origin) for r in first] == [
        (r.arch_id, r.fitness, r.origin) for r in second
    ]
    assert all(r.origin.startswith("mutate:") for r in first[4:])


def test_recorded_fitness_is_against_the_ok_results_so_far(ensemble_runs) -> None:
    results, _, out = ensemble_runs
    f = fit(ENSEMBLE)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [rec["fitness"] for rec in records] == [r.fitness for r in results]
    so_far: list[tuple[float, ...]] = []
    for r in results:
        if r.ok:
            so_far.append(f.values(r.metrics))
            assert r.fitness == f.rank(so_far)[-1]
            assert 0 < r.fitness < 1
        else:
            assert r.fitness is None
    assert results[0].fitness == 0.5 or not results[0].ok


def test_summary_ranks_against_the_final_population(ensemble_runs) -> None:
    results, _, out = ensemble_runs
    f = fit(ENSEMBLE)
    summary = json.loads((out / "summary.json").read_text())
    assert "mid-rank percentile" in summary["fitness_rule"]
    assert summary["fitness_spec"] == ENSEMBLE
    assert summary["fitness_components"] == [
        {"metric": "hidden_cov", "direction": "higher", "weight": 1.0},
        {"metric": "params", "direction": "higher", "weight": 1.0},
    ]
    ok = [r for r in results if r.ok]
    final = dict(zip((r.index for r in ok), f.rank([f.values(r.metrics) for r in ok]), strict=True))
    top = summary["top"]
    assert len(top) == min(10, len(ok))
    expected = sorted(final, key=lambda i: (-final[i], i))
    assert [t["index"] for t in top] == expected[: len(top)]
    for t in top:
        assert t["fitness"] == final[t["index"]]
        assert t["recorded_fitness"] == results[t["index"]].fitness
        assert set(t["component_percentiles"]) == {"hidden_cov", "params"}


def test_single_metric_summary_states_its_rule(tmp_path: Path) -> None:
    results = nas_engine.search(
        fitness="params", budget=3, strategy="random", out=str(tmp_path / "r"), **TINY
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["fitness_rule"].startswith("single metric")
    assert summary["fitness_components"] == [
        {"metric": "params", "direction": "higher", "weight": 1.0}
    ]
    assert all(r.fitness == r.metrics["params"] for r in results)
    assert [t["fitness"] for t in summary["top"]] == [t["recorded_fitness"] for t in summary["top"]]


# -- command line ----------------------------------------------------------------------

TINY_ARGS = ["--hidden-size", "16", "--embedding-size", "16", "--batch-size", "8", "--bptt", "10"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_module("nas_engine.search", *args)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("hidden_cov:0+params", "bad weight '0'"),
        ("hidden_cov+hidden_cov", "appears twice"),
        ("hidden_cov+nope", "unknown metric 'nope'"),
    ],
)
def test_cli_bad_spec_exits_2_with_one_line(tmp_path: Path, spec: str, needle: str) -> None:
    out = tmp_path / "run"
    proc = run_cli("--fitness", spec, "--budget", "2", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0]
    assert not out.exists()


def test_cli_ensemble_table_shows_fitness_and_components(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(
        "--fitness", "hidden_cov:2 + params", "--budget", "5", "--population", "3",
        "--tournament", "2", "--metrics", "hidden_cov_l2", "--out", str(out), "--no-progress",
        *TINY_ARGS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "arch_id" in line).split()
    assert header[:5] == ["rank", "arch_id", "fitness", "hidden_cov", "params"]
    assert "hidden_cov_l2" not in header  # an extra metric: in the records and the report
    assert "hidden_cov_l2" in (out / "results.jsonl").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fitness_components"][0] == {
        "metric": "hidden_cov",
        "direction": "higher",
        "weight": 2.0,
    }
