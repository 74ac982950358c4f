"""Training-free metrics: eig_score and hidden_cov against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import HostSyncWatch, token_corpus
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nas_engine.corpus import first_batch
from nas_engine.metrics import MetricFailure, eig, eig_score, get_metric, metric_names
from nas_engine.parameters import count_parameters
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, preset
from search_spaces.rnn.generator import sample_cell
from search_spaces.rnn.probe import RNNProbe

K = 1e-5
DEAD = -(math.log(K) + 1 / K)  # the score term of one zero eigenvalue


def numpy_eig_score(rows: np.ndarray) -> float:
    """metrics.md, written out with numpy: Pearson correlation, eigvalsh, the formula."""
    corr = np.corrcoef(np.asarray(rows, dtype=np.float64))
    lam = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(lam + K) + 1.0 / (lam + K)))


# ---------------------------------------------------------------------- eig_score
# Every eig_score test runs both ways: host BLAS and LAPACK (the CPU's way) and all in torch
# with one read-back (the way on a GPU), here on CPU tensors.
PATHS = pytest.mark.parametrize("in_torch", [False, True], ids=["host", "torch"])


@PATHS
def test_orthogonal_rows_give_identity_correlation(in_torch: bool) -> None:
    rows = torch.tensor([[1.0, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    score, constant = eig_score(rows, in_torch=in_torch)
    assert constant == 0
    assert score == pytest.approx(-3 * (math.log(1 + K) + 1 / (1 + K)), rel=1e-12)


@PATHS
def test_duplicated_row_gives_a_zero_eigenvalue(in_torch: bool) -> None:
    rows = torch.tensor([[0.3, 1.0, -2.0, 0.5], [0.3, 1.0, -2.0, 0.5]])
    score, _ = eig_score(rows, in_torch=in_torch)
    expected = DEAD - (math.log(2 + K) + 1 / (2 + K))
    assert score == pytest.approx(expected, rel=1e-6)


@PATHS
def test_matches_numpy_on_random_matrices(in_torch: bool) -> None:
    rng = np.random.default_rng(0)
    for n, m in [(3, 5), (8, 40), (16, 80), (12, 12), (20, 10)]:
        rows = rng.normal(size=(n, m)) * rng.uniform(0.1, 10, size=(n, 1)) + rng.normal(size=(n, 1))
        score, constant = eig_score(torch.from_numpy(rows), in_torch=in_torch)
        assert constant == 0
        assert score == pytest.approx(numpy_eig_score(rows), rel=1e-8)


@PATHS
@settings(max_examples=60, deadline=None)
@given(
    rows=hnp.arrays(
        np.float64,
        st.tuples(st.integers(2, 8), st.integers(3, 12)),
        elements=st.floats(-100, 100, allow_nan=False, width=32),
    )
)
def test_matches_numpy_property(rows: np.ndarray, in_torch: bool) -> None:
    spread = rows.std(axis=1)
    # Keep rows well away from constant (the numpy formula is undefined there).
    if (spread < 1e-3 * np.maximum(np.abs(rows).max(axis=1), 1)).any():
        return
    score, constant = eig_score(torch.from_numpy(rows), in_torch=in_torch)
    assert constant == 0
    expected = numpy_eig_score(rows)
    assert score == pytest.approx(expected, rel=1e-6, abs=1e-6 * abs(DEAD))


@PATHS
def test_invariances(in_torch: bool) -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(6, 30))
    base, _ = eig_score(torch.from_numpy(rows), in_torch=in_torch)
    scaled = rows * rng.uniform(0.5, 5, size=(6, 1)) + rng.normal(size=(6, 1)) * 10
    assert eig_score(torch.from_numpy(scaled), in_torch=in_torch)[0] == pytest.approx(
        base, rel=1e-9
    )
    shuffled = rows[rng.permutation(6)][:, rng.permutation(30)]
    assert eig_score(torch.from_numpy(shuffled), in_torch=in_torch)[0] == pytest.approx(
        base, rel=1e-9
    )
    # float32 input is scored in float64
    assert eig_score(torch.from_numpy(rows).float(), in_torch=in_torch)[0] == pytest.approx(
        base, rel=1e-5
    )


@PATHS
def test_constant_rows_count_as_zero_eigenvalues(in_torch: bool) -> None:
    rng = np.random.default_rng(2)
    varying = rng.normal(size=(3, 10))
    rows = np.vstack([varying[:1], np.full((1, 10), 0.7), varying[1:], np.zeros((1, 10))])
    score, constant = eig_score(torch.from_numpy(rows), in_torch=in_torch)
    assert constant == 2
    assert score == pytest.approx(numpy_eig_score(varying) + 2 * DEAD, rel=1e-9)
    assert math.isfinite(score)


@PATHS
def test_rows_stored_as_columns_score_the_same(in_torch: bool) -> None:
    """hidden_cov passes the transpose of a (samples, units) block: scored in that layout, it
    must give what numpy gives for the rows, constant rows included."""
    rng = np.random.default_rng(3)
    varying = rng.normal(size=(5, 40)) * rng.uniform(0.1, 10, size=(5, 1))
    rows = np.vstack([varying[:2], np.full((1, 40), -3.0), varying[2:]])
    stored = torch.from_numpy(np.ascontiguousarray(rows.T)).float()  # (samples, units)
    view = stored.t()
    assert not view.is_contiguous()
    score, constant = eig_score(view, in_torch=in_torch)
    assert constant == 1
    assert score == pytest.approx(
        numpy_eig_score(stored.t().double().numpy()[[0, 1, 3, 4, 5]]) + DEAD, rel=1e-7
    )
    assert score == pytest.approx(eig_score(view.contiguous(), in_torch=in_torch)[0], rel=1e-9)
    with pytest.raises(MetricFailure, match="non-finite"):
        bad = stored.clone()
        bad[7, 2] = float("nan")
        eig_score(bad.t(), in_torch=in_torch)


def test_indefinite_matrix_falls_back_to_clamped_eigenvalues() -> None:
    """The score comes from a Cholesky factor of correlation + kI; where rounding would make
    that indefinite (an eigenvalue below -k), the eigenvalues are taken and clamped at 0."""
    from nas_engine.metrics.eig import _log_barrier

    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    lam = np.array([1.7, 1.3, -1e-3])
    matrix = torch.from_numpy(np.triu(q @ np.diag(lam) @ q.T))  # upper triangle given
    expected = -(math.log(1.7 + K) + 1 / (1.7 + K) + math.log(1.3 + K) + 1 / (1.3 + K)) + DEAD
    assert _log_barrier(matrix, K) == pytest.approx(expected, rel=1e-9)
    positive = torch.from_numpy(q @ np.diag([1.7, 1.3, 0.0]) @ q.T)
    assert _log_barrier(positive, K) == pytest.approx(expected, rel=1e-6)


def test_indefinite_matrix_falls_back_to_clamped_eigenvalues_in_torch(monkeypatch) -> None:
    """The torch path's factorisation reports an indefinite matrix in ``info``, and a score
    whose factorisation failed comes from the clamped eigenvalues instead: the same number."""
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    indefinite = torch.from_numpy(q @ np.diag([1.7, 1.3, -1e-3]) @ q.T)
    assert int(eig._cholesky_barrier(indefinite, K)[1]) != 0
    rows = torch.from_numpy(np.random.default_rng(5).normal(size=(6, 20)))
    expected, _ = eig_score(rows, in_torch=True)
    factorise = eig._cholesky_barrier

    def failing(correlation: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
        barrier, _ = factorise(correlation, k)
        return barrier * float("nan"), torch.tensor(1, dtype=torch.int32)

    monkeypatch.setattr(eig, "_cholesky_barrier", failing)
    assert eig_score(rows, in_torch=True)[0] == pytest.approx(expected, rel=1e-9)


def test_the_torch_path_reads_one_value_back() -> None:
    """On a GPU each read of a value waits for the device: the torch path dispatches none
    before its one read-back of every result at once."""
    rows = torch.randn(12, 40, dtype=torch.float64)
    rows[3] = 2.0  # a constant row: counted without a read-back
    with HostSyncWatch() as watch:
        score, constant = eig_score(rows.t().contiguous().t(), in_torch=True)
    assert watch.syncs == [] and constant == 1
    assert score == pytest.approx(eig_score(rows)[0], rel=1e-9)


@PATHS
@pytest.mark.parametrize("n", [1, 2, 5])
def test_all_constant_rows_give_a_finite_score(n: int, in_torch: bool) -> None:
    rows = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 7)
    score, constant = eig_score(rows, in_torch=in_torch)
    assert constant == n
    assert math.isfinite(score)
    assert score == pytest.approx(n * DEAD, rel=1e-12)


@PATHS
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    m=st.integers(2, 20),
    value=st.floats(-1e3, 1e3, allow_nan=False),
    position=st.integers(0, 8),
)
def test_adding_a_constant_row_never_raises_the_score(
    seed: int, n: int, m: int, value: float, position: int, in_torch: bool
) -> None:
    rows = np.random.default_rng(seed).normal(size=(n, m))
    before, _ = eig_score(torch.from_numpy(rows), in_torch=in_torch)
    with_dead = np.insert(rows, min(position, n), np.full(m, value), axis=0)
    after, constant = eig_score(torch.from_numpy(with_dead), in_torch=in_torch)
    assert constant >= 1
    assert after < before


@PATHS
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad: float, in_torch: bool) -> None:
    rows = torch.randn(4, 6, dtype=torch.float64)
    rows[2, 3] = bad
    with pytest.raises(MetricFailure, match="non-finite"):
        eig_score(rows, in_torch=in_torch)


@PATHS
def test_non_finite_values_that_cancel_in_a_sum_still_fail(in_torch: bool) -> None:
    """+inf and -inf in one row, beside huge finite values: the check is on the row means."""
    rows = torch.randn(4, 6, dtype=torch.float64)
    rows[1, 0], rows[1, 5] = float("inf"), -float("inf")
    rows[3] = 1e300
    with pytest.raises(MetricFailure, match="non-finite values in the rows"):
        eig_score(rows, what="the rows", in_torch=in_torch)
    finite = torch.randn(4, 6, dtype=torch.float64)
    finite[3] = torch.linspace(-3e38, 3e38, 6, dtype=torch.float64)  # float32's range
    assert np.isfinite(eig_score(finite, in_torch=in_torch)[0])


@PATHS
@pytest.mark.parametrize("shape", [(5,), (4, 1), (2, 3, 4)])
def test_bad_shapes_raise(shape: tuple[int, ...], in_torch: bool) -> None:
    with pytest.raises(MetricFailure):
        eig_score(torch.randn(*shape), in_torch=in_torch)


# ---------------------------------------------------------------------- hidden_cov
SIZES = ModelSizes(vocab_size=50, embedding_size=12, hidden_size=16, num_layers=3)
TOKENS = first_batch(token_corpus(50, 2000, seed=1).split("test"), batch_size=8, bptt=10)


def reference_entering_rows(recipe: Recipe, seed: int, layer: int) -> np.ndarray:
    """The (H, B*T) matrix of states entering ``layer``, built by hand with ``step``."""
    torch.manual_seed(seed)
    model = RNNLanguageModel(recipe, SIZES)
    columns = []
    with torch.no_grad():
        h = model.encoder.weight[TOKENS]  # (T, B, E)
        for cell in model.layers[:layer]:
            state = tuple(
                torch.zeros(TOKENS.shape[1], cell.hidden_size) for _ in range(cell.num_states)
            )
            outputs = []
            for t in range(TOKENS.shape[0]):
                if cell is model.layers[layer - 1]:
                    columns.append(state[0].numpy().T.copy())  # (H, B)
                state = cell.step(h[t], state)
                outputs.append(state[0])
            h = torch.stack(outputs)
    return np.hstack(columns)


def _comparison_cells() -> list[tuple[str, Recipe]]:
    rng = np.random.default_rng(9)
    return [(n, preset(n)) for n in ("rnn", "lstm", "gru")] + [
        (f"sample{i}", sample_cell(rng)) for i in range(4)
    ]


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize(
    ("name", "recipe"), _comparison_cells(), ids=[n for n, _ in _comparison_cells()]
)
def test_hidden_cov_matches_independent_numpy(
    name: str, recipe: Recipe, layer: int, float64_default
) -> None:
    rows = reference_entering_rows(recipe, seed=0, layer=layer)
    width = SIZES.embedding_size if layer == 3 else SIZES.hidden_size
    assert rows.shape == (width, TOKENS.numel())
    assert np.all(rows[:, : TOKENS.shape[1]] == 0)  # t = 0: the zero initial state
    if (rows.std(axis=1) == 0).any():
        pytest.skip("a dead unit: the plain numpy formula is undefined (see the rule tests)")
    expected = numpy_eig_score(rows)
    probe = RNNProbe(recipe, SIZES, TOKENS, seed=0)
    measured = get_metric(f"hidden_cov_l{layer}").fn(probe)
    assert measured.value == pytest.approx(expected, rel=1e-6)
    assert measured.details[f"hidden_cov_l{layer}_constant_units"] == 0
    if layer == 1:
        assert get_metric("hidden_cov").fn(probe).value == measured.value


def test_hidden_cov_float32_scorer_agrees_with_reference() -> None:
    # Default float32 end to end through the Scorer; the reference uses the same float32
    # weights and states and does the statistics in float64.
    cell = preset("lstm")
    expected = numpy_eig_score(reference_entering_rows(cell, seed=0, layer=1))
    setup = ScoringSetup(
        metrics=("hidden_cov",), embedding_size=12, hidden_size=16, batch_size=8, bptt=10
    )
    scorer = Scorer(setup, token_corpus(50, 2000, seed=1))
    assert torch.equal(scorer.prober.tokens, TOKENS)
    evaluation = scorer.score(Candidate(cell.key, cell.to_dict()))
    assert evaluation.status == "ok"
    assert evaluation.metrics["hidden_cov"] == pytest.approx(expected, rel=1e-4)


def _score(recipe: Recipe, seed: int, metrics=("hidden_cov", "hidden_cov_l2", "params")):
    setup = ScoringSetup(
        metrics=metrics, embedding_size=12, hidden_size=16, batch_size=8, bptt=10, seed=seed
    )
    scorer = Scorer(setup, token_corpus(50, 2000, seed=1))
    return scorer.score(Candidate(recipe.key, recipe.to_dict()))


def test_scores_are_deterministic_per_seed() -> None:
    cell = sample_cell(np.random.default_rng(0))
    a, b, c = _score(cell, 0), _score(cell, 0), _score(cell, 1)
    assert a.status == b.status == c.status == "ok"
    assert a.metrics == b.metrics
    assert a.metrics["hidden_cov"] != c.metrics["hidden_cov"]
    assert a.metrics["params"] == c.metrics["params"]


def test_scoring_leaves_global_rng_alone() -> None:
    cell = preset("gru")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = _score(cell, 0)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # a different global state does not change the score
    second = _score(cell, 0)
    assert first.metrics == second.metrics


def test_params_metric_counts_parameters() -> None:
    cell = preset("lstm")
    value = _score(cell, 0, metrics=("params",)).metrics["params"]
    sizes = ModelSizes(vocab_size=50, embedding_size=12, hidden_size=16, num_layers=3)
    assert value == count_parameters(RNNLanguageModel(cell, sizes))


def test_registry_lists_and_rejects() -> None:
    names = metric_names("rnn")
    assert {"hidden_cov", "hidden_cov_l1", "hidden_cov_l2", "hidden_cov_l3", "params"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(KeyError, match="unknown metric 'nope'.*hidden_cov"):
        get_metric("nope", "rnn")
    assert get_metric("hidden_cov").direction == "higher"
    assert get_metric("hidden_cov").sign == 1.0


def test_probe_rejects_bad_layers() -> None:
    probe = RNNProbe(preset("rnn"), SIZES, TOKENS, seed=0, depth=1)
    with pytest.raises(ValueError, match="layer must be in 1..3"):
        probe.entering_states(4)
    with pytest.raises(ValueError, match="depth 1"):
        probe.entering_states(2)


@pytest.fixture
def torch_threads():
    """Set torch's thread count inside the test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("by_column", [True, False])
@pytest.mark.parametrize("units", [1, 2, 7, 40])
def test_the_host_gram_matrix_in_every_layout_and_thread_count(
    torch_threads, monkeypatch, threads: int, by_column: bool, units: int
) -> None:
    """syrk on one thread, column blocks on several (for any size here): the upper
    triangle of the centred rows' Gram matrix either way, and the same score."""
    monkeypatch.setattr(eig, "BLOCKED_GRAM_MIN_WORK", 0)
    torch_threads(threads)
    rows = torch.randn(units, 31, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = rows.t().contiguous() if by_column else rows.clone()
    gram = eig._centred_gram(x, by_column)
    upper = torch.triu(torch.ones(units, units, dtype=torch.bool))
    expected = rows @ rows.t()
    torch.testing.assert_close(gram[upper], expected[upper], rtol=1e-12, atol=1e-12)
    layout = rows.t().contiguous().t() if by_column else rows
    torch_threads(1)
    one_thread = eig_score(layout)
    torch_threads(threads)
    assert eig_score(layout) == pytest.approx(one_thread, rel=1e-10)


def test_small_gram_matrices_stay_with_syrk(torch_threads, monkeypatch) -> None:
    torch_threads(2)
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(eig.torch, "mm", lambda *a, **k: calls.append(1) or real_mm(*a, **k))
    x = torch.randn(875, 64, dtype=torch.float64)
    eig._centred_gram(x, True)
    assert calls == []
    monkeypatch.setattr(eig, "BLOCKED_GRAM_MIN_WORK", 875 * 64 * 64)
    eig._centred_gram(x, True)
    assert len(calls) == 3  # threads + 1 column blocks
