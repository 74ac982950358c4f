"""Recipe parsing and validation: every error path names the node at fault."""

from __future__ import annotations

import json

import pytest

from nas_engine.spaces import get_space
from search_spaces.rnn import Recipe, RecipeError, preset


def lin(*inputs: str) -> dict:
    return {"op": "linear", "input": list(inputs)}


def tanh(*inputs: str) -> dict:
    return {"op": "activation_tanh", "input": list(inputs)}


def op(name: str, *inputs: str) -> dict:
    return {"op": name, "input": list(inputs)}


BAD_RECIPES = {
    "cycle": (
        {"a": lin("x", "b"), "b": tanh("a"), "h_new_0": tanh("b")},
        r"node '(a|b)': part of a cycle",
    ),
    "cycle_through_output": (
        {"a": lin("x", "h_new_0"), "h_new_0": tanh("a")},
        r"node '(a|h_new_0)': part of a cycle",
    ),
    "self_loop": (
        {"a": lin("x", "a"), "h_new_0": tanh("a")},
        r"node 'a': part of a cycle",
    ),
    "unknown_op": (
        {"f": lin("x", "h_prev_0"), "h_new_0": op("conv3x3", "f")},
        r"node 'h_new_0': unknown op 'conv3x3'",
    ),
    "undefined_input": (
        {"f": lin("x", "h_prev_0"), "g": op("elementwise_sum", "f", "ghost"), "h_new_0": tanh("g")},
        r"node 'g': input 'ghost' is not defined",
    ),
    "blend_two_inputs": (
        {
            "f": lin("x", "h_prev_0"),
            "z": op("activation_sigm", "f"),
            "h_new_0": op("blend", "z", "f"),
        },
        r"node 'h_new_0': blend takes exactly 3 inputs, got 2",
    ),
    "blend_four_inputs": (
        {
            "f": lin("x", "h_prev_0"),
            "g": tanh("f"),
            "z": op("activation_sigm", "f"),
            "h_new_0": op("blend", "z", "f", "g", "h_prev_0"),
        },
        r"node 'h_new_0': blend takes exactly 3 inputs, got 4",
    ),
    "activation_two_inputs": (
        {"f": lin("x", "h_prev_0"), "g": lin("x"), "h_new_0": tanh("f", "g")},
        r"node 'h_new_0': activation_tanh takes exactly 1 inputs, got 2",
    ),
    "sum_one_input": (
        {"f": lin("x", "h_prev_0"), "s": op("elementwise_sum", "f"), "h_new_0": tanh("s")},
        r"node 's': elementwise_sum takes at least 2 inputs, got 1",
    ),
    "prod_one_input": (
        {"f": lin("x", "h_prev_0"), "h_new_0": op("elementwise_prod", "f")},
        r"node 'h_new_0': elementwise_prod takes at least 2 inputs, got 1",
    ),
    "linear_no_input": (
        {"f": lin("x", "h_prev_0"), "g": lin(), "h_new_0": op("elementwise_sum", "f", "g")},
        r"node 'g': linear takes at least 1 inputs, got 0",
    ),
    "no_h_new_0": (
        {"f": lin("x", "h_prev_0"), "out": tanh("f")},
        r"node 'h_new_0': missing",
    ),
    "only_h_new_1": (
        {"f": lin("x", "h_prev_0"), "h_new_1": tanh("f")},
        r"node 'h_new_0': missing",
    ),
    "gap_in_outputs": (
        {
            "f": lin("x", "h_prev_0", "h_prev_2"),
            "h_new_2": tanh("f"),
            "h_new_0": op("activation_sigm", "f"),
        },
        r"node 'h_new_1': missing",
    ),
    "h_prev_without_h_new": (
        {"f": lin("x", "h_prev_0", "h_prev_1"), "h_new_0": tanh("f")},
        r"node 'f': input 'h_prev_1' has no matching output h_new_1",
    ),
    "x_never_read": (
        {"f": lin("h_prev_0"), "h_new_0": tanh("f")},
        r"node 'x': the cell never reads its input x",
    ),
    "h_prev_1_unused": (
        {"f": lin("x", "h_prev_0"), "h_new_1": tanh("f"), "h_new_0": op("activation_sigm", "f")},
        r"node 'h_new_1': never read back \(h_prev_1 is unused\)",
    ),
    "dead_node": (
        {"f": lin("x", "h_prev_0"), "dead": tanh("f"), "h_new_0": op("activation_sigm", "f")},
        r"node 'dead': does not reach any output",
    ),
    "dead_chain": (
        {
            "f": lin("x", "h_prev_0"),
            "d1": lin("f"),
            "d2": tanh("d1"),
            "h_new_0": op("activation_sigm", "f"),
        },
        r"node '(d1|d2)': does not reach any output",
    ),
    "x_into_prod": (
        {"f": lin("x", "h_prev_0"), "g": tanh("f"), "h_new_0": op("elementwise_prod", "x", "g")},
        r"node 'h_new_0': x may only feed a linear node",
    ),
    "x_into_activation": (
        {"f": lin("x", "h_prev_0"), "g": tanh("x"), "h_new_0": op("elementwise_sum", "f", "g")},
        r"node 'g': x may only feed a linear node",
    ),
    "x_into_blend": (
        {
            "f": lin("x", "h_prev_0"),
            "z": op("activation_sigm", "f"),
            "h_new_0": op("blend", "z", "x", "f"),
        },
        r"node 'h_new_0': x may only feed a linear node",
    ),
    "duplicate_inputs": (
        {"f": lin("x", "x"), "h_new_0": tanh("f")},
        r"node 'f': the same input is listed twice",
    ),
    "duplicate_inputs_sum": (
        {"f": lin("x", "h_prev_0"), "h_new_0": op("elementwise_sum", "f", "f")},
        r"node 'h_new_0': the same input is listed twice",
    ),
    "reserved_x": (
        {"x": lin("h_prev_0"), "f": lin("x", "h_prev_0"), "h_new_0": tanh("f")},
        r"node 'x': the name is reserved",
    ),
    "reserved_h_prev": (
        {"h_prev_0": lin("x"), "f": lin("x", "h_prev_0"), "h_new_0": tanh("f")},
        r"node 'h_prev_0': the name is reserved",
    ),
    "spec_without_op": (
        {"f": {"input": ["x", "h_prev_0"]}, "h_new_0": tanh("f")},
        r"node 'f': expected",
    ),
    "spec_without_input": (
        {"f": {"op": "linear"}, "h_new_0": tanh("f")},
        r"node 'f': expected",
    ),
    "spec_not_an_object": (
        {"f": ["linear", "x"], "h_new_0": tanh("f")},
        r"node 'f': expected",
    ),
    "input_is_a_string": (
        {"f": {"op": "linear", "input": "x"}, "h_new_0": tanh("f")},
        r"node 'f': 'input' must be a list",
    ),
    "input_is_a_number": (
        {"f": {"op": "linear", "input": 3}, "h_new_0": tanh("f")},
        r"node 'f': 'input' must be a list",
    ),
    "input_is_null": (
        {"f": {"op": "linear", "input": None}, "h_new_0": tanh("f")},
        r"node 'f': 'input' must be a list",
    ),
    "input_names_not_strings": (
        {"f": {"op": "linear", "input": ["x", 0]}, "h_new_0": tanh("f")},
        r"node 'f': 'input' must be a list",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_from_dict_names_the_node(case: str) -> None:
    data, pattern = BAD_RECIPES[case]
    with pytest.raises(RecipeError, match=pattern):
        Recipe.from_dict(data)


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_from_json_and_space_validate(case: str) -> None:
    data, pattern = BAD_RECIPES[case]
    text = json.dumps(data)
    with pytest.raises(RecipeError, match=pattern):
        Recipe.from_json(text)
    # The space interface promises ValueError for bad input (RecipeError is one).
    with pytest.raises(ValueError, match=pattern):
        get_space("rnn").validate(text)


@pytest.mark.parametrize(
    "text",
    ['{"h_new_0": {"op": "linear", "input": ["x"]}', "not json at all", "", "{'a': 1}"],
)
def test_bad_json(text: str) -> None:
    with pytest.raises(RecipeError, match="not valid JSON"):
        Recipe.from_json(text)


@pytest.mark.parametrize("text", ["[]", "{}", "null", "3", '"h_new_0"', "[{}]"])
def test_json_that_is_not_an_object_of_nodes(text: str) -> None:
    with pytest.raises(RecipeError, match="non-empty JSON object"):
        Recipe.from_json(text)


def test_error_messages_are_one_line() -> None:
    for data, _ in BAD_RECIPES.values():
        with pytest.raises(RecipeError) as info:
            Recipe.from_dict(data)
        assert "\n" not in str(info.value)


def test_minimal_valid_cells() -> None:
    rnn = Recipe.from_dict({"f": lin("x", "h_prev_0"), "h_new_0": tanh("f")})
    assert rnn.num_states == 1
    # A linear node directly as output, reading x only (h_prev_0 is optional for k = 1).
    feedforward = Recipe.from_dict({"h_new_0": lin("x")})
    assert feedforward.num_states == 1
    two = Recipe.from_dict(
        {
            "f": lin("x", "h_prev_0", "h_prev_1"),
            "h_new_1": tanh("f"),
            "h_new_0": op("activation_sigm", "h_new_1"),
        }
    )
    assert two.num_states == 2


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_topological_order(name: str) -> None:
    recipe = preset(name)
    order = recipe.topological_order
    assert sorted(order) == sorted(recipe.node_map)
    position = {n: i for i, n in enumerate(order)}
    for n, node in recipe.node_map.items():
        for i in node.inputs:
            if i in position:
                assert position[i] < position[n], (i, n)


def test_to_json_round_trip_keeps_names_and_order() -> None:
    lstm = preset("lstm")
    again = Recipe.from_json(lstm.to_json())
    assert again == lstm
    assert list(again.to_dict()) == list(lstm.to_dict())


def test_valid_recipe_is_immutable_value() -> None:
    a = preset("gru")
    b = preset("gru")
    assert a == b and hash(a) == hash(b)
