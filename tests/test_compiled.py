"""The compiled cell: straight-line step code, merged multiplies, and the lean forward paths
(entering states, the shared embedding) against the node-by-node reference."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from search_spaces.rnn import ModelSizes, Recipe, RecipeCell, RNNLanguageModel, compiled, preset
from search_spaces.rnn.compiled import CellProgram
from search_spaces.rnn.generator import mutate_cell, sample_cell
from search_spaces.rnn.graphs import repeat_eagerly
from search_spaces.rnn.metrics.covariance import hidden_cov
from search_spaces.rnn.model import CellRecord, SharedEmbedding
from search_spaces.rnn.probe import RNNProbe


def _cells() -> list[tuple[str, Recipe]]:
    rng = np.random.default_rng(7)
    cells = [(n, preset(n)) for n in ("rnn", "lstm", "gru")]
    cells += [(f"sample{i}", sample_cell(rng)) for i in range(10)]
    cell = preset("gru")
    for i in range(4):
        cell, _ = mutate_cell(cell, rng)
        cells.append((f"mutant{i}", cell))
    return cells


CELLS = _cells()
IDS = [n for n, _ in CELLS]

# Two linear nodes read exactly {x, h_prev_0}; one reads only the internal node "a"; a third
# reads "a" and h_prev_1. No node reads x outside a linear node.
MERGE_RECIPE = Recipe.from_dict(
    {
        "a": {"op": "linear", "input": ["x", "h_prev_0"]},
        "b": {"op": "linear", "input": ["h_prev_0", "x"]},
        "ta": {"op": "activation_tanh", "input": ["a"]},
        "sb": {"op": "activation_sigm", "input": ["b"]},
        "c": {"op": "linear", "input": ["ta", "h_prev_1"]},
        "d": {"op": "linear", "input": ["ta"]},
        "h_new_1": {"op": "elementwise_prod", "input": ["sb", "d"]},
        "h_new_0": {"op": "blend", "input": ["sb", "c", "h_prev_0"]},
    }
)


def reference_sequence(cell: RecipeCell, x: torch.Tensor, state=None):
    """Outputs, final state, entering states and activation outputs, by calling the
    node-by-node ``step`` at every time step."""
    if state is None:
        state = tuple(x.new_zeros(x.shape[1], cell.hidden_size) for _ in range(cell.num_states))
    outputs, entering, acts = [], [], {}
    for t in range(x.shape[0]):
        entering.append(state[0])
        values: dict[str, torch.Tensor] = {}
        state = cell.step(x[t], state, values)
        for name in cell.order:
            if cell.recipe.node_map[name].op.startswith("activation_"):
                acts.setdefault(name, []).append(values[name])
        outputs.append(state[0])
    return torch.stack(outputs), state, torch.stack(entering), acts


def _pack_every_cell(monkeypatch) -> None:
    """Every eligible cell's step weights packed for oneDNN, whatever its size (the unit
    tests' cells are far below PACKED_MIN_WORK)."""
    if not compiled.packed_products_work():
        pytest.skip("this torch build's oneDNN linear ops are missing or disagree with mm")
    monkeypatch.setattr(compiled, "PACKED_MIN_WORK", 0)


@pytest.fixture
def packed_everywhere(monkeypatch):
    _pack_every_cell(monkeypatch)


@pytest.mark.parametrize("packed", [False, True], ids=["mm", "onednn"])
@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=IDS)
def test_compiled_forward_matches_reference_float32(
    name: str, recipe: Recipe, packed: bool, monkeypatch
) -> None:
    """Outputs, entering and final states, activations; ``packed``: with the step's
    multiplies on oneDNN's ops on packed weights (the CPU path at large sizes)."""
    if packed:
        _pack_every_cell(monkeypatch)
    torch.manual_seed(3)
    cell = RecipeCell(recipe, input_size=24, hidden_size=16)
    x = torch.randn(9, 5, 24)
    record = CellRecord(entering=True, activations=True)
    with torch.no_grad():
        assert cell.program.weights(cell, batch_size=5).packed == packed
        out, final, entering = cell(x, record_entering=True, record=record)
        ref_out, ref_final, ref_entering, ref_acts = reference_sequence(cell, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(entering, ref_entering, rtol=1e-5, atol=1e-6)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack(record.entering_steps), ref_entering)
    assert set(record.activation_steps) == set(ref_acts)
    for node, steps in ref_acts.items():
        torch.testing.assert_close(
            torch.stack(record.activation_steps[node]), torch.stack(steps), rtol=1e-5, atol=1e-6
        )


def test_compiled_forward_matches_reference_on_many_sampled_cells(float64_default) -> None:
    """The step generator's special cases (merged multiplies, input projections added by
    the multiply, values read by several nodes) over 150 sampled cells, in float64."""
    rng = np.random.default_rng(21)
    fused = 0
    for _ in range(150):
        recipe = sample_cell(rng)
        torch.manual_seed(1)
        cell = RecipeCell(recipe, input_size=5, hidden_size=4)
        fused += "addmm(" in cell.program.step_source
        x = torch.randn(4, 3, 5)
        with torch.no_grad():
            out, final, _ = cell(x)
            ref_out, ref_final, _, _ = reference_sequence(cell, x)
        torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
        for a, b in zip(final, ref_final, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert fused > 50  # the fused path is the common one, and is what was tested here


@pytest.mark.parametrize(("name", "recipe"), CELLS[:8], ids=IDS[:8])
def test_compiled_gradients_match_reference(name: str, recipe: Recipe, float64_default) -> None:
    """Autograd flows through the compiled step to the cell's own parameters."""
    torch.manual_seed(4)
    cell = RecipeCell(recipe, input_size=6, hidden_size=5)
    x = torch.randn(4, 3, 6, requires_grad=True)
    params = [x, *cell.parameters()]
    out, _, _ = cell(x)
    got = torch.autograd.grad((out**2).sum(), params, materialize_grads=True)
    ref_out, _, _, _ = reference_sequence(cell, x)
    expected = torch.autograd.grad((ref_out**2).sum(), params, materialize_grads=True)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_step_is_straight_line_with_one_multiply_per_read_value() -> None:
    program = CellProgram(MERGE_RECIPE)
    # Read values: h_prev_0 (by a and b: one merged multiply), h_prev_1 (by c), ta (by c and
    # d: one merged multiply). x is projected before the recurrence, not in the step.
    assert [s for s, _ in program.sources] == ["h_prev_0", "h_prev_1", "ta"]
    assert dict(program.sources) == {"h_prev_0": ("a", "b"), "h_prev_1": ("c",), "ta": ("c", "d")}
    assert program.x_readers == ("a", "b")
    code = program.step_source
    multiplies = re.findall(r"\b(add)?mm\(", code)
    assert len(multiplies) == 3
    # a and b read x (in that order) and h_prev_0 first: their x parts are added by the
    # h_prev_0 multiply itself; c and d read no x.
    assert "addmm(pre, s0, w0)" in code and multiplies.count("add") == 1
    for keyword in ("for ", "while ", "if "):
        assert keyword not in code


def test_merged_program_by_hand(float64_default) -> None:
    """One step of MERGE_RECIPE written out from the op definitions."""
    torch.manual_seed(5)
    cell = RecipeCell(MERGE_RECIPE, input_size=3, hidden_size=4)
    lin = dict(zip(cell.linear_nodes, cell.linears, strict=True))
    x, h0, h1 = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)

    def affine(node: str, *parts: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts, dim=1) @ lin[node].weight.t() + lin[node].bias

    ta = torch.tanh(affine("a", x, h0))
    sb = torch.sigmoid(affine("b", h0, x))
    c = affine("c", ta, h1)
    d = affine("d", ta)
    expected0 = sb * c + (1 - sb) * h0
    expected1 = sb * d
    out, (got0, got1), _ = cell(x[None], (h0, h1))
    torch.testing.assert_close(got0, expected0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got1, expected1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[0], expected0, rtol=1e-12, atol=1e-12)


def test_a_linear_node_reading_only_states_starts_from_its_bias(float64_default) -> None:
    recipe = Recipe.from_dict(
        {
            "a": {"op": "linear", "input": ["h_prev_0"]},
            "b": {"op": "linear", "input": ["x"]},
            "h_new_0": {"op": "elementwise_sum", "input": ["a", "b"]},
        }
    )
    torch.manual_seed(6)
    cell = RecipeCell(recipe, input_size=3, hidden_size=4)
    x = torch.randn(3, 2, 3)
    out, _, entering = cell(x, record_entering=True)
    lin = dict(zip(cell.linear_nodes, cell.linears, strict=True))
    h = torch.zeros(2, 4)
    assert torch.equal(entering[0], h)  # the zero initial state, exactly
    for t in range(3):
        # Later states to rounding: a fused multiply-add and a multiply then an add may differ
        # in the last bit, depending on the BLAS build.
        torch.testing.assert_close(entering[t], h, rtol=1e-12, atol=1e-12)
        h = (h @ lin["a"].weight.t() + lin["a"].bias) + (x[t] @ lin["b"].weight.t() + lin["b"].bias)
        torch.testing.assert_close(out[t], h, rtol=1e-12, atol=1e-12)


def _sizes(vocab: int = 30) -> ModelSizes:
    return ModelSizes(vocab_size=vocab, embedding_size=12, hidden_size=16, num_layers=3)


@pytest.mark.parametrize("distinct", [False, True], ids=["repeated-tokens", "all-distinct"])
@pytest.mark.parametrize(("name", "recipe"), CELLS[:6], ids=IDS[:6])
def test_entering_states_match_the_reference_stack(
    name: str, recipe: Recipe, distinct: bool
) -> None:
    """Both ways of projecting the tokens (distinct rows gathered; the dense batch), and the
    top layer run one step short, against the step-by-step reference through the stack."""
    sizes = _sizes(vocab=200)
    torch.manual_seed(8)
    model = RNNLanguageModel(recipe, sizes).eval()
    if distinct:
        tokens = torch.randperm(200)[:40].view(8, 5)
    else:
        tokens = torch.randint(0, 6, (8, 5))
    with torch.no_grad():
        got = model.entering_states(tokens, 3)
        h = model.encoder.weight[tokens]
        for layer, cell in enumerate(model.layers):
            out, _, entering, _ = reference_sequence(cell, h)
            torch.testing.assert_close(got[layer], entering, rtol=1e-5, atol=1e-6)
            h = out
        assert len(model.entering_states(tokens, 1)) == 1


def test_entering_states_of_a_single_step() -> None:
    model = RNNLanguageModel(preset("lstm"), _sizes()).eval()
    with torch.no_grad():
        (states,) = model.entering_states(torch.tensor([[1, 2, 3]]), 1)
    assert torch.equal(states, torch.zeros(1, 3, 16))


def test_shared_embedding_builds_the_same_network() -> None:
    sizes = _sizes()
    recipe = preset("gru")
    before = torch.get_rng_state()
    shared = SharedEmbedding.draw(11, sizes)
    built = shared.build(recipe, sizes)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(11)
    direct = RNNLanguageModel(recipe, sizes)
    got, expected = dict(built.named_parameters()), dict(direct.named_parameters())
    assert list(got) == list(expected)
    for name, p in expected.items():
        assert torch.equal(got[name], p), name
    assert built.decoder.weight is built.encoder.weight
    # The first layers only: the same weights as the full model's.
    shallow = shared.build(recipe, sizes, build_layers=1)
    assert torch.equal(shallow.layers[0].linears[0].weight, direct.layers[0].linears[0].weight)
    # The embedding is shared, not copied.
    assert built.encoder.weight.data_ptr() == shared.weight.data_ptr()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_weights_from_the_stream_equal_drawn_weights(tied: bool) -> None:
    """A model built from the shared stream (its weights views, nothing drawn) has exactly
    the weights torch.manual_seed(seed) and a fresh draw give, for cells of every size, in
    any order (a larger cell makes the stream grow), with another init gain too."""
    from search_spaces.rnn.model import stream_reproduces_uniform

    assert stream_reproduces_uniform()  # else the engine silently draws every model
    sizes = ModelSizes(vocab_size=30, embedding_size=12, hidden_size=16, num_layers=3, tied=tied)
    shared = SharedEmbedding.draw(5, sizes)
    assert shared.stream is not None
    order = [CELLS[i][1] for i in (0, 7, 1, 12, 0)]
    for gain in (1.0, 1.25):
        gained = dataclasses.replace(sizes, init_gain=gain)
        for recipe in order:
            for layers in (1, None):
                built = shared.build(recipe, gained, build_layers=layers)
                torch.manual_seed(5)
                direct = RNNLanguageModel(recipe, gained, build_layers=layers)
                got, expected = dict(built.named_parameters()), dict(direct.named_parameters())
                assert list(got) == list(expected)
                for name, p in expected.items():
                    assert torch.equal(got[name], p), (name, gain, layers)
    # Nothing was drawn from the stream per model: its weights are views of it.
    weight = built.layers[0].linears[0].weight
    assert weight.untyped_storage().data_ptr() == (
        shared.build(order[0], gained).layers[0].linears[0].weight.untyped_storage().data_ptr()
    )


def test_a_torch_build_that_rounds_otherwise_draws_as_before(monkeypatch) -> None:
    """Where the stream would not reproduce uniform_, no stream is kept and the cells are
    drawn from the saved RNG state: the same network either way."""
    import search_spaces.rnn.model as model_module

    monkeypatch.setattr(model_module, "stream_reproduces_uniform", lambda: False)
    sizes = _sizes()
    shared = SharedEmbedding.draw(9, sizes)
    assert shared.stream is None
    built = shared.build(preset("gru"), sizes)
    torch.manual_seed(9)
    direct = RNNLanguageModel(preset("gru"), sizes)
    for (name, p), q in zip(built.named_parameters(), direct.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_a_stream_builds_only_on_its_device_and_after_the_embedding() -> None:
    sizes = _sizes()
    shared = SharedEmbedding.draw(3, sizes)
    with pytest.raises(ValueError, match="not on meta"):
        RNNLanguageModel(
            preset("gru"), sizes, "meta", encoder_weight=shared.weight, stream=shared.stream
        )
    with pytest.raises(ValueError, match="embedding drawn before"):
        RNNLanguageModel(preset("gru"), sizes, stream=shared.stream)


def test_a_model_that_changes_stream_weights_in_place_stops_the_stream() -> None:
    sizes = _sizes()
    shared = SharedEmbedding.draw(3, sizes)
    model = shared.build(preset("lstm"), sizes)
    with torch.no_grad():
        model.layers[0].linears[0].weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="in place"):
        shared.build(preset("gru"), sizes)


def test_shared_embedding_refuses_another_dtype(float64_default) -> None:
    torch.set_default_dtype(torch.float32)
    shared = SharedEmbedding.draw(0, _sizes())
    torch.set_default_dtype(torch.float64)
    with pytest.raises(ValueError, match="default dtype"):
        shared.build(preset("rnn"), _sizes())


def test_probe_with_shared_embedding_scores_the_same() -> None:
    sizes = _sizes(vocab=50)
    tokens = torch.randint(0, 50, (10, 6), generator=torch.Generator().manual_seed(0))
    shared = SharedEmbedding.draw(3, sizes)
    for _, recipe in CELLS[:5]:
        plain = RNNProbe(recipe, sizes, tokens, 3, depth=1, needs={"entering_states:1"})
        fast = RNNProbe(
            recipe, sizes, tokens, 3, depth=1, needs={"entering_states:1"}, shared=shared
        )
        assert torch.equal(plain.entering_states(1), fast.entering_states(1))
        assert hidden_cov(plain).value == hidden_cov(fast).value


# ---------------------------------------------------------------- oneDNN step multiplies
@pytest.mark.parametrize(("name", "recipe"), CELLS[:6], ids=IDS[:6])
def test_packed_entering_states_match_the_reference_stack(
    name: str, recipe: Recipe, packed_everywhere
) -> None:
    torch.manual_seed(8)
    model = RNNLanguageModel(recipe, _sizes(vocab=200)).eval()
    tokens = torch.randint(0, 6, (8, 5))
    with torch.no_grad():
        got = model.entering_states(tokens, 3)
        fixed = model.entering_states(tokens, 3, repeat_eagerly)
        h = model.encoder.weight[tokens]
        for layer, cell in enumerate(model.layers):
            out, _, entering, _ = reference_sequence(cell, h)
            torch.testing.assert_close(got[layer], entering, rtol=1e-5, atol=1e-6)
            assert torch.equal(fixed[layer], got[layer])
            h = out


def test_step_weights_are_packed_only_where_they_can_be(packed_everywhere, monkeypatch) -> None:
    cell = RecipeCell(preset("lstm"), input_size=8, hidden_size=6)
    program = cell.program
    with torch.no_grad():
        assert program.weights(cell, batch_size=4).packed
        assert not program.weights(cell).packed  # no batch size given: not packed
        double = RecipeCell(preset("lstm"), input_size=8, hidden_size=6).double()
        assert not double.program.weights(double, batch_size=4).packed
    # With autograd on, the weights stay differentiable and the gradient reaches them.
    weights = program.weights(cell, batch_size=4)
    assert not weights.packed
    out, _, _ = cell(torch.randn(3, 4, 8))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())
    # Also where only the inputs need one (a Jacobian metric's gradient).
    frozen = RecipeCell(preset("lstm"), input_size=8, hidden_size=6).requires_grad_(False)
    x = torch.randn(3, 4, 8, requires_grad=True)
    assert not frozen.program.weights(frozen, batch_size=4).packed
    frozen(x)[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        # The LSTM's one merged multiply, its four gates': (B x 6)(6 x 24); one row short.
        assert [len(readers) for _, readers in program.sources] == [4]
        monkeypatch.setattr(compiled, "PACKED_MIN_WORK", 4 * 6 * 24 + 1)
        assert not program.weights(cell, batch_size=4).packed
        assert program.weights(cell, batch_size=5).packed
        monkeypatch.setattr(compiled, "packed_products_work", lambda: False)
        assert not program.weights(cell, batch_size=5).packed


def test_step_weights_are_not_packed_where_onednn_fails_or_disagrees(monkeypatch) -> None:
    check = compiled.packed_products_work.__wrapped__  # uncached

    def unavailable(weight, batch_size):
        raise RuntimeError("no oneDNN here")

    with monkeypatch.context() as patched:
        patched.setattr(compiled, "_pack", unavailable)
        assert not check()
    with monkeypatch.context() as patched:
        patched.setattr(compiled, "_packed_addmm", lambda acc, a, w: compiled._packed_mm(a, w))
        assert not check()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_onednn_products_work_in_a_torch_build_with_onednn() -> None:
    """Else the packed tests above would skip: where oneDNN is built in, its ops must
    give mm's and addmm's results (or the check finds they do not, and this fails)."""
    assert compiled.packed_products_work.__wrapped__()
