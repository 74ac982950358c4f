"""The language model around a cell: fast path vs reference, initialisation, sizes, params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import read_logs

from nas_engine.parameters import count_parameters
from search_spaces.rnn import (
    ModelSizes,
    Recipe,
    RecipeCell,
    RNNLanguageModel,
    preset,
)
from search_spaces.rnn.generator import mutate_cell, sample_cell
from search_spaces.rnn.recipe import LINEAR


def _cells() -> list[tuple[str, Recipe]]:
    rng = np.random.default_rng(2024)
    cells = [(n, preset(n)) for n in ("rnn", "lstm", "gru")]
    for i in range(16):
        cells.append((f"sample{i}", sample_cell(rng)))
    # Mutated cells reach shapes the generator does not produce (h_new_i reading h_prev_j,
    # outputs feeding other outputs, deeper chains).
    cell = preset("lstm")
    for i in range(4):
        cell, _ = mutate_cell(cell, rng)
        cells.append((f"mutant{i}", cell))
    return cells


CELLS = _cells()


def reference_run(cell: RecipeCell, x: torch.Tensor, state=None):
    """The sequence run by calling the node-by-node ``step`` at every time step."""
    if state is None:
        state = tuple(x.new_zeros(x.shape[1], cell.hidden_size) for _ in range(cell.num_states))
    outputs, entering = [], []
    for t in range(x.shape[0]):
        entering.append(state[0])
        state = cell.step(x[t], state)
        outputs.append(state[0])
    return torch.stack(outputs), state, torch.stack(entering)


@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=[n for n, _ in CELLS])
def test_fast_path_matches_reference_float64(name: str, recipe: Recipe, float64_default) -> None:
    torch.manual_seed(0)
    cell = RecipeCell(recipe, input_size=10, hidden_size=12)
    assert next(cell.parameters()).dtype == torch.float64
    x = torch.randn(7, 3, 10)
    out, final, entering = cell(x, record_entering=True)
    ref_out, ref_final, ref_entering = reference_run(cell, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(entering, ref_entering, rtol=1e-10, atol=1e-12)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(entering[0], torch.zeros(3, 12))
    # From a non-zero initial state too.
    state = tuple(torch.randn(3, 12) for _ in range(cell.num_states))
    out, final, _ = cell(x, state)
    ref_out, ref_final, _ = reference_run(cell, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("name", "recipe"), CELLS[:8], ids=[n for n, _ in CELLS[:8]])
def test_fast_path_matches_reference_float32(name: str, recipe: Recipe) -> None:
    torch.manual_seed(1)
    cell = RecipeCell(recipe, input_size=16, hidden_size=8)
    x = torch.randn(12, 4, 16)
    out, _, _ = cell(x)
    ref_out, _, _ = reference_run(cell, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)


def _linears(cell: RecipeCell) -> dict[str, torch.nn.Linear]:
    return dict(zip(cell.linear_nodes, cell.linears, strict=True))


def _affine(lin: torch.nn.Linear, *parts: torch.Tensor) -> torch.Tensor:
    """W [parts...] + b, the weight columns taken in the order the inputs are listed."""
    out, start = lin.bias, 0
    for part in parts:
        width = part.shape[-1]
        out = out + part @ lin.weight[:, start : start + width].t()
        start += width
    assert start == lin.weight.shape[1]
    return out


def test_step_follows_the_op_definitions_gru(float64_default) -> None:
    torch.manual_seed(0)
    cell = RecipeCell(preset("gru"), input_size=5, hidden_size=7)
    w = _linears(cell)
    x, h = torch.randn(3, 5), torch.randn(3, 7)
    r = torch.sigmoid(_affine(w["r"], x, h))
    z = torch.sigmoid(_affine(w["z"], x, h))
    cand = torch.tanh(_affine(w["h_tilde"], x, r * h))
    expected = z * h + (1 - z) * cand  # blend(z, a, b) = z * a + (1 - z) * b
    (got,) = cell.step(x, (h,))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_step_follows_the_op_definitions_lstm(float64_default) -> None:
    torch.manual_seed(1)
    cell = RecipeCell(preset("lstm"), input_size=4, hidden_size=6)
    w = _linears(cell)
    x, h, c = torch.randn(2, 4), torch.randn(2, 6), torch.randn(2, 6)
    i = torch.tanh(_affine(w["i"], x, h))
    j = torch.sigmoid(_affine(w["j"], x, h))
    f = torch.sigmoid(_affine(w["f"], x, h))
    o = torch.tanh(_affine(w["o"], x, h))
    c_new = f * c + i * j
    h_new = torch.tanh(c_new) * o
    got_h, got_c = cell.step(x, (h, c))
    torch.testing.assert_close(got_c, c_new, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_h, h_new, rtol=1e-12, atol=1e-12)


def test_step_follows_the_op_definitions_mixed(float64_default) -> None:
    recipe = Recipe.from_dict(
        {
            "a": {"op": "linear", "input": ["h_prev_1", "x", "h_prev_0"]},
            "la": {"op": "activation_leaky_relu", "input": ["a"]},
            "b": {"op": "linear", "input": ["x"]},
            "sb": {"op": "activation_sigm", "input": ["b"]},
            "s": {"op": "elementwise_sum", "input": ["la", "sb", "h_prev_1"]},
            "p": {"op": "elementwise_prod", "input": ["s", "la", "h_prev_0"]},
            "h_new_1": {"op": "blend", "input": ["sb", "p", "h_prev_1"]},
            "h_new_0": {"op": "linear", "input": ["h_new_1", "s"]},
        }
    )
    torch.manual_seed(2)
    cell = RecipeCell(recipe, input_size=3, hidden_size=5)
    w = _linears(cell)
    x, h0, h1 = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    pre = _affine(w["a"], h1, x, h0)
    la = torch.where(pre > 0, pre, 0.01 * pre)  # leaky ReLU, slope 0.01
    sb = torch.sigmoid(_affine(w["b"], x))
    s = la + sb + h1
    p = s * la * h0
    new1 = sb * p + (1 - sb) * h1
    new0 = _affine(w["h_new_0"], new1, s)
    got0, got1 = cell.step(x, (h0, h1))
    torch.testing.assert_close(got1, new1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got0, new0, rtol=1e-12, atol=1e-12)
    out, _, _ = cell(x[None], (h0, h1))
    torch.testing.assert_close(out[0], new0, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("name", "recipe"), CELLS[:6], ids=[n for n, _ in CELLS[:6]])
def test_language_model_matches_manual_stack(name: str, recipe: Recipe, float64_default) -> None:
    sizes = ModelSizes(vocab_size=30, embedding_size=8, hidden_size=12, num_layers=3)
    torch.manual_seed(3)
    model = RNNLanguageModel(recipe, sizes)
    tokens = torch.randint(0, 30, (6, 4))
    logits, states = model(tokens)
    # By hand: embedding lookup, step loops per layer, tied decoder.
    h = model.encoder.weight[tokens]
    for layer, cell in enumerate(model.layers):
        h, final, _ = reference_run(cell, h)
        for a, b in zip(states[layer], final, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    expected = h @ model.encoder.weight.t() + model.decoder.bias
    assert logits.shape == (6, 4, 30)
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)


def test_initialisation_follows_the_benchmark() -> None:
    sizes = ModelSizes(vocab_size=500, embedding_size=16, hidden_size=32, num_layers=3)
    torch.manual_seed(0)
    model = RNNLanguageModel(preset("lstm"), sizes)
    hidden = [32, 32, 16]  # the last layer's hidden size is E (tied decoder)
    assert [c.hidden_size for c in model.layers] == hidden
    assert [c.input_size for c in model.layers] == [16, 32, 32]
    for cell, h in zip(model.layers, hidden, strict=True):
        bound = 1 / math.sqrt(h)
        values = torch.cat([p.detach().flatten() for p in cell.parameters()])
        assert values.abs().max() <= bound
        # Uniform over the whole range, not a narrower one.
        assert values.abs().max() > 0.95 * bound
        assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        # Biases too, not only weights.
        biases = torch.cat([lin.bias.detach() for lin in cell.linears])
        assert biases.abs().max() <= bound and biases.abs().max() > 0.9 * bound
        assert biases.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    emb = model.encoder.weight.detach()
    assert emb.abs().max() <= 0.1 and emb.abs().max() > 0.099
    assert emb.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(model.decoder.bias) == 0
    assert model.decoder.weight is model.encoder.weight
    # No parameter was left uninitialised (to_empty leaves garbage).
    for p in model.parameters():
        assert torch.isfinite(p).all()


def test_init_gain_scales_the_cells_and_nothing_else() -> None:
    """The same draws as the benchmark's initialisation, each cell weight times the gain (so
    a gain reads the same network at another scale); embedding and decoder untouched."""
    base = ModelSizes(vocab_size=300, embedding_size=8, hidden_size=12, num_layers=3)
    torch.manual_seed(3)
    plain = RNNLanguageModel(preset("lstm"), base)
    torch.manual_seed(3)
    scaled = RNNLanguageModel(preset("lstm"), ModelSizes(**{**vars(base), "init_gain": 1.75}))
    assert torch.equal(plain.encoder.weight, scaled.encoder.weight)
    assert torch.equal(plain.decoder.bias, scaled.decoder.bias)
    for a, b in zip(plain.layers, scaled.layers, strict=True):
        assert b.init_gain == 1.75
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            torch.testing.assert_close(q, 1.75 * p, rtol=1e-6, atol=0, msg=name)
        bound = 1.75 / math.sqrt(b.hidden_size)
        values = torch.cat([p.detach().flatten() for p in b.parameters()])
        assert values.abs().max() <= bound and values.abs().max() > 0.95 * bound


def test_initialisation_is_seeded() -> None:
    sizes = ModelSizes(vocab_size=40, embedding_size=8, hidden_size=12, num_layers=2)
    torch.manual_seed(5)
    a = RNNLanguageModel(preset("gru"), sizes).state_dict()
    torch.manual_seed(5)
    b = RNNLanguageModel(preset("gru"), sizes).state_dict()
    torch.manual_seed(6)
    c = RNNLanguageModel(preset("gru"), sizes).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_weight_layout_one_linear_per_node() -> None:
    recipe = preset("lstm")
    cell = RecipeCell(recipe, input_size=10, hidden_size=6)
    linear_nodes = [n for n, node in recipe.nodes if node.op == LINEAR]
    assert len(cell.linears) == len(linear_nodes) == 4
    for lin in cell.linears:  # each reads x (10) and h_prev_0 (6)
        assert lin.weight.shape == (6, 16)
        assert lin.bias.shape == (6,)


def test_hand_count_for_the_rnn_preset() -> None:
    v, e, h = 50, 8, 12
    expected = (
        v * e  # embedding (the decoder weight is tied to it)
        + (e + h) * h
        + h  # layer 1: linear over [x (E), h_prev_0 (H)] + bias
        + (h + h) * h
        + h  # layer 2
        + (h + e) * e
        + e  # layer 3: hidden size E
        + v  # decoder bias
    )
    model = RNNLanguageModel(preset("rnn"), ModelSizes(v, e, h, 3))
    assert count_parameters(model) == expected == 1170
    meta = RNNLanguageModel(preset("rnn"), ModelSizes(v, e, h, 3), device="meta")
    assert count_parameters(meta) == expected


def test_untied_model_counts_the_decoder() -> None:
    v, e, h = 50, 8, 12
    sizes = ModelSizes(v, e, h, 1, tied=False)
    model = RNNLanguageModel(preset("rnn"), sizes)
    assert model.layers[0].hidden_size == h
    expected = v * e + (e + h) * h + h + h * v + v
    assert count_parameters(model) == expected
    assert model.decoder.weight is not model.encoder.weight


def test_parameter_counts_match_every_benchmark_log() -> None:
    logs = read_logs()
    mismatches = []
    for name, log in logs:
        assert log.get("tied", True)
        sizes = ModelSizes(33278, log["emsize"], log["nhid"], log["nlayers"])
        model = RNNLanguageModel(Recipe.from_json(log["recepie"]), sizes, device="meta")
        if count_parameters(model) != log["num_params"]:
            mismatches.append((name, count_parameters(model), log["num_params"]))
    assert len(logs) == 345
    assert not mismatches
