"""Scoring outcomes: failures are recorded with a reason and never get a fitness."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import token_corpus

import nas_engine
from nas_engine.metrics import Measured, MetricFailure, register
from nas_engine.metrics.registry import _METRICS
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import preset
from search_spaces.rnn.probe import RNNProbe

TINY = dict(embedding_size=8, hidden_size=12, batch_size=6, bptt=8)
SEARCH_TINY = dict(embedding_size=8, hidden_size=12, batch_size=6, bptt=8)


def scorer_for(*metrics: str) -> Scorer:
    return Scorer(ScoringSetup(metrics=metrics, **TINY), token_corpus(40, 600))


def candidate(name: str = "lstm") -> Candidate:
    cell = preset(name)
    return Candidate(cell.key, cell.to_dict())


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), Measured(float("nan"))]
)
def test_non_finite_metric_value_is_a_failure(temp_metric, value) -> None:
    name = temp_metric("test_bad_value", lambda probe: value)
    evaluation = scorer_for(name).score(candidate())
    assert evaluation.status == "failed"
    assert name in evaluation.error
    assert name not in evaluation.metrics


def test_exception_in_metric_is_a_failure_with_reason(temp_metric) -> None:
    def boom(probe):
        return 1 / 0

    name = temp_metric("test_boom", boom)
    evaluation = scorer_for("hidden_cov", name).score(candidate())
    assert evaluation.status == "failed"
    assert "ZeroDivisionError" in evaluation.error
    # What was measured before the failure is kept, and is finite.
    assert all(math.isfinite(v) for v in evaluation.metrics.values())


def test_metric_failure_message_is_the_reason(temp_metric) -> None:
    def undefined(probe):
        raise MetricFailure("undefined for this cell")

    name = temp_metric("test_undefined", undefined)
    evaluation = scorer_for(name).score(candidate())
    assert evaluation.status == "failed"
    assert evaluation.error == "undefined for this cell"


def test_nan_hidden_states_fail_hidden_cov(monkeypatch) -> None:
    original = RNNProbe.entering_states

    def poisoned(self, layer):
        states = original(self, layer).clone()
        states[-1, 0, 0] = float("nan")
        return states

    monkeypatch.setattr(RNNProbe, "entering_states", poisoned)
    evaluation = scorer_for("hidden_cov").score(candidate("gru"))
    assert evaluation.status == "failed"
    assert "non-finite" in evaluation.error
    assert "hidden_cov" not in evaluation.metrics


def test_invalid_architecture_is_a_failure() -> None:
    bad = {"h_new_0": {"op": "activation_tanh", "input": ["nowhere"]}}
    evaluation = scorer_for("hidden_cov").score(Candidate("bad", bad))
    assert evaluation.status == "failed"
    assert "nowhere" in evaluation.error


def test_ok_evaluation() -> None:
    evaluation = scorer_for("hidden_cov", "params").score(candidate())
    assert evaluation.status == "ok" and evaluation.error is None
    assert set(evaluation.metrics) == {"hidden_cov", "params"}
    assert evaluation.seconds > 0


def test_search_records_failures_without_fitness(temp_metric, tmp_path) -> None:
    # Fails for every cell that has a blend node, scores the others.
    def picky(probe):
        has_blend = any(n.op == "blend" for _, n in probe.recipe.nodes)
        return float("nan") if has_blend else float(len(probe.recipe.nodes))

    name = temp_metric("test_picky", picky)
    out = tmp_path / "run"
    results = nas_engine.search(
        fitness=name, budget=30, strategy="random", seed=3, out=str(out), **SEARCH_TINY
    )
    # Dead cells fail by the health rule (nas_engine.health), whatever the metric says.
    dead = [r for r in results if r.error and r.error.startswith("degenerate cell")]
    failed = [r for r in results if r.status == "failed" and r not in dead]
    ok = [r for r in results if r.status == "ok"]
    assert failed and ok, "seed 3 should draw cells with and without a blend"
    for r in failed:
        assert r.fitness is None
        assert r.error and name in r.error
        assert any(spec["op"] == "blend" for spec in r.arch.values())
    for r in ok:
        assert r.fitness == len(r.arch)
        assert r.error is None
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: no NaN anywhere
    assert [rec["fitness"] for rec in records] == [r.fitness for r in results]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == len(failed) + len(dead) and summary["ok"] == len(ok)
    assert {t["arch_id"] for t in summary["top"]} <= {r.arch_id for r in ok}


def test_search_where_everything_fails(temp_metric, tmp_path) -> None:
    name = temp_metric("test_always_nan", lambda probe: float("nan"))
    results = nas_engine.search(
        fitness=name,
        budget=8,
        strategy="evolution",
        population=3,
        tournament=2,
        out=str(tmp_path / "run"),
        **SEARCH_TINY,
    )
    assert len(results) == 8
    assert all(r.status == "failed" and r.fitness is None for r in results)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["top"] == [] and summary["failed"] == 8


def test_lower_is_better_metric_is_negated(temp_metric, tmp_path) -> None:
    name = temp_metric("test_nodes_low", lambda p: float(len(p.recipe.nodes)), "lower")
    results = nas_engine.search(
        fitness=name, budget=6, strategy="random", out=str(tmp_path / "r"), **SEARCH_TINY
    )
    assert any(r.ok for r in results)
    for r in results:
        if r.ok:
            assert r.fitness == -len(r.arch) == -r.metrics[name]
        else:
            assert r.error.startswith("degenerate cell")


def test_registering_twice_is_refused(temp_metric) -> None:
    temp_metric("test_once", lambda p: 1.0)
    with pytest.raises(ValueError, match="registered twice"):
        register("test_once", space="rnn", direction="higher", needs=set(), description="")(
            lambda p: 2.0
        )
    with pytest.raises(ValueError, match="direction"):
        register("test_sideways", space="rnn", direction="sideways", needs=set(), description="")


def test_registry_is_clean_after_temporary_metrics() -> None:
    assert not [n for _, n in _METRICS if n.startswith("test_")]


def test_scorer_batch_comes_from_the_corpus() -> None:
    scorer = scorer_for("params")
    assert scorer.prober.tokens.shape == (TINY["bptt"], TINY["batch_size"])
    assert scorer.prober.tokens.dtype == torch.long
    assert scorer.prober.sizes.vocab_size == 40


def test_a_failing_metric_does_not_stop_the_metrics_after_it(temp_metric) -> None:
    def undefined(probe):
        raise MetricFailure("undefined for this cell")

    def boom(probe):
        return 1 / 0

    first = temp_metric("test_undefined_first", undefined)
    second = temp_metric("test_boom_second", boom)
    evaluation = scorer_for(first, "hidden_cov", second, "params").score(candidate())
    assert evaluation.status == "failed"
    assert "undefined for this cell" in evaluation.error
    assert "ZeroDivisionError" in evaluation.error
    # The metrics after each failure were still measured, with the values they have alone.
    alone = scorer_for("hidden_cov", "params").score(candidate())
    assert evaluation.metrics == alone.metrics


@pytest.mark.parametrize("shared", [False, True], ids=["own-embedding", "shared-embedding"])
def test_the_scoring_model_has_the_setup_s_init_gain(shared: bool) -> None:
    """The gain reaches the network a probe scores, on both ways a scorer builds it."""
    from search_spaces.rnn.probe import RNNProber

    corpus = token_corpus(40, 600)
    models = []
    for gain in (1.0, 0.5):
        prober = RNNProber(
            ScoringSetup(init_gain=gain, **TINY), corpus, torch.device("cpu"), {"entering_states:1"}
        )
        if shared:
            prober.share_embedding()
        models.append(prober.probe(preset("gru")).model)
    plain, halved = models
    assert torch.equal(plain.encoder.weight, halved.encoder.weight)
    for p, q in zip(plain.layers.parameters(), halved.layers.parameters(), strict=True):
        torch.testing.assert_close(q, 0.5 * p, rtol=1e-6, atol=0)
    halved_score = Scorer(ScoringSetup(metrics=("hidden_cov",), init_gain=0.5, **TINY), corpus)
    assert (
        scorer_for("hidden_cov").score(candidate("gru")).metrics["hidden_cov"]
        != halved_score.score(candidate("gru")).metrics["hidden_cov"]
    )


def test_blas_pools_are_single_threaded_inside_a_score_only(temp_metric) -> None:
    """numpy's and scipy's BLAS run at one thread while a score runs (their spinning threads
    would take the cores from torch's), and get their thread count back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[list[int]] = []

    def blas_threads(probe) -> float:
        seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
        return 1.0

    name = temp_metric("test_blas_threads", blas_threads)
    with threadpool_limits(limits=2, user_api="blas"):
        scorer = scorer_for(name)
        assert scorer.score(candidate()).status == "ok"
        after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert seen and seen[0] and all(n == 1 for n in seen[0])
    assert after and all(n == 2 for n in after)
