"""NAS-Bench-BERT configurations: validation, canonical form, sampling, mutation, distance,
and the space restriction (nothing sampled or mutated ever leaves it)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from helpers import DATA_DIR, require
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_engine.spaces import get_space
from search_spaces.bert import (
    BertConfig,
    BertConfigError,
    LayerConfig,
    Restriction,
    RestrictionError,
    parse_restriction,
    preset_names,
)
from search_spaces.bert.config import OPERATIONS
from search_spaces.bert.generator import MUTATIONS, config_distance, mutate_config, sample_config

BENCHMARK_DEV = DATA_DIR / "nasbench_bert" / "benchmark_dev.json"
SPACE = get_space("bert")


def layer(op="SA", param="SDP", heads=2, ff=512, depth=1) -> dict:
    return {
        "operation_type": op,
        "operation_parameter": param,
        "num_operation_heads": heads,
        "feed_forward_dimension": ff,
        "num_feed_forward": depth,
    }


def config(hidden=128, *layers) -> dict:
    return {"hidden_size": hidden, "encoder_layers": list(layers) or [layer()]}


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (config(128, layer(heads=3)), "hidden size 128 is not divisible by num_operation_heads 3"),
        (config(128, layer(op="RNN")), "unknown operation_type 'RNN'"),
        (config(128, layer(op="SA", param="DFT")), "bad operation_parameter 'DFT' for SA"),
        (config(128, layer(op="DSC", param=7)), "bad operation_parameter 7 for DSC"),
        (config(128, layer(op="LT", param=5)), "bad operation_parameter 5 for LT"),
        (config(128, layer(), layer(heads=0)), "encoder layer 1: num_operation_heads must be"),
        (config(128, layer(ff=True)), "feed_forward_dimension must be a positive integer"),
        ({"hidden_size": 128, "encoder_layers": []}, "no non-empty 'encoder_layers'"),
        ({"encoder_layers": [layer()]}, "no 'hidden_size'"),
        (config(128, {**layer(), "dropout": 0.1}), "unknown field 'dropout'"),
        (config(128, {"operation_type": "SA"}), "missing operation_parameter"),
        ([1, 2], "a configuration is a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_validation_names_the_fault(data, message: str) -> None:
    with pytest.raises(BertConfigError) as info:
        SPACE.validate(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_reads_the_benchmark_format_and_the_canonical_record() -> None:
    layers = [layer("DSC", 9, 4, 1024, 3), layer("LT", "DCT")]
    bench = {"hidden_size": 256, "nas_config": {"encoder_layers": layers}}
    a = SPACE.validate(bench)
    b = SPACE.validate(json.dumps({"hidden_size": 256, "encoder_layers": layers}))
    c = SPACE.validate({"hparams": {"model_hparam_overrides": bench}})
    assert a == b == c and a.key == b.key == c.key
    assert a.layers[0] == LayerConfig("DSC", 9, 4, 1024, 3)
    assert SPACE.to_record(a) == {"hidden_size": 256, "encoder_layers": layers}
    # a kernel size written as text is the same kernel size, the same key
    layers_text = [layer("DSC", "9", 4, 1024, 3), layer("LT", "DCT")]
    assert SPACE.validate(config(256, *layers_text)).key == a.key
    # layer order matters: another architecture
    assert SPACE.validate(config(256, *layers[::-1])).key != a.key


def test_every_benchmark_entry_validates_and_round_trips() -> None:
    entries = json.loads(require(BENCHMARK_DEV).read_text())
    assert len(entries) == 250
    for entry in entries:
        arch = SPACE.validate(entry["hparams"]["model_hparam_overrides"])
        assert SPACE.validate(SPACE.to_record(arch)).key == arch.key
        assert Restriction().contains(arch)


# ------------------------------------------------------------------ sampling
def test_sampling_is_uniform_over_each_choice() -> None:
    rng = np.random.default_rng(0)
    samples = [sample_config(Restriction(), rng) for _ in range(3000)]
    hidden = Counter(s.hidden_size for s in samples)
    depth = Counter(s.num_layers for s in samples)
    ops = Counter(x.operation for s in samples for x in s.layers)
    heads = Counter(x.num_operation_heads for s in samples for x in s.layers)
    n_layers = sum(ops.values())
    assert set(hidden) == {128, 256} and set(depth) == {2, 4} and len(ops) == 6
    # binomial standard errors: 3000 draws -> sd 0.009 of a half; n_layers ~ 9000 -> 0.004
    for share in (hidden[128] / 3000, depth[2] / 3000, heads[2] / n_layers):
        assert abs(share - 0.5) < 0.04
    for count in ops.values():
        assert abs(count / n_layers - 1 / 6) < 0.02


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_samples_and_mutations_are_valid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parent = SPACE.sample(rng)
    assert SPACE.validate(SPACE.to_record(parent)) == parent
    child, kind = SPACE.mutate(parent, rng)
    assert kind.split("@")[0] in MUTATIONS
    assert child.key != parent.key
    assert SPACE.validate(SPACE.to_record(child)) == child
    assert 0 < SPACE.distance(parent, child) <= 1


def test_every_mutation_kind_occurs() -> None:
    rng = np.random.default_rng(1)
    arch = SPACE.sample(rng)
    kinds = Counter()
    for _ in range(300):
        arch, kind = SPACE.mutate(arch, rng)
        kinds[kind.split("@")[0]] += 1
    assert set(kinds) == set(MUTATIONS)


# ------------------------------------------------------------------ distance
def test_distance_by_hand() -> None:
    a = BertConfig.from_dict(config(128, layer(), layer()))
    same = BertConfig.from_dict(config(128, layer(), layer()))
    assert config_distance(a, same) == 0.0
    # hidden size differs (1) + layer 1 differs in heads (1/5 of its fields): over 3 slots
    b = BertConfig.from_dict(config(256, layer(), layer(heads=4)))
    assert config_distance(a, b) == pytest.approx((1 + 1 / 5) / 3)
    # two extra layers count 1 each; 5 slots
    c = BertConfig.from_dict(config(128, layer(), layer(), layer(), layer()))
    assert config_distance(a, c) == pytest.approx(2 / 5)
    assert config_distance(c, a) == config_distance(a, c)
    far = BertConfig.from_dict(
        config(256, layer("DSC", 5, 4, 1024, 3), layer("LT", "DFT", 4, 1024, 3))
    )
    assert config_distance(a, far) == 1.0


# ------------------------------------------------------------------ restriction
def test_inline_restriction() -> None:
    r = parse_restriction("hidden_size=256,num_layers=4,operation_type=SA|DSC")
    assert r.hidden_sizes == (256,) and r.num_layers == (4,)
    assert r.operations == (("SA", "SDP"), ("SA", "WMA"), ("DSC", 5), ("DSC", 9))
    assert r.heads == (2, 4)
    assert r.size == 1 * (4 * 2 * 2 * 2) ** 4
    assert Restriction().size == 2 * (48**2 + 48**4)  # 6 ops x 2 x 2 x 2 per layer
    r2 = parse_restriction("operation=SA:SDP|DSC:9, num_feed_forward=3")
    assert r2.operations == (("SA", "SDP"), ("DSC", 9)) and r2.feed_forward_depths == (3,)
    assert parse_restriction("") == Restriction() and parse_restriction(None).is_whole_space


def test_restriction_files(tmp_path) -> None:
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"hidden_size": [256], "operation_parameter": ["SDP", 9]}))
    t = tmp_path / "r.toml"
    t.write_text('hidden_size = 256\noperation_parameter = ["SDP", 9]\ndescription = "x"\n')
    rj, rt = parse_restriction(str(j)), parse_restriction(str(t))
    assert rj == rt
    assert rj.operations == (("SA", "SDP"), ("DSC", 9))
    assert rt.description == "x"
    assert parse_restriction(rj.to_dict()) == rj  # to_dict reads back


def test_shipped_presets_parse_and_sample_inside() -> None:
    assert preset_names()
    rng = np.random.default_rng(0)
    for name in preset_names():
        r = parse_restriction(name)
        assert not r.is_whole_space
        for _ in range(20):
            assert r.contains(get_space("bert", name).sample(rng))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hidden_size=512", "hidden_size=512 is outside the space"),
        ("hidden=256", "unknown restriction field 'hidden'"),
        ("operation_type=SA,operation_parameter=DFT", "allows no operation"),
        ("hidden_size", "neither FIELD=VALUE"),
        ("nope.json", "does not exist"),
        ("hidden_size=256,hidden_size=128", "given twice"),
        ("hidden_size=", "is not FIELD=VALUE"),
        ("operation=SA:XYZ", "outside the space"),
    ],
)
def test_bad_restrictions_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(RestrictionError) as info:
        parse_restriction(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_only_bert_takes_a_restriction() -> None:
    with pytest.raises(ValueError, match="takes no restriction"):
        get_space("rnn", "hidden_size=256")


_FIELD_VALUES = {
    "hidden_size": [128, 256],
    "num_layers": [2, 4],
    "operation": [f"{k}:{p}" for k, ps in OPERATIONS.items() for p in ps],
    "num_operation_heads": [2, 4],
    "feed_forward_dimension": [512, 1024],
    "num_feed_forward": [1, 3],
}


@st.composite
def restrictions(draw) -> Restriction:
    data = {}
    for name, values in _FIELD_VALUES.items():
        if draw(st.booleans()):
            data[name] = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    return parse_restriction(data)


@settings(max_examples=150, deadline=None)
@given(restriction=restrictions(), seed=st.integers(0, 2**32 - 1))
def test_restriction_is_never_escaped(restriction: Restriction, seed: int) -> None:
    rng = np.random.default_rng(seed)
    space = get_space("bert")
    space.restriction = restriction
    arch = space.sample(rng)
    assert restriction.contains(arch), restriction.violation(arch)
    for _ in range(15):
        child, kind = space.mutate(arch, rng)
        assert restriction.contains(child), (kind, restriction.violation(child))
        if restriction.size > 1:
            assert child.key != arch.key
        arch = child


def test_mutation_refuses_a_parent_outside_the_restriction() -> None:
    r = parse_restriction("hidden_size=256")
    outside = BertConfig.from_dict(config(128, layer(), layer()))
    with pytest.raises(ValueError, match="outside the restriction"):
        mutate_config(outside, r, np.random.default_rng(0))
