"""NAS-Bench-BERT configurations: the benchmark's ``nas_config`` read as is, validated.

A configuration is a hidden size and a list of encoder layers, each with a token-mixing
operation (type and parameter), a head count, a feed-forward width and a feed-forward depth.
The benchmark writes it as ``{"hidden_size": H, "nas_config": {"encoder_layers": [...]}}``
(``hparams.model_hparam_overrides`` of an entry); the canonical record is the flat
``{"hidden_size": H, "encoder_layers": [...]}``. Both read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The benchmark's space (search_space.json of NAS-Bench-BERT).
HIDDEN_SIZES = (128, 256)
NUM_LAYERS = (2, 4)
OPERATIONS: dict[str, tuple[str | int, ...]] = {
    "SA": ("SDP", "WMA"),
    "LT": ("DFT", "DCT"),
    "DSC": (5, 9),
}
HEADS = (2, 4)
FEED_FORWARD_DIMS = (512, 1024)
FEED_FORWARD_DEPTHS = (1, 3)

LAYER_FIELDS = (
    "operation_type",
    "operation_parameter",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)


class BertConfigError(ValueError):
    """A configuration outside the space; the message names the layer and the field."""


def _positive_int(value: Any, what: str) -> int:
    # bool is an int in Python; True heads is a typo, not 1 head.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BertConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class LayerConfig:
    """One encoder layer: token mixing, then the feed-forward stack."""

    operation_type: str
    operation_parameter: str | int
    num_operation_heads: int
    feed_forward_dimension: int
    num_feed_forward: int

    @property
    def operation(self) -> str:
        """``TYPE:PARAMETER``, e.g. ``SA:SDP`` or ``DSC:9``."""
        return f"{self.operation_type}:{self.operation_parameter}"

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in LAYER_FIELDS}


@dataclass(frozen=True)
class BertConfig:
    hidden_size: int
    layers: tuple[LayerConfig, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict:
        """The canonical record (what ``from_dict`` reads back)."""
        return {
            "hidden_size": self.hidden_size,
            "encoder_layers": [x.to_dict() for x in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Short identifier: equal for equal configurations (layer order matters)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> BertConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BertConfigError(f"configuration is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> BertConfig:
        """Read the canonical record, the benchmark's ``model_hparam_overrides`` or a whole
        benchmark entry; raise :class:`BertConfigError` naming the first fault."""
        if not isinstance(data, Mapping):
            raise BertConfigError(f"a configuration is a JSON object, got {type(data).__name__}")
        if "hparams" in data:  # a whole benchmark entry
            data = (data.get("hparams") or {}).get("model_hparam_overrides") or {}
        if "hidden_size" not in data:
            raise BertConfigError("configuration has no 'hidden_size'")
        hidden = _positive_int(data["hidden_size"], "hidden_size")
        layers_data = data.get("encoder_layers")
        if layers_data is None:
            layers_data = (data.get("nas_config") or {}).get("encoder_layers")
        if not isinstance(layers_data, list) or not layers_data:
            raise BertConfigError("configuration has no non-empty 'encoder_layers' list")
        layers = tuple(_layer(i, d, hidden) for i, d in enumerate(layers_data))
        return cls(hidden, layers)


def _layer(index: int, data: Any, hidden: int) -> LayerConfig:
    where = f"encoder layer {index}"
    if not isinstance(data, Mapping):
        raise BertConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [f for f in LAYER_FIELDS if f not in data]
    if missing:
        raise BertConfigError(f"{where}: missing {', '.join(missing)}")
    extra = sorted(set(data) - set(LAYER_FIELDS))
    if extra:
        raise BertConfigError(f"{where}: unknown field {extra[0]!r}")
    op = data["operation_type"]
    if op not in OPERATIONS:
        raise BertConfigError(
            f"{where}: unknown operation_type {op!r} (known: {', '.join(OPERATIONS)})"
        )
    param = data["operation_parameter"]
    if op == "DSC" and isinstance(param, str) and param.isdigit():
        param = int(param)  # a kernel size written as text is still that kernel size
    if isinstance(param, bool) or param not in OPERATIONS[op]:
        allowed = ", ".join(map(str, OPERATIONS[op]))
        raise BertConfigError(
            f"{where}: bad operation_parameter {param!r} for {op} (allowed: {allowed})"
        )
    heads = _positive_int(data["num_operation_heads"], f"{where}: num_operation_heads")
    if hidden % heads:
        raise BertConfigError(
            f"{where}: hidden size {hidden} is not divisible by num_operation_heads {heads}"
        )
    ff_dim = _positive_int(data["feed_forward_dimension"], f"{where}: feed_forward_dimension")
    ff_depth = _positive_int(data["num_feed_forward"], f"{where}: num_feed_forward")
    return LayerConfig(op, param, heads, ff_dim, ff_depth)
