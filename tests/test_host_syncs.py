"""No host synchronisation inside the step loops.

On a GPU the steps of a recurrence are queued ahead of the device, and a batch's forwards
overlap on CUDA streams, only while nothing in the loop waits for a result: a value read back
(``.item()``, ``if tensor``), a boolean mask, ``nonzero``, ``unique``. The CPU tests watch
every operator the loops dispatch and fail on those (tests/helpers.py, ``HostSyncWatch``);
the CUDA tests run the same forwards, and a scorer's launch phase, under torch's own
synchronisation detector.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import (
    LOGS_ZIP,
    REPO_ROOT,
    HostSyncWatch,
    cuda_syncs_counted,
    cuda_syncs_forbidden,
    require,
    tiny_setup,
)

from nas_engine.metrics import eig_score
from nas_engine.result import Candidate
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, preset
from search_spaces.rnn.batch import CellBatch
from search_spaces.rnn.batched import BatchedScorer
from search_spaces.rnn.compiled import GatheredRows
from search_spaces.rnn.generator import sample_cell
from search_spaces.rnn.graphs import StepGraphs, repeat_eagerly
from search_spaces.rnn.model import RecipeCell

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cells() -> list[Recipe]:
    rng = np.random.default_rng(3)
    return [preset(n) for n in ("rnn", "lstm", "gru")] + [sample_cell(rng) for _ in range(9)]


CELLS = _cells()


def _model(recipe: Recipe, device: str = "cpu") -> RNNLanguageModel:
    sizes = ModelSizes(vocab_size=60, embedding_size=10, hidden_size=12, num_layers=3)
    torch.manual_seed(1)
    return RNNLanguageModel(recipe, sizes).to(device).eval()


def test_the_watch_sees_what_would_wait_for_the_device() -> None:
    """The watch itself: each of these would synchronise on a GPU."""
    x = torch.randn(4, 3)
    waits = [
        lambda: x.sum().item(),
        lambda: bool(x[0, 0] > 0),
        lambda: x[x > 0],
        lambda: torch.unique(x),
        lambda: x.nonzero(),
        lambda: torch.equal(x, x),
    ]
    for wait in waits:
        with HostSyncWatch() as watch:
            wait()
        assert watch.syncs, wait
    with HostSyncWatch() as watch:
        x.index_select(0, torch.tensor([2, 0])).add_(1).mul(x[1:3])
    assert watch.syncs == []


@pytest.mark.parametrize("index", range(len(CELLS)))
def test_the_compiled_step_loops_do_not_wait_for_the_device(index: int) -> None:
    """The plain loop (with entering states and activations kept) and the fixed loop, over a
    dense and a gathered input projection."""
    model = _model(CELLS[index])
    cell = model.layers[0]
    program = cell.program
    weights = program.weights(cell)
    tokens = torch.randint(0, 60, (7, 4), generator=torch.Generator().manual_seed(index))
    dense = program.project(weights, model.encoder(tokens))
    distinct, inverse = torch.unique(tokens, return_inverse=True)
    table = program.project(weights, model.encoder(distinct))
    gathered = None if table is None else GatheredRows(table, inverse)
    sequence = {"steps": 7, "batch_size": 4, "hidden_size": 12, "like": model.encoder.weight}
    with torch.no_grad(), HostSyncWatch() as watch:
        for projected in (dense, gathered):
            program.run(weights, projected, None, entering=True, activations=True, **sequence)
            program.run_fixed(weights, projected, repeat=repeat_eagerly, **sequence)
    assert watch.syncs == []


def test_a_forward_of_the_entering_states_waits_only_for_the_cpu_token_gather() -> None:
    """The whole lean forward through three layers, plain and fixed: the one operator that
    would wait is the CPU's distinct-token search, which a GPU forward skips."""
    tokens = torch.randint(0, 60, (8, 5), generator=torch.Generator().manual_seed(0))
    for recipe in CELLS:
        model = _model(recipe)
        for repeat in (None, repeat_eagerly):
            with torch.no_grad(), HostSyncWatch() as watch:
                model.entering_states(tokens, 3, repeat)
            assert watch.syncs == ["_unique2"]


@pytest.mark.parametrize("fixed", [False, True], ids=["plain", "fixed"])
def test_a_cell_batch_step_loop_does_not_wait_for_the_device(fixed: bool) -> None:
    cells = [RecipeCell(r, 10, 12) for r in CELLS]
    batch = CellBatch(cells)
    x = torch.randn(6, 4, 10)
    with HostSyncWatch() as watch:
        batch.entering_states(x, repeat_eagerly if fixed else None)
    assert watch.syncs == []


def test_a_scorers_cell_batch_phase_does_not_wait_for_the_device() -> None:
    """The models built from the shared stream, the CellBatch's plan and its steps: nothing
    that would make the host wait (the CPU skips only the plan's one copy to the device)."""
    scorer = BatchedScorer(tiny_setup(cell_batch=True))
    candidates = [Candidate(f"c{i}", r.to_dict()) for i, r in enumerate(CELLS)]
    scorer.score_batch(candidates)  # the weight stream grown to these cells
    with HostSyncWatch() as watch:
        scorer._run_cell_batch(candidates)
    assert len(scorer._launched) == len(CELLS)
    assert watch.syncs == []


@cuda
def test_cuda_forwards_run_without_a_host_synchronisation() -> None:
    """torch's detector raises on a synchronisation: the lean forward of every cell, with and
    without CUDA graphs (after one warm-up recording, which sets up a stream's pool), and a
    cell batch's steps."""
    tokens = torch.randint(0, 60, (8, 5), generator=torch.Generator().manual_seed(0)).cuda()
    graphs = StepGraphs("cuda")
    models = [_model(recipe, "cuda") for recipe in CELLS]
    with torch.no_grad():
        models[0].entering_states(tokens, 3, graphs)
        torch.cuda.synchronize()
        with cuda_syncs_forbidden():
            for model in models:
                model.entering_states(tokens, 3)
                model.entering_states(tokens, 3, graphs)
    batch = CellBatch([RecipeCell(r, 10, 12).cuda() for r in CELLS])
    x = torch.randn(6, 4, 10, device="cuda")
    batch.entering_states(x)
    torch.cuda.synchronize()
    with cuda_syncs_forbidden():
        batch.entering_states(x)
        batch.entering_states(x, repeat_eagerly)
    assert graphs.failure is None


@cuda
@pytest.mark.parametrize("cuda_graphs", [False, True], ids=["eager", "graphs"])
@pytest.mark.parametrize("cell_batch", [False, True], ids=["streams", "cell_batch"])
def test_a_batchs_forwards_are_launched_on_cuda_without_a_host_synchronisation(
    cuda_graphs: bool, cell_batch: bool
) -> None:
    """A BatchedScorer's launch phase (models built from the shared weight stream, then the
    forwards queued on side streams, or the cells' first layers as one CellBatch whose plan
    reaches the device in one pinned copy) never waits for the device, so the streams
    overlap. The first batch grows the weight stream (a copy to the device); the second
    batch's cells need no more of it."""
    setup = tiny_setup(device="cuda", cuda_graphs=cuda_graphs, cell_batch=cell_batch)
    scorer = BatchedScorer(setup, streams=3)
    candidates = [Candidate(f"c{i}", r.to_dict()) for i, r in enumerate(CELLS)]
    first = scorer.score_batch(candidates)
    assert all(ev.ok for ev in first)
    torch.cuda.synchronize()
    # The same cells again: a launch that raised would be silently left to score(), so the
    # test checks that every forward was launched.
    with cuda_syncs_forbidden():
        if cell_batch:
            scorer._run_cell_batch(candidates)
        else:
            scorer._launch_forwards(candidates)
    assert len(scorer._launched) == len(CELLS)
    second = [scorer.score(c) for c in candidates]
    for a, b in zip(first, second, strict=True):
        assert b.metrics["hidden_cov"] == pytest.approx(a.metrics["hidden_cov"], rel=1e-5)


@cuda
def test_eig_score_on_cuda_waits_for_the_device_at_most_once() -> None:
    """The correlation and its score on the device read one value back, where finite input,
    the constant rows and the factorisation's success each used to be a wait; two reads of a
    value are counted as two, so the detector counts."""
    rows = torch.randn(50, 300, dtype=torch.float64, device="cuda")
    rows[7] = 0.5
    expected = eig_score(rows.cpu())
    eig_score(rows)  # the solver's handles and workspaces made before counting
    torch.cuda.synchronize()
    with cuda_syncs_counted() as control:
        float(rows.sum())
        int(rows.argmax())
    with cuda_syncs_counted() as syncs:
        score, constant = eig_score(rows)
    assert len(control) == 2
    assert len(syncs) <= 1
    assert constant == expected[1] == 1
    assert score == pytest.approx(expected[0], rel=1e-9)


def test_the_launch_count_runs_and_graphs_launch_fewer(tmp_path) -> None:
    """experiments/count_launches.py on three logs at the fast sizes: every forward counted,
    a graph forward launching the first step, T - 2 replays and what lies outside the steps."""
    out = tmp_path / "count.json"
    script = REPO_ROOT / "experiments" / "count_launches.py"
    args = ["--n", "3", "--fast", "--logs", str(require(LOGS_ZIP)), "--json", str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["n"] == 3 and report["metric_launches"] > 0
    for row in report["rows"]:
        steps = report["sizes"]["bptt"] - 1
        assert row["forward_launches"] >= row["forward_ops_per_step"] * steps
        assert row["forward_graphs_launches"] < row["forward_launches"]
        assert row["forward_fixed_ops_per_step"] > row["forward_ops_per_step"] > 0
        assert row["forward_graphs_launches_outside_steps"] >= 0


@cuda
def test_a_hidden_cov_score_on_cuda_waits_for_the_device_at_most_once() -> None:
    """A whole score (model from the shared stream, lean forward, correlation and its score on
    the device) after a first pass over the same cells has grown the weight stream: the one
    wait is the score's read-back."""
    scorer = BatchedScorer(tiny_setup(device="cuda"))
    candidates = [Candidate(f"c{i}", r.to_dict()) for i, r in enumerate(CELLS)]
    first = [scorer.score(c) for c in candidates]
    torch.cuda.synchronize()
    with cuda_syncs_counted() as syncs:
        second = [scorer.score(c) for c in candidates]
    assert all(ev.ok for ev in first + second)
    assert len(syncs) <= len(CELLS), syncs[:3]
