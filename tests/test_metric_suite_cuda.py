"""Every RNN metric on CUDA against the CPU (skipped without a GPU; run on the device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from nas_engine.metrics import metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import preset
from search_spaces.rnn.generator import sample_cell

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SIZES = dict(embedding_size=32, hidden_size=48, num_layers=3, batch_size=16, bptt=20)
# Smooth in the weights: equal up to float32 rounding on both devices.
CLOSE = ("params", "zen", "synflow", "hidden_synflow", "grad_norm", "ntk_trace", "jacob_cosine")


def test_every_metric_on_cuda_matches_cpu() -> None:
    metrics = tuple(metric_names("rnn"))
    cpu = Scorer(ScoringSetup(metrics=metrics, device="cpu", **SIZES))
    gpu = Scorer(ScoringSetup(metrics=metrics, device="cuda", **SIZES))
    rng = np.random.default_rng(5)
    cells = [preset("lstm"), preset("gru")] + [sample_cell(rng) for _ in range(8)]
    rows = []
    for cell in cells:
        cand = Candidate(cell.key, cell.to_dict())
        a, b = cpu.score(cand), gpu.score(cand)
        assert a.status == b.status, (a.error, b.error)
        if a.status != "ok":
            assert a.error == b.error
            continue
        for name in CLOSE:
            assert b.metrics[name] == pytest.approx(a.metrics[name], rel=1e-3), name
        rows.append((a.metrics, b.metrics))
    assert len(rows) >= 5
    # Eigenvalue-based scores amplify rounding near zero eigenvalues: the ranking must agree.
    for name in metrics:
        x = [r[0][name] for r in rows]
        y = [r[1][name] for r in rows]
        if len(set(x)) > 1:
            assert kendalltau(x, y).statistic > 0.8, (name, x, y)
