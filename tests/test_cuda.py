"""The CUDA scoring path (skipped without a GPU; run on the device machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import preset
from search_spaces.rnn.generator import sample_cell

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SIZES = dict(embedding_size=32, hidden_size=48, num_layers=3, batch_size=16, bptt=20)


def _cells() -> list:
    rng = np.random.default_rng(3)
    return [preset("lstm"), preset("gru")] + [sample_cell(rng) for _ in range(8)]


def test_cuda_scores_match_cpu() -> None:
    metrics = ("hidden_cov", "hidden_cov_l2", "hidden_cov_l3", "params")
    cpu = Scorer(ScoringSetup(metrics=metrics, device="cpu", **SIZES))
    gpu = Scorer(ScoringSetup(metrics=metrics, device="cuda", **SIZES))
    assert gpu.tokens.is_cuda
    cpu_scores, gpu_scores = [], []
    for cell in _cells():
        cand = Candidate(cell.key, cell.to_dict())
        a, b = cpu.score(cand), gpu.score(cand)
        assert a.status == b.status == "ok", (a.error, b.error)
        assert a.metrics["params"] == b.metrics["params"]
        cpu_scores.append([a.metrics[m] for m in metrics[:3]])
        gpu_scores.append([b.metrics[m] for m in metrics[:3]])
    # The same weights (drawn on the CPU) give the same scores up to float32 rounding, which
    # near-zero eigenvalues amplify; the ranking must agree.
    cpu_arr, gpu_arr = np.array(cpu_scores), np.array(gpu_scores)
    for j in range(3):
        tau = kendalltau(cpu_arr[:, j], gpu_arr[:, j]).statistic
        assert tau > 0.9, (metrics[j], cpu_arr[:, j], gpu_arr[:, j])
    lstm_gap = np.abs(cpu_arr[0] - gpu_arr[0]) / np.abs(cpu_arr[0])
    assert (lstm_gap < 1e-3).all(), lstm_gap


def test_cuda_search_runs(tmp_path) -> None:
    import nas_engine

    results = nas_engine.search(
        budget=6,
        population=3,
        tournament=2,
        device="cuda",
        out=str(tmp_path / "run"),
        embedding_size=32,
        hidden_size=48,
        batch_size=16,
        bptt=20,
    )
    assert len(results) == 6
    assert all(r.ok for r in results), [r.error for r in results]
