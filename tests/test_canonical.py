"""Canonical form, keys, records and distance of RNN cells."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_engine.parameters import count_parameters
from nas_engine.spaces import get_space
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, preset
from search_spaces.rnn.generator import cell_distance, mutate_cell, sample_cell
from search_spaces.rnn.recipe import ACTIVATIONS, COMMUTATIVE_OPS, output_index

SPACE = get_space("rnn")


def scramble(recipe: Recipe, rng: np.random.Generator, shuffle_inputs: bool = True) -> Recipe:
    """The same cell with internal nodes renamed at random, the node order shuffled and (if
    asked) the inputs of commutative ops permuted."""
    names = [n for n, _ in recipe.nodes if output_index(n) is None]
    fresh = [f"v{int(i)}" for i in rng.permutation(len(names))]
    rename = dict(zip(names, fresh, strict=True))
    data = {}
    for name, node in recipe.nodes:
        inputs = [rename.get(i, i) for i in node.inputs]
        if shuffle_inputs and node.op in COMMUTATIVE_OPS:
            inputs = [inputs[j] for j in rng.permutation(len(inputs))]
        data[rename.get(name, name)] = {"op": node.op, "input": inputs}
    order = list(data)
    order = [order[j] for j in rng.permutation(len(order))]
    return Recipe.from_dict({n: data[n] for n in order})


def lin(*i: str) -> dict:
    return {"op": "linear", "input": list(i)}


def act(kind: str, i: str) -> dict:
    return {"op": f"activation_{kind}", "input": [i]}


# Cells with interchangeable (automorphic) branches: the hardest case for a canonical form.
SYMMETRIC = {
    "twin_branches": {
        "a": lin("x", "h_prev_0"),
        "b": lin("x", "h_prev_0"),
        "c1": act("tanh", "a"),
        "c2": act("tanh", "b"),
        "h_new_0": {"op": "elementwise_sum", "input": ["c1", "c2"]},
    },
    "twin_branches_deep": {
        "a": lin("x", "h_prev_0"),
        "b": lin("x", "h_prev_0"),
        "c1": act("sigm", "a"),
        "c2": act("sigm", "b"),
        "d1": lin("c1", "h_prev_1"),
        "d2": lin("c2", "h_prev_1"),
        "e1": act("tanh", "d1"),
        "e2": act("tanh", "d2"),
        "h_new_1": {"op": "elementwise_prod", "input": ["e1", "e2"]},
        "h_new_0": act("leaky_relu", "h_new_1"),
    },
    "three_twins_blend": {
        "a": lin("x", "h_prev_0"),
        "b": lin("x", "h_prev_0"),
        "c": lin("x", "h_prev_0"),
        "a1": act("sigm", "a"),
        "b1": act("sigm", "b"),
        "c1": act("sigm", "c"),
        "s": {"op": "elementwise_sum", "input": ["a1", "b1"]},
        "h_new_0": {"op": "blend", "input": ["c1", "s", "h_prev_0"]},
    },
}


def cells_for_tests() -> list[Recipe]:
    rng = np.random.default_rng(11)
    cells = [preset(n) for n in ("rnn", "lstm", "gru")]
    cells += [Recipe.from_dict(d) for d in SYMMETRIC.values()]
    cells += [sample_cell(rng) for _ in range(40)]
    return cells


CELLS = cells_for_tests()


@pytest.mark.parametrize("name", sorted(SYMMETRIC))
def test_symmetric_cells_every_node_order_gives_one_key(name: str) -> None:
    data = SYMMETRIC[name]
    rng = np.random.default_rng(0)
    names = list(data)
    keys = set()
    canon = set()
    for _ in range(300):
        order = [names[j] for j in rng.permutation(len(names))]
        r = Recipe.from_dict({n: data[n] for n in order})
        keys.add(r.key)
        canon.add(r.canonical.to_json())
        keys.add(scramble(r, rng).key)
    assert len(keys) == 1 and len(canon) == 1


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, len(CELLS) - 1), seed=st.integers(0, 2**32 - 1))
def test_renaming_and_commutative_permutation_keep_the_key(index: int, seed: int) -> None:
    cell = CELLS[index]
    twin = scramble(cell, np.random.default_rng(seed))
    assert twin.key == cell.key
    assert twin.canonical.to_dict() == cell.canonical.to_dict()
    assert cell_distance(cell, twin) == 0.0
    assert cell_distance(twin, cell) == 0.0


@pytest.mark.parametrize("cell", CELLS[:20], ids=lambda c: c.key)
def test_canonical_form_is_the_same_cell(cell: Recipe) -> None:
    canon = cell.canonical
    # Valid, idempotent, and structurally the same: ops, outputs, edges, parameters.
    again = Recipe.from_json(canon.to_json())
    assert again.canonical.to_dict() == canon.to_dict()
    assert again.key == cell.key
    assert Counter(n.op for _, n in canon.nodes) == Counter(n.op for _, n in cell.nodes)
    for i in range(cell.num_states):
        assert canon.node_map[f"h_new_{i}"].op == cell.node_map[f"h_new_{i}"].op
    assert sum(len(n.inputs) for _, n in canon.nodes) == sum(len(n.inputs) for _, n in cell.nodes)
    sizes = ModelSizes(50, 8, 12, 2)
    assert count_parameters(RNNLanguageModel(canon, sizes, device="meta")) == count_parameters(
        RNNLanguageModel(cell, sizes, device="meta")
    )


def test_blend_input_order_matters() -> None:
    gru = preset("gru").to_dict()
    z, a, b = gru["h_new_0"]["input"]
    keys = set()
    for perm in itertools.permutations([z, a, b]):
        d = {k: dict(v) for k, v in gru.items()}
        d["h_new_0"] = {"op": "blend", "input": list(perm)}
        keys.add(Recipe.from_dict(d).key)
    # z, h_prev_0 and the candidate are three different things: all 6 orders differ.
    assert len(keys) == 6


def test_blend_with_interchangeable_a_b_is_one_cell() -> None:
    base = {
        "f": lin("x", "h_prev_0"),
        "z": act("sigm", "f"),
        "p": act("tanh", "f"),
        "h_new_0": {"op": "blend", "input": ["z", "p", "h_prev_0"]},
    }
    swapped = dict(base, h_new_0={"op": "blend", "input": ["z", "h_prev_0", "p"]})
    assert Recipe.from_dict(base).key != Recipe.from_dict(swapped).key


def test_changing_an_op_changes_the_key() -> None:
    rnn = preset("rnn").to_dict()
    keys = {preset("rnn").key}
    for a in ACTIVATIONS:
        if a != "activation_tanh":
            keys.add(Recipe.from_dict(dict(rnn, h_new_0={"op": a, "input": ["f"]})).key)
    assert len(keys) == 3
    lstm = preset("lstm").to_dict()
    summed = dict(lstm, h_new_0={"op": "elementwise_sum", "input": ["h_new_1_act", "o_act"]})
    assert Recipe.from_dict(summed).key != preset("lstm").key


def test_changing_an_op_in_a_sampled_cell_changes_the_key() -> None:
    # A different multiset of ops is never the same architecture.
    rng = np.random.default_rng(21)
    swaps = {a: [b for b in ACTIVATIONS if b != a] for a in ACTIVATIONS}
    swaps.update({"elementwise_sum": ["elementwise_prod"], "elementwise_prod": ["elementwise_sum"]})
    tested = 0
    for _ in range(60):
        cell = sample_cell(rng)
        names = [n for n, node in cell.nodes if node.op in swaps]
        if not names:  # possible (linear and blend only), but rare
            continue
        name = names[int(rng.integers(len(names)))]
        for new in swaps[cell.node_map[name].op]:
            data = cell.to_dict()
            data[name] = {"op": new, "input": data[name]["input"]}
            other = Recipe.from_dict(data)
            assert other.key != cell.key
            assert cell_distance(cell, other) > 0
        tested += 1
    assert tested >= 50


def test_presets_have_distinct_keys() -> None:
    keys = [preset(n).key for n in ("rnn", "lstm", "gru")]
    assert len(set(keys)) == 3


@pytest.mark.parametrize("cell", CELLS[:12], ids=lambda c: c.key)
def test_to_record_round_trip(cell: Recipe) -> None:
    record = SPACE.to_record(cell)
    back = SPACE.validate(record)
    assert SPACE.key(back) == SPACE.key(cell)
    assert SPACE.to_record(back) == record
    assert SPACE.key(SPACE.validate(json.dumps(record))) == SPACE.key(cell)


def test_distance_properties() -> None:
    rng = np.random.default_rng(5)
    cells = [preset(n) for n in ("rnn", "lstm", "gru")] + [sample_cell(rng) for _ in range(12)]
    for a, b in itertools.combinations(cells, 2):
        d = cell_distance(a, b)
        assert 0.0 <= d <= 1.0
        assert d == pytest.approx(cell_distance(b, a), abs=0.0)
        if a.key != b.key:
            assert d > 0.0
    for a in cells:
        assert cell_distance(a, a) == 0.0
        assert SPACE.distance(a, scramble(a, rng)) == 0.0


def test_distance_grows_with_difference() -> None:
    rng = np.random.default_rng(8)
    cell = sample_cell(rng)
    child, _ = mutate_cell(cell, rng)
    far = preset("rnn")
    assert 0 < cell_distance(cell, child)
    # A single mutation keeps more in common than an unrelated tiny cell does.
    assert cell_distance(cell, child) < cell_distance(cell, far) or cell_distance(
        cell, far
    ) == pytest.approx(1.0)
