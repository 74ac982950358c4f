"""The NAS-Bench-NLP generator, presets, and the benchmark's own recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import EXAMPLES_JSON, read_logs, require

from nas_engine.spaces import get_space, space_names
from search_spaces.rnn import Recipe, preset
from search_spaces.rnn.generator import PRESETS, sample_cell
from search_spaces.rnn.recipe import ACTIVATIONS, BLEND, LINEAR, OPS, PROD, SUM, output_index

N_SAMPLES = 300


@pytest.fixture(scope="module")
def samples() -> list[Recipe]:
    rng = np.random.default_rng(12345)
    return [sample_cell(rng) for _ in range(N_SAMPLES)]


def test_samples_are_valid(samples: list[Recipe]) -> None:
    for cell in samples:
        # Independent re-parse of the serialised cell (validation runs again).
        again = Recipe.from_json(cell.to_json())
        assert again.key == cell.key


def test_samples_follow_the_generator_rules(samples: list[Recipe]) -> None:
    for cell in samples:
        graph = cell.node_map
        assert cell.num_states == 2  # k = 2
        assert sorted(n for n in graph if output_index(n) is not None) == ["h_new_0", "h_new_1"]
        used = {i for node in graph.values() for i in node.inputs}
        assert {"x", "h_prev_0", "h_prev_1"} <= used, cell.to_json()
        for i in range(2):
            direct = graph[f"h_new_{i}"].inputs
            assert not any(s.startswith("h_prev_") for s in direct), cell.to_json()
        for name, node in graph.items():
            assert node.op in OPS
            if node.op == LINEAR:
                # Linear inputs: base nodes or activation nodes only; 2 or 3 of them.
                assert len(node.inputs) in (2, 3)
                for inp in node.inputs:
                    assert inp == "x" or inp.startswith("h_prev_") or graph[inp].op in ACTIVATIONS
            elif node.op == BLEND:
                assert len(node.inputs) == 3 and "x" not in node.inputs
            elif node.op in (PROD, SUM):
                assert len(node.inputs) == 2 and "x" not in node.inputs
            else:
                assert node.op in ACTIVATIONS and len(node.inputs) == 1
                assert graph.get(node.inputs[0]) is not None
                assert graph[node.inputs[0]].op == LINEAR, name
        # 9 nodes are added (10 when the last op is a linear + activation pair); some pruned.
        assert 1 <= len(graph) <= 10


def test_samples_use_every_op_and_are_diverse(samples: list[Recipe]) -> None:
    ops = {node.op for cell in samples for _, node in cell.nodes}
    assert ops == set(OPS)
    keys = {cell.key for cell in samples}
    assert len(keys) > 0.9 * N_SAMPLES


def test_sampling_is_deterministic_per_seed() -> None:
    a = [sample_cell(np.random.default_rng(7)).key for _ in range(3)]
    b = [sample_cell(np.random.default_rng(7)).key for _ in range(3)]
    c = [sample_cell(np.random.default_rng(8)).key for _ in range(3)]
    assert a == b
    assert a != c
    space = get_space("rnn")
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [space.sample(rng1).key for _ in range(5)] == [space.sample(rng2).key for _ in range(5)]


def test_presets() -> None:
    assert set(PRESETS) == {"rnn", "lstm", "gru"}
    assert set(get_space("rnn").presets()) == {"rnn", "lstm", "gru"}
    assert preset("rnn").num_states == 1
    assert preset("lstm").num_states == 2
    assert preset("gru").num_states == 1
    with pytest.raises(KeyError, match="unknown preset 'transformer'"):
        preset("transformer")


def test_space_registry() -> None:
    assert space_names() == ["rnn", "bert"]
    with pytest.raises(KeyError, match="known: rnn, bert"):
        get_space("cnn")


def test_example_recipes_parse_and_match_presets() -> None:
    examples = json.loads(require(EXAMPLES_JSON).read_text())
    assert len(examples) == 10
    cells = [Recipe.from_dict(e) for e in examples]
    # The benchmark's own list starts with its RNN, LSTM and GRU cells.
    assert cells[0].key == preset("rnn").key
    assert cells[1].key == preset("lstm").key
    assert cells[2].key == preset("gru").key
    # Example 3 is the RNN cell again with its linear inputs in the other order.
    assert cells[3].to_dict() != cells[0].to_dict()
    assert cells[3].key == cells[0].key
    assert len({c.key for c in cells}) == 9


def test_every_log_recipe_parses() -> None:
    logs = read_logs()
    assert len(logs) == 345
    params_by_key: dict[str, set[int]] = {}
    for name, log in logs:
        cell = Recipe.from_json(log["recepie"])
        assert cell.num_states >= 1, name
        params_by_key.setdefault(cell.key, set()).add(log["num_params"])
    assert len(params_by_key) > 250
    # Cells the canonical form merges are the same architecture: the benchmark counted the
    # same number of parameters for each.
    for key, counts in params_by_key.items():
        assert len(counts) == 1, (key, counts)
