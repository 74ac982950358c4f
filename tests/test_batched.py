"""Batched scoring: the same evaluations as scoring one candidate at a time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import tiny_setup, token_corpus

from nas_engine.result import CELL_BATCH_FALLBACK, Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import RNNLanguageModel, preset
from search_spaces.rnn.batch import CellBatch
from search_spaces.rnn.batched import BatchedScorer
from search_spaces.rnn.generator import sample_cell

METRICS = ("hidden_cov", "hidden_cov_l2", "activation_distance", "params")


def _setup(device: str = "cpu", metrics: tuple[str, ...] = METRICS) -> ScoringSetup:
    # Two layers: hidden_cov_l2 reads the second (and so is refused by cell batches).
    return tiny_setup(
        metrics=metrics, embedding_size=8, num_layers=2, batch_size=5, bptt=7, seed=4, device=device
    )


def _candidates() -> list[Candidate]:
    rng = np.random.default_rng(3)
    recipes = [preset("lstm"), sample_cell(rng), preset("gru"), sample_cell(rng)]
    cands = [Candidate(r.key, r.to_dict()) for r in recipes]
    # An invalid recipe in the middle: a failed evaluation, the others unaffected.
    bad = Candidate("bad", {"h_new_0": {"op": "linear", "input": ["nowhere"]}})
    return [*cands[:2], bad, *cands[2:]]


def test_batch_equals_one_at_a_time() -> None:
    corpus = token_corpus()
    cands = _candidates()
    single = [Scorer(_setup(), corpus).score(c) for c in cands]
    before = torch.get_rng_state()
    batched = BatchedScorer(_setup(), corpus).score_batch(cands)
    assert torch.equal(torch.get_rng_state(), before)
    assert len(batched) == len(cands)
    for one, many in zip(single, batched, strict=True):
        assert many.status == one.status
        assert many.error == one.error
        assert dict(many.details) == dict(one.details)
        # Same networks, same input: the scores agree to rounding (the model build differs
        # only in where the embedding comes from).
        assert set(many.metrics) == set(one.metrics)
        for name, value in one.metrics.items():
            assert many.metrics[name] == pytest.approx(value, rel=1e-12), name
    assert batched[2].status == "failed" and "nowhere" in batched[2].error
    assert sum(e.status == "ok" for e in batched) >= 3


def test_score_batch_with_a_plain_scorer_and_an_empty_batch() -> None:
    corpus = token_corpus()
    cands = _candidates()[:2]
    plain = Scorer(_setup(metrics=("hidden_cov",)), corpus)
    got = plain.score_batch(cands)
    expected = [plain.score(c) for c in cands]
    assert [g.metrics for g in got] == [e.metrics for e in expected]
    batched = BatchedScorer(_setup(metrics=("hidden_cov",)), corpus)
    assert batched.score_batch([]) == []
    assert [g.metrics for g in batched.score_batch(cands)] == [e.metrics for e in expected]


def test_batched_scorer_shares_one_embedding() -> None:
    scorer = BatchedScorer(_setup(metrics=("hidden_cov",)), token_corpus())
    first = scorer.probe(preset("lstm"))
    second = scorer.probe(preset("gru"))
    assert first.model.encoder.weight.data_ptr() == scorer.prober.shared.weight.data_ptr()
    assert second.model.encoder.weight.data_ptr() == scorer.prober.shared.weight.data_ptr()


def test_streams_must_be_positive() -> None:
    with pytest.raises(ValueError, match="streams"):
        BatchedScorer(_setup(), token_corpus(), streams=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_on_streams_matches_one_at_a_time() -> None:
    """The forwards launched on side streams give what scoring one by one on the device
    gives (the same kernels on the same data; only their scheduling differs)."""
    corpus = token_corpus()
    cands = _candidates()
    setup = _setup("cuda", ("hidden_cov", "hidden_cov_l2", "params"))
    single = [Scorer(setup, corpus).score(c) for c in cands]
    batched = BatchedScorer(setup, corpus, streams=2).score_batch(cands)
    for one, many in zip(single, batched, strict=True):
        assert many.status == one.status
        for name, value in one.metrics.items():
            assert many.metrics[name] == pytest.approx(value, rel=1e-6), name


# ---------------------------------------------------------------------- cell batches
def _cell_batch_setup(**changes) -> ScoringSetup:
    return dataclasses.replace(_setup(metrics=("hidden_cov", "params")), cell_batch=True, **changes)


def _more_candidates(n: int = 9) -> list[Candidate]:
    rng = np.random.default_rng(8)
    return [Candidate("", sample_cell(rng).to_dict()) for _ in range(n)]


def _assert_same_evaluations(got, expected, rel: float) -> None:
    assert len(got) == len(expected)
    for one, many in zip(expected, got, strict=True):
        assert (many.status, many.error) == (one.status, one.error)
        assert set(many.metrics) == set(one.metrics)
        for name, value in one.metrics.items():
            assert many.metrics[name] == pytest.approx(value, rel=rel), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_cell_batch_scores_what_one_at_a_time_scores(dtype: str, request) -> None:
    """The batch's first layers run together give each candidate its own score (to the
    float32 rounding of sums added in another order; 1e-10 in float64), the invalid one in
    the middle failing alone, a candidate given twice scored twice."""
    if dtype == "float64":
        request.getfixturevalue("float64_default")
    corpus = token_corpus()
    cands = [*_candidates(), *_more_candidates(), _candidates()[0]]
    single = [Scorer(_setup(metrics=("hidden_cov", "params")), corpus).score(c) for c in cands]
    batched = BatchedScorer(_cell_batch_setup(), corpus).score_batch(cands)
    _assert_same_evaluations(batched, single, rel=1e-4 if dtype == "float32" else 1e-10)
    assert batched[2].status == "failed" and "nowhere" in batched[2].error
    assert sum(e.status == "ok" for e in batched) == len(cands) - 1


def test_a_cell_batch_replaces_the_cells_own_forwards(monkeypatch) -> None:
    """With cell batches the probes never run their own forward: a model whose own forward
    is broken still scores, in a batch (and fails, with the reason, alone or without)."""
    corpus = token_corpus()
    cands = _more_candidates(5)
    with_batches = BatchedScorer(_cell_batch_setup(), corpus)
    plain = BatchedScorer(_setup(metrics=("hidden_cov", "params")), corpus)
    expected = plain.score_batch(cands)

    def broken(self, *args, **kwargs):
        raise RuntimeError("the cell's own forward ran")

    monkeypatch.setattr(RNNLanguageModel, "entering_states", broken)
    _assert_same_evaluations(with_batches.score_batch(cands), expected, rel=1e-4)
    alone = with_batches.score_batch(cands[:1])
    assert alone[0].status == "failed" and "own forward ran" in alone[0].error
    assert all("own forward ran" in e.error for e in plain.score_batch(cands))


def test_a_failing_cell_batch_leaves_each_candidate_to_its_own_forward(monkeypatch) -> None:
    corpus = token_corpus()
    cands = _more_candidates(4)
    expected = BatchedScorer(_setup(metrics=("hidden_cov", "params")), corpus).score_batch(cands)

    def broken(self, *args, **kwargs):
        raise RuntimeError("the batch failed")

    monkeypatch.setattr(CellBatch, "entering_states", broken)
    scorer = BatchedScorer(_cell_batch_setup(), corpus)
    assert scorer.cell_batch_failure is None
    fell_back = scorer.score_batch(cands)
    _assert_same_evaluations(fell_back, expected, rel=1e-12)
    assert all(
        e.details[CELL_BATCH_FALLBACK] == "RuntimeError: the batch failed" for e in fell_back
    )
    assert scorer.cell_batch_failure == "RuntimeError: the batch failed"
    monkeypatch.undo()  # the next batch runs together again, and says nothing of the last one
    assert all(CELL_BATCH_FALLBACK not in e.details for e in scorer.score_batch(cands))


def test_cell_batches_are_refused_where_they_cannot_serve() -> None:
    corpus = token_corpus()
    for metrics in [("hidden_cov_l2",), ("hidden_cov", "activation_distance"), ("params",)]:
        with pytest.raises(ValueError, match="read more than the first layer"):
            BatchedScorer(_cell_batch_setup(metrics=metrics), corpus)
    with pytest.raises(ValueError, match="the bert space does not implement it"):
        BatchedScorer(
            ScoringSetup(space="bert", metrics=("params",), batch_size=4, bptt=8, cell_batch=True),
            corpus,
        )
    probe = BatchedScorer(_setup(metrics=("hidden_cov_l2",)), corpus).probe(preset("lstm"))
    with pytest.raises(ValueError, match="first layer alone"):
        probe.supply_entering_states(torch.zeros(7, 5, 16))
    probe = BatchedScorer(_cell_batch_setup(), corpus).probe(preset("lstm"))
    with pytest.raises(ValueError, match="shape"):
        probe.supply_entering_states(torch.zeros(7, 5, 15))
    probe.entering_states(1)
    with pytest.raises(ValueError, match="already run"):
        probe.supply_entering_states(torch.zeros(7, 5, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_cell_batch_matches_one_at_a_time(graphs: bool) -> None:
    corpus = token_corpus()
    cands = [*_candidates(), *_more_candidates()]
    single = [Scorer(_setup(metrics=("hidden_cov", "params")), corpus).score(c) for c in cands]
    scorer = BatchedScorer(_cell_batch_setup(device="cuda", cuda_graphs=graphs), corpus)
    _assert_same_evaluations(scorer.score_batch(cands), single, rel=1e-4)
    if graphs:
        assert scorer.prober.step_graphs.failure is None


# ---------------------------------------------------------------------- the search's --fast
def _sizes_after_parsing(*argv: str) -> tuple[int, int, int, int, int]:
    from nas_engine.cli.search import _apply_fast, search_parser

    parser = search_parser()
    args = parser.parse_args(list(argv))
    if args.fast:
        _apply_fast(parser, args, list(argv))
    return args.embedding_size, args.hidden_size, args.batch_size, args.bptt, args.layers


def test_fast_sets_the_fast_sizes_and_explicit_sizes_win() -> None:
    from nas_engine.config import FAST_SIZES

    fast = (FAST_SIZES.embedding_size, FAST_SIZES.hidden_size, FAST_SIZES.batch_size)
    # Unset network sizes stay None: the space's own defaults fill them (SearchConfig).
    assert _sizes_after_parsing() == (None, None, 50, 70, None)
    assert _sizes_after_parsing("--fast") == (*fast, FAST_SIZES.bptt, None)
    assert _sizes_after_parsing("--fast", "--bptt", "9") == (*fast, 9, None)
    # Given explicitly, even at its default value, a size is kept.
    assert _sizes_after_parsing("--hidden-size", "600", "--fast")[1] == 600
    assert _sizes_after_parsing("--embedding-size=70", "--fast")[0] == 70


def test_fast_search_records_the_fast_sizes(tmp_path) -> None:
    import json

    from helpers import run_module

    from nas_engine.config import FAST_SIZES

    out = tmp_path / "run"
    proc = run_module(
        "nas_engine.search", "--fast", "--budget", "2", "--strategy", "random",
        "--layers", "2", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    flat = json.dumps(config)
    for name in ("embedding_size", "hidden_size", "batch_size", "bptt"):
        assert f'"{name}": {getattr(FAST_SIZES, name)}' in flat, name
    assert '"layers": 2' in flat


def _live_tensors() -> int:
    import gc

    gc.collect()
    # type(), not isinstance(): the latter reads __class__, which warns on deprecated torch objects.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


@pytest.mark.parametrize("cell_batch", [False, True], ids=["suite", "cell_batches"])
def test_scoring_many_candidates_keeps_nothing_alive(cell_batch: bool) -> None:
    """A worker scores thousands of candidates with one scorer: nothing it computes for one
    candidate (models, passes, gradients, launched probes, a batch's CellBatch and states)
    may outlive that candidate, or memory grows with every architecture
    (experiments/bench_memory.py measures the RSS)."""
    metrics = (*METRICS, "jacob_cov", "synflow", "grad_norm", "ntk_trace", "zen")
    setup = _cell_batch_setup() if cell_batch else _setup(metrics=metrics)
    scorer = BatchedScorer(setup, token_corpus())
    rng = np.random.default_rng(11)
    cells = [Candidate("", sample_cell(rng).to_dict()) for _ in range(24)]
    scorer.score_batch(cells[:4])  # warm-up: anything made once per scorer exists by now
    before = _live_tensors()
    for start in range(4, len(cells), 5):
        evaluations = scorer.score_batch(cells[start : start + 5])
        assert len(evaluations) == len(cells[start : start + 5])
    del evaluations
    assert _live_tensors() <= before
