"""Sampling, mutation and distance for NAS-Bench-BERT configurations, inside a restriction."""

from __future__ import annotations

import numpy as np

from .config import LAYER_FIELDS, BertConfig, LayerConfig
from .restriction import Restriction

MUTATIONS = ("hidden_size", "num_layers", "operation", "heads", "ff_dim", "ff_depth")


def _pick(values: tuple, rng: np.random.Generator):
    return values[int(rng.integers(len(values)))]


def sample_layer(restriction: Restriction, rng: np.random.Generator) -> LayerConfig:
    kind, param = _pick(restriction.operations, rng)
    return LayerConfig(
        kind,
        param,
        _pick(restriction.heads, rng),
        _pick(restriction.feed_forward_dims, rng),
        _pick(restriction.feed_forward_depths, rng),
    )


def sample_config(restriction: Restriction, rng: np.random.Generator) -> BertConfig:
    """Uniform over the configurations of the restriction given a depth: the hidden size, the
    depth and every layer field drawn independently and uniformly from their allowed values
    (an operation is one of the allowed TYPE:PARAMETER pairs, so the benchmark's six are
    equally likely, as in its generator)."""
    hidden = _pick(restriction.hidden_sizes, rng)
    depth = _pick(restriction.num_layers, rng)
    return BertConfig(hidden, tuple(sample_layer(restriction, rng) for _ in range(depth)))


def _alternatives(current, allowed: tuple) -> tuple:
    return tuple(v for v in allowed if v != current)


def mutate_config(
    config: BertConfig, restriction: Restriction, rng: np.random.Generator
) -> tuple[BertConfig, str]:
    """A child that differs from ``config`` in one choice, drawn from the restriction's
    allowed values: the hidden size, the depth (new layers are sampled, surplus layers are
    dropped from a random position), or one layer's operation, heads, feed-forward width or
    feed-forward depth. The kind is uniform among the kinds that have an alternative; when no
    field can change (a restriction of one configuration) the child is a fresh sample."""
    if not restriction.contains(config):
        raise ValueError(
            f"mutation of a configuration outside the restriction: {restriction.violation(config)}"
        )
    layers = list(config.layers)
    kinds = []
    if _alternatives(config.hidden_size, restriction.hidden_sizes):
        kinds.append("hidden_size")
    if _alternatives(config.num_layers, restriction.num_layers):
        kinds.append("num_layers")
    per_layer = {
        "operation": ("operation", restriction.operations),
        "heads": ("num_operation_heads", restriction.heads),
        "ff_dim": ("feed_forward_dimension", restriction.feed_forward_dims),
        "ff_depth": ("num_feed_forward", restriction.feed_forward_depths),
    }
    kinds += [k for k, (_, allowed) in per_layer.items() if len(allowed) > 1]
    if not kinds:
        return sample_config(restriction, rng), "resample"
    kind = _pick(tuple(kinds), rng)
    if kind == "hidden_size":
        hidden = _pick(_alternatives(config.hidden_size, restriction.hidden_sizes), rng)
        return BertConfig(hidden, config.layers), kind
    if kind == "num_layers":
        depth = _pick(_alternatives(config.num_layers, restriction.num_layers), rng)
        while len(layers) > depth:
            layers.pop(int(rng.integers(len(layers))))
        while len(layers) < depth:
            layers.insert(int(rng.integers(len(layers) + 1)), sample_layer(restriction, rng))
        return BertConfig(config.hidden_size, tuple(layers)), kind
    index = int(rng.integers(len(layers)))
    layer = layers[index].to_dict()
    name, allowed = per_layer[kind]
    if name == "operation":
        current = (layer["operation_type"], layer["operation_parameter"])
        layer["operation_type"], layer["operation_parameter"] = _pick(
            _alternatives(current, allowed), rng
        )
    else:
        layer[name] = _pick(_alternatives(layer[name], allowed), rng)
    layers[index] = LayerConfig(**layer)
    return BertConfig(config.hidden_size, tuple(layers)), f"{kind}@{index}"


def config_distance(a: BertConfig, b: BertConfig) -> float:
    """Mean disagreement over 1 + max(depth) slots: the hidden size (0 or 1), then each layer
    position, the fraction of its five fields that differ (a layer present in only one of the
    two counts 1). 0 for the same configuration, 1 for nothing in common."""
    slots = 1 + max(a.num_layers, b.num_layers)
    total = float(a.hidden_size != b.hidden_size)
    for i in range(max(a.num_layers, b.num_layers)):
        if i >= a.num_layers or i >= b.num_layers:
            total += 1.0
            continue
        la, lb = a.layers[i], b.layers[i]
        total += sum(getattr(la, f) != getattr(lb, f) for f in LAYER_FIELDS) / len(LAYER_FIELDS)
    return total / slots
