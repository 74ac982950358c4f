"""Mutation: every child is a valid, different cell of the same space."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_engine.spaces import get_space
from search_spaces.rnn import Recipe, preset
from search_spaces.rnn.generator import MUTATIONS, mutate_cell, sample_cell

SPACE = get_space("rnn")


def check_child(parent: Recipe, child: Recipe, kind: str, max_nodes: int = 24) -> None:
    assert kind in MUTATIONS
    assert child.key != parent.key
    again = Recipe.from_json(child.to_json())  # re-validates from scratch
    assert again.key == child.key
    assert SPACE.validate(SPACE.to_record(child)).key == child.key
    assert child.num_states == parent.num_states
    assert len(child.nodes) <= max(max_nodes, len(parent.nodes))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutating_a_sample_gives_a_valid_different_child(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parent = sample_cell(rng)
    child, kind = SPACE.mutate(parent, rng)
    check_child(parent, child, kind)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["rnn", "lstm", "gru"]), seed=st.integers(0, 2**32 - 1))
def test_mutating_a_preset(name: str, seed: int) -> None:
    parent = preset(name)
    child, kind = mutate_cell(parent, np.random.default_rng(seed))
    check_child(parent, child, kind)


@pytest.mark.parametrize("seed", range(6))
def test_chains_of_mutations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cell = sample_cell(rng) if seed % 2 else preset(["rnn", "lstm", "gru"][seed % 3])
    kinds = Counter()
    for _ in range(40):
        child, kind = mutate_cell(cell, rng, max_nodes=16)
        check_child(cell, child, kind, max_nodes=16)
        kinds[kind] += 1
        cell = child
    assert len(kinds) >= 3


def test_every_mutation_kind_occurs() -> None:
    rng = np.random.default_rng(0)
    kinds = Counter()
    for _ in range(200):
        _, kind = mutate_cell(sample_cell(rng), rng)
        kinds[kind] += 1
    assert set(kinds) == set(MUTATIONS)


def test_mutation_is_deterministic_per_seed() -> None:
    parent = preset("lstm")
    a = mutate_cell(parent, np.random.default_rng(4))
    b = mutate_cell(parent, np.random.default_rng(4))
    assert a[0].key == b[0].key and a[1] == b[1]


def test_node_limit_is_respected() -> None:
    rng = np.random.default_rng(1)
    cell = preset("lstm")  # 13 nodes
    for _ in range(60):
        cell, _ = mutate_cell(cell, rng, max_nodes=14)
        assert len(cell.nodes) <= 14
