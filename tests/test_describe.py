"""Readable architectures: RNN cell formulas and drawings, BERT layer lists."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from search_spaces.bert.config import BertConfig, LayerConfig
from search_spaces.bert.describe import layer_list, layer_text
from search_spaces.rnn.describe import (
    IGNORES_INPUT,
    cell_formula,
    describe_cell,
    draw_cell,
    output_name,
    state_name,
)
from search_spaces.rnn.generator import preset, sample_cell
from search_spaces.rnn.model import RecipeCell
from search_spaces.rnn.recipe import COMMUTATIVE_OPS, Node, Recipe, output_index

# ---------------------------------------------------------------------- expected formulas
# Derived by hand from the textbook equations and the notation of search_spaces/rnn/describe.py
# (equations after what they read; product/sum operands: computed terms before plain inputs,
# then by text, where "sigmoid" < "tanh" and "W" < "c"; linear terms x first; weights numbered
# in reading order; a term read twice gets its own equation t1).
#
# LSTM: f = sigmoid(Wf x + Uf h), i = sigmoid(Wi x + Ui h), g = tanh(Wg x + Ug h),
#       c' = f * c + i * g,  h' = o * tanh(c').
# The preset (NAS-Bench-NLP's LSTM recipe) has o = tanh(Wo x + Uo h), not the textbook
# sigmoid; the formula shows what the preset computes.
LSTM = (
    "c_new = sigmoid(W1 x + W2 h) * c + sigmoid(W3 x + W4 h) * tanh(W5 x + W6 h); "
    "h_new = tanh(W7 x + W8 h) * tanh(c_new)"
)
# GRU (Cho et al. 2014): z = sigmoid(Wz x + Uz h), r = sigmoid(Wr x + Ur h),
#       h~ = tanh(W x + U (r * h)),  h' = z * h + (1 - z) * h~   (the blend z * a + (1 - z) * b).
# z is read twice by the blend, so it is named t1.
GRU = (
    "t1 = sigmoid(W1 x + W2 h); "
    "h_new = t1 * h + (1 - t1) * tanh(W3 x + W4 (sigmoid(W5 x + W6 h) * h))"
)
GRU_INLINE = (
    "h_new = sigmoid(W1 x + W2 h) * h + (1 - sigmoid(W1 x + W2 h)) * "
    "tanh(W3 x + W4 (sigmoid(W5 x + W6 h) * h))"
)
GRU_BIASES = (
    "t1 = sigmoid(W1 x + W2 h + b1); "
    "h_new = t1 * h + (1 - t1) * tanh(W3 x + W4 (sigmoid(W5 x + W6 h + b2) * h) + b3)"
)
RNN = "h_new = tanh(W1 x + W2 h)"


def test_presets_read_like_the_textbook():
    assert cell_formula(preset("lstm")) == LSTM
    assert cell_formula(preset("gru")) == GRU
    assert cell_formula(preset("gru"), inline_shared=True) == GRU_INLINE
    assert cell_formula(preset("gru"), biases=True) == GRU_BIASES
    assert cell_formula(preset("rnn")) == RNN


def test_weight_map_points_at_the_right_inputs():
    f = describe_cell(preset("lstm"))
    assert sorted(f.weights, key=lambda w: int(w[1:])) == [f"W{i}" for i in range(1, 9)]
    graph = f.recipe.node_map
    for name, (node, inp) in f.weights.items():
        assert graph[node].op == "linear" and inp in graph[node].inputs
        # odd weights read x, even ones h ("W1 x + W2 h" in every gate)
        assert inp == ("x" if int(name[1:]) % 2 else "h_prev_0")
    assert f.equations[0][0] == "c_new" and f.equations[1][0] == "h_new"


def test_state_names_beyond_two():
    assert [state_name(i) for i in range(4)] == ["h", "c", "s2", "s3"]
    assert [output_name(i) for i in range(3)] == ["h_new", "c_new", "s2_new"]
    recipe = Recipe.from_dict(
        {
            "a": {"op": "linear", "input": ["x", "h_prev_2"]},
            "h_new_0": {"op": "activation_leaky_relu", "input": ["a"]},
            "h_new_1": {"op": "elementwise_prod", "input": ["h_prev_1", "h_new_0"]},
            "h_new_2": {"op": "elementwise_sum", "input": ["h_prev_1", "h_prev_0"]},
        }
    )
    assert cell_formula(recipe) == (
        "h_new = leaky_relu(W1 x + W2 s2); c_new = h_new * c; s2_new = h + c"
    )


# ---------------------------------------------------------------------- random cells
def _scramble(recipe: Recipe, rng: np.random.Generator) -> Recipe:
    """The same cell with internal nodes renamed, nodes reordered and the inputs of
    commutative ops permuted."""
    names = [n for n, _ in recipe.nodes if output_index(n) is None]
    rename = {n: f"q{int(j)}" for n, j in zip(names, rng.permutation(len(names)), strict=True)}
    data = {}
    for name, node in recipe.nodes:
        inputs = [rename.get(i, i) for i in node.inputs]
        if node.op in COMMUTATIVE_OPS:
            inputs = [inputs[j] for j in rng.permutation(len(inputs))]
        data[rename.get(name, name)] = {"op": node.op, "input": inputs}
    order = [list(data)[j] for j in rng.permutation(len(data))]
    return Recipe.from_dict({n: data[n] for n in order})


@pytest.fixture(scope="module")
def cells() -> list[Recipe]:
    rng = np.random.default_rng(2024)
    return [sample_cell(rng) for _ in range(200)]


def test_equal_canonical_forms_print_equally(cells):
    rng = np.random.default_rng(7)
    for recipe in [preset("lstm"), preset("gru"), *cells[:60]]:
        other = _scramble(recipe, rng)
        assert other.key == recipe.key
        assert cell_formula(other) == cell_formula(recipe)
        assert cell_formula(other, biases=True) == cell_formula(recipe, biases=True)


def test_every_sampled_cell_reads_x(cells):
    for recipe in cells:
        text = cell_formula(recipe)
        assert re.search(r"\bx\b", text) or text.endswith(IGNORES_INPUT), text
        assert "\0" not in text and "h_new =" in text
        assert len(text.split("; ")) >= recipe.num_states


def test_a_cell_that_ignores_x_says_so():
    # Not a valid recipe (it never reads x), so built without validation.
    recipe = Recipe((("h_new_0", Node("activation_tanh", ("h_prev_0",))),))
    assert cell_formula(recipe) == "h_new = tanh(h)" + IGNORES_INPUT


class _Weight:
    """A weight matrix W (out, in) applied to row vectors: ``W @ v`` is v W^T."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.w.t()


def _evaluate(formula, cell: RecipeCell, x, state) -> dict[str, torch.Tensor]:
    """Run the printed equations as Python, with the cell's own weights."""
    graph = formula.recipe.node_map
    env: dict = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "x": x,
    }
    env.update({state_name(i): s for i, s in enumerate(state)})
    for name, (node, inp) in formula.weights.items():
        lin = cell.linears[cell.linear_nodes.index(node)]
        start = 0
        for i in graph[node].inputs:
            width = cell.input_size if i == "x" else cell.hidden_size
            if i == inp:
                env[name] = _Weight(lin.weight[:, start : start + width])
            start += width
    for name, node in formula.biases.items():
        env[name] = cell.linears[cell.linear_nodes.index(node)].bias
    exec(re.sub(r"\b(W\d+) ", r"\1 @ ", formula.text), env)  # noqa: S102
    return env


def test_formulas_compute_what_the_cell_computes(cells):
    torch.manual_seed(0)
    for recipe in [preset("lstm"), preset("gru"), preset("rnn"), *cells]:
        for inline in (False, True):
            formula = describe_cell(recipe, biases=True, inline_shared=inline)
            cell = RecipeCell(formula.recipe, 3, 4).double()
            x = torch.randn(2, 3, dtype=torch.float64)
            state = tuple(torch.randn(2, 4, dtype=torch.float64) for _ in range(cell.num_states))
            expected = cell.step(x, state)
            env = _evaluate(formula, cell, x, state)
            for i, want in enumerate(expected):
                torch.testing.assert_close(env[output_name(i)], want, msg=formula.text)


# ---------------------------------------------------------------------- drawing
def test_drawing_writes_a_png(tmp_path, cells):
    for name, recipe in [("lstm", preset("lstm")), ("gru", preset("gru")), ("cell", cells[0])]:
        path = tmp_path / f"{name}.png"
        assert draw_cell(recipe, path, title=name) == path
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_drawing_into_axes():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot(1, 1, 1)
    assert draw_cell(preset("gru"), ax) is ax
    texts = {t.get_text() for t in ax.texts}
    assert {"x", "h_prev", "h_new\nblend", "z", "a", "b", "W1", "W6"} <= texts


# ---------------------------------------------------------------------- BERT
def _layer(op: str, param, heads: int = 4, dim: int = 1024, depth: int = 1) -> LayerConfig:
    return LayerConfig(op, param, heads, dim, depth)


def test_layer_list():
    bert = BertConfig(256, (_layer("SA", "SDP"),) * 4)
    assert layer_list(bert) == "256 x 4: 4 x (SA:SDP/4h/FF1024x1)"
    assert layer_list(bert, collapse=False) == "256 x 4: " + ", ".join(["SA:SDP/4h/FF1024x1"] * 4)
    mixed = BertConfig(
        128,
        (
            _layer("SA", "WMA", 2, 512, 3),
            _layer("LT", "DFT", 2, 512, 1),
            _layer("LT", "DFT", 2, 512, 1),
            _layer("DSC", 9, 4, 1024, 1),
        ),
    )
    assert layer_list(mixed) == (
        "128 x 4: SA:WMA/2h/FF512x3, 2 x (LT:DFT/2h/FF512x1), DSC:9/4h/FF1024x1"
    )
    # runs are consecutive layers only
    split = BertConfig(256, (_layer("LT", "DCT"), _layer("DSC", 5), _layer("LT", "DCT")))
    assert layer_list(split) == "256 x 3: LT:DCT/4h/FF1024x1, DSC:5/4h/FF1024x1, LT:DCT/4h/FF1024x1"
    assert layer_text(_layer("SA", "SDP", 2, 512, 3)) == "SA:SDP/2h/FF512x3"


def test_layer_list_reads_benchmark_records():
    record = {
        "hidden_size": 256,
        "nas_config": {
            "encoder_layers": [
                {
                    "operation_type": "SA",
                    "operation_parameter": "SDP",
                    "num_operation_heads": 4,
                    "feed_forward_dimension": 1024,
                    "num_feed_forward": 3,
                },
                {
                    "operation_type": "DSC",
                    "operation_parameter": "9",
                    "num_operation_heads": 2,
                    "feed_forward_dimension": 512,
                    "num_feed_forward": 1,
                },
            ]
        },
    }
    config = BertConfig.from_dict(record)
    assert layer_list(config) == "256 x 2: SA:SDP/4h/FF1024x3, DSC:9/2h/FF512x1"
