"""The recurrence as one recorded step replayed (CUDA graphs): the fixed-memory step loop
that makes it possible, checked on the CPU against the plain loop, and on a GPU (skipped
without one) the recordings themselves, inside a scorer, on CUDA streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import tiny_setup

from nas_engine.config import ConfigError, SearchConfig
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, preset
from search_spaces.rnn.batched import BatchedScorer
from search_spaces.rnn.generator import mutate_cell, sample_cell
from search_spaces.rnn.graphs import StepGraphs, repeat_eagerly
from search_spaces.rnn.metrics.covariance import hidden_cov
from search_spaces.rnn.probe import RNNProbe

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cells() -> list[Recipe]:
    rng = np.random.default_rng(11)
    cells = [preset(n) for n in ("rnn", "lstm", "gru")]
    cells += [sample_cell(rng) for _ in range(12)]
    cell = preset("lstm")
    for _ in range(3):
        cell, _ = mutate_cell(cell, rng)
        cells.append(cell)
    return cells


CELLS = _cells()


def _model(recipe: Recipe, embedding: int = 12, device: str = "cpu") -> RNNLanguageModel:
    sizes = ModelSizes(vocab_size=200, embedding_size=embedding, hidden_size=16, num_layers=3)
    torch.manual_seed(5)
    return RNNLanguageModel(recipe, sizes).to(device).eval()


@pytest.mark.parametrize("index", range(len(CELLS)))
@pytest.mark.parametrize("distinct", [True, False], ids=["gathered", "dense"])
def test_fixed_step_loop_gives_the_loops_entering_states(index: int, distinct: bool) -> None:
    """Step index on the device, states updated in place, outputs written through the index:
    the same numbers as the plain loop, bit for bit, through all three layers, for tokens that
    are projected as distinct rows and gathered (mostly distinct) and as a dense batch."""
    model = _model(CELLS[index], embedding=12 if distinct else 16)
    torch.manual_seed(index)
    tokens = torch.randperm(200)[:45].view(9, 5) if distinct else torch.randint(0, 6, (9, 5))
    with torch.no_grad():
        plain = model.entering_states(tokens, 3)
        fixed = model.entering_states(tokens, 3, repeat_eagerly)
    assert len(fixed) == 3
    for got, expected in zip(fixed, plain, strict=True):
        assert got.shape == expected.shape and got.shape[:2] == (9, 5)
        assert torch.equal(got, expected)


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("layers", [1, 2])
def test_fixed_step_loop_at_the_shortest_lengths(steps: int, layers: int) -> None:
    """The top layer runs one step short (none for a single step): the entering states still
    start at zero and line up with the plain loop's."""
    model = _model(preset("gru"))
    tokens = torch.arange(steps * 4).view(steps, 4)
    with torch.no_grad():
        plain = model.entering_states(tokens, layers)
        fixed = model.entering_states(tokens, layers, repeat_eagerly)
    for got, expected in zip(fixed, plain, strict=True):
        assert torch.equal(got[0], torch.zeros_like(got[0]))
        assert torch.equal(got, expected)


def test_a_probe_with_a_repeater_scores_the_same() -> None:
    recipe = CELLS[4]
    sizes = ModelSizes(vocab_size=200, embedding_size=12, hidden_size=16, num_layers=3)
    tokens = torch.randint(0, 200, (9, 6), generator=torch.Generator().manual_seed(2))
    plain = RNNProbe(recipe, sizes, tokens, 3, needs={"entering_states:3"})
    calls = []

    def counting(advance, times: int) -> None:
        calls.append(times)
        repeat_eagerly(advance, times)

    fixed = RNNProbe(recipe, sizes, tokens, 3, needs={"entering_states:3"}, repeat=counting)
    assert hidden_cov(fixed) == hidden_cov(plain)
    assert calls == [9, 9, 8]  # the top layer's last step is never needed


def test_cuda_graphs_are_refused_off_the_gpu_and_for_bert() -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        StepGraphs("cpu")
    setup = ScoringSetup(embedding_size=8, hidden_size=8, num_layers=1, batch_size=4, bptt=5)
    with pytest.raises(ValueError, match="CUDA graphs"):
        Scorer(dataclasses.replace(setup, cuda_graphs=True))
    for bad in ({"device": "cpu"}, {"space": "bert", "device": "cuda"}):
        with pytest.raises(ConfigError, match="--cuda-graphs"):
            SearchConfig(cuda_graphs=True, **bad).validate()
    config = SearchConfig(cuda_graphs=True, device="cuda")
    config.validate()  # accepted: it runs where a GPU is
    assert config.scoring_setup().cuda_graphs  # what every executor's scorers are made from
    # How the steps are launched does not change a score: a run may resume with or without.
    assert "cuda_graphs" not in config.identity()


@cuda
@pytest.mark.parametrize("distinct", [True, False], ids=["gathered", "dense"])
def test_recorded_steps_give_the_eager_entering_states_on_cuda(distinct: bool) -> None:
    graphs = StepGraphs("cuda")
    torch.manual_seed(0)
    tokens = torch.randperm(200)[:45].view(9, 5) if distinct else torch.randint(0, 6, (9, 5))
    tokens = tokens.cuda()
    for recipe in CELLS:
        model = _model(recipe, device="cuda")
        with torch.no_grad():
            eager = model.entering_states(tokens, 3)
            replayed = model.entering_states(tokens, 3, graphs)
        torch.cuda.synchronize()
        for got, expected in zip(replayed, eager, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert graphs.recorded == 3 * len(CELLS)


@cuda
def test_a_graph_scorer_on_cuda_streams_matches_the_plain_one_and_keeps_its_memory() -> None:
    """Batches on CUDA streams (each replay stream with its own memory pool) give the plain
    scorer's scores, and scoring the same cells again reserves no more device memory."""
    setup = tiny_setup(metrics=("hidden_cov", "hidden_cov_l2"), device="cuda")
    candidates = [Candidate(f"c{i}", r.to_dict()) for i, r in enumerate(CELLS)]
    plain = [Scorer(setup).score(c) for c in candidates]
    scorer = BatchedScorer(dataclasses.replace(setup, cuda_graphs=True), streams=3)

    def all_in_batches() -> list:
        return [ev for i in range(0, 18, 6) for ev in scorer.score_batch(candidates[i : i + 6])]

    first = all_in_batches()
    torch.cuda.synchronize()
    reserved = torch.cuda.memory_reserved()
    second = all_in_batches()
    torch.cuda.synchronize()
    # A few small segments may be made while blocks freed for other streams wait for their
    # events; a memory pool per batch's new streams (9 of at least 2 MiB) would exceed this.
    assert torch.cuda.memory_reserved() <= reserved + 8 * 2**20
    for a, b, c in zip(plain, first, second, strict=True):
        assert a.status == b.status == c.status
        for name, value in a.metrics.items():
            assert b.metrics[name] == pytest.approx(value, rel=1e-5)
            # cuBLAS on several streams need not round the same way twice.
            assert c.metrics[name] == pytest.approx(b.metrics[name], rel=1e-6)
    assert scorer.prober.step_graphs.recorded > 0


@cuda
def test_a_step_that_cannot_be_recorded_runs_eagerly_with_the_reason_kept() -> None:
    """A host synchronisation inside the step makes recording fail: the steps still all
    run, once each, eagerly, and the reason is kept and warned about."""
    graphs = StepGraphs("cuda")
    counter = torch.zeros((), device="cuda")

    def advance() -> None:
        counter.add_(1)
        float(counter)  # waits for the device: not allowed while recording

    with pytest.warns(RuntimeWarning, match="recording a step failed"):
        graphs(advance, 5)
    torch.cuda.synchronize()
    assert float(counter) == 5
    assert graphs.failure is not None and graphs.recorded == 0
    graphs(advance, 3)  # no second attempt: eagerly at once
    assert float(counter) == 8
