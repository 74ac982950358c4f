"""CellBatch: several cells' recurrences run together give each cell's own entering states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces.rnn import RecipeCell, preset
from search_spaces.rnn.batch import CellBatch
from search_spaces.rnn.generator import sample_cell
from search_spaces.rnn.graphs import StepGraphs, repeat_eagerly
from search_spaces.rnn.recipe import OPS


def _cells(n: int, input_size: int = 5, hidden: int = 4) -> list[RecipeCell]:
    rng = np.random.default_rng(11)
    recipes = [preset(p) for p in ("rnn", "lstm", "gru")] + [sample_cell(rng) for _ in range(n)]
    torch.manual_seed(2)
    return [RecipeCell(r, input_size, hidden) for r in recipes]


def _one_by_one(cells: list[RecipeCell], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([cell(x, record_entering=True)[2] for cell in cells])


def test_batch_matches_each_cell_in_float64(float64_default) -> None:
    cells = _cells(60)
    x = torch.randn(6, 3, 5)
    got = CellBatch(cells).entering_states(x)
    assert got.shape == (len(cells), 6, 3, 4)
    torch.testing.assert_close(got, _one_by_one(cells, x), rtol=1e-10, atol=1e-12)
    ops = {node.op for c in cells for node in c.recipe.node_map.values()}
    assert ops == set(OPS)  # every operation kind went through the batch


def test_batch_matches_each_cell_in_float32() -> None:
    cells = _cells(20, input_size=12, hidden=16)
    x = torch.randn(9, 5, 12)
    torch.testing.assert_close(
        CellBatch(cells).entering_states(x), _one_by_one(cells, x), rtol=1e-5, atol=1e-6
    )


def test_a_batch_of_one_and_the_order_of_cells() -> None:
    cells = _cells(4)
    x = torch.randn(5, 2, 5)
    expected = _one_by_one(cells, x)
    torch.testing.assert_close(CellBatch(cells[3:4]).entering_states(x)[0], expected[3])
    reversed_batch = CellBatch(cells[::-1]).entering_states(x)
    torch.testing.assert_close(reversed_batch.flip(0), expected, rtol=1e-5, atol=1e-6)


def test_bad_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CellBatch([])
    mixed = [RecipeCell(preset("lstm"), 5, 4), RecipeCell(preset("gru"), 5, 6)]
    with pytest.raises(ValueError, match="one \\(input, hidden\\) size"):
        CellBatch(mixed)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_the_fixed_step_loop_gives_the_batchs_states(steps: int) -> None:
    """The step index on the device, every step the same operations on the same memory (so
    that one step can be recorded as a CUDA graph): the plain loop's states, bit for bit,
    for each cell one at a time too."""
    cells = _cells(20, input_size=12, hidden=16)
    x = torch.randn(steps, 5, 12)
    batch = CellBatch(cells)
    calls = []

    def counting(advance, times: int) -> None:
        calls.append(times)
        repeat_eagerly(advance, times)

    fixed = batch.entering_states(x, counting)
    assert calls == [steps]
    assert torch.equal(fixed, batch.entering_states(x))
    torch.testing.assert_close(fixed, _one_by_one(cells, x), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_recorded_batch_step_on_cuda_gives_the_eager_states() -> None:
    cells = [cell.cuda() for cell in _cells(20, input_size=12, hidden=16)]
    x = torch.randn(9, 5, 12, device="cuda")
    batch = CellBatch(cells)
    graphs = StepGraphs("cuda")
    replayed = batch.entering_states(x, graphs)
    torch.testing.assert_close(replayed, batch.entering_states(x), rtol=1e-6, atol=1e-7)
    assert graphs.recorded == 1 and graphs.failure is None


def _index_tensors(batch: CellBatch) -> list[torch.Tensor]:
    out = [batch._entering, batch._states, batch._new_states, *batch._x_rows]
    for lv in batch._levels:
        out += [lv.linear_slots, lv.linear_rows, lv.pair_sources, lv.pair_targets]
        out += [t for _, i, o in lv.activations for t in (i, o)]
        out += [t for _, _, i, o in lv.reductions for t in (i, o)]
        out += list(lv.blend or ())
    return [t for t in out if t is not None]


def test_the_plan_reaches_a_device_as_one_copy() -> None:
    """Off the CPU every index tensor of the plan is a view of one tensor that was copied
    over once (one copy per index would each make the host wait on a GPU)."""
    cells = [cell.to("meta") for cell in _cells(12, input_size=12, hidden=16)]
    indices = _index_tensors(CellBatch(cells))
    assert len(indices) > 30
    assert all(t.device.type == "meta" and t.dtype == torch.long for t in indices)
    assert len({id(t._base) for t in indices}) == 1 and indices[0]._base is not None


def test_moved_indices_keep_the_states() -> None:
    """The one-copy move remaps every index (run on the CPU, where it is otherwise skipped)."""
    cells = _cells(20, input_size=12, hidden=16)
    x = torch.randn(6, 5, 12)
    batch = CellBatch(cells)
    expected = batch.entering_states(x)
    before = [t.tolist() for t in _index_tensors(batch)]
    batch._move_indices()
    after = _index_tensors(batch)
    assert [t.tolist() for t in after] == before
    assert len({id(t._base) for t in after}) == 1
    assert torch.equal(batch.entering_states(x), expected)
