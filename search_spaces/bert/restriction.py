"""Space restriction: allowed values per field, declared by the user.

The paper's finding for transformers is that restricting the space to the families that do
well is itself a search tool. A :class:`Restriction` narrows every field of the benchmark's
space to a subset; sampling and mutation then never leave it.

Written three ways (``parse_restriction``):

* inline: ``hidden_size=256,num_layers=4,operation_type=SA|DSC`` (``|`` separates values);
* a JSON or TOML file of ``field = value or [values]`` (an optional ``description`` is kept);
* the name of a preset shipped in ``search_spaces/bert/presets/`` (``--restrict NAME``).

Fields: ``hidden_size``, ``num_layers`` (whole model), and per layer (every layer obeys them)
``operation_type``, ``operation_parameter``, ``operation`` (``TYPE:PARAMETER`` pairs such as
``SA:SDP`` or ``DSC:9``), ``num_operation_heads``, ``feed_forward_dimension``,
``num_feed_forward``. Each value must belong to the benchmark's space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    FEED_FORWARD_DEPTHS,
    FEED_FORWARD_DIMS,
    HEADS,
    HIDDEN_SIZES,
    NUM_LAYERS,
    OPERATIONS,
    BertConfig,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets"

FIELDS = (
    "hidden_size",
    "num_layers",
    "operation_type",
    "operation_parameter",
    "operation",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)

Operation = tuple[str, "str | int"]
ALL_OPERATIONS: tuple[Operation, ...] = tuple(
    (kind, param) for kind, params in OPERATIONS.items() for param in params
)


class RestrictionError(ValueError):
    """A restriction that cannot be used; one line for the user."""


@dataclass(frozen=True)
class Restriction:
    """Allowed values per field; the default allows the whole benchmark space."""

    hidden_sizes: tuple[int, ...] = HIDDEN_SIZES
    num_layers: tuple[int, ...] = NUM_LAYERS
    operations: tuple[Operation, ...] = ALL_OPERATIONS
    heads: tuple[int, ...] = HEADS
    feed_forward_dims: tuple[int, ...] = FEED_FORWARD_DIMS
    feed_forward_depths: tuple[int, ...] = FEED_FORWARD_DEPTHS
    description: str = field(default="", compare=False)

    @property
    def is_whole_space(self) -> bool:
        return self == Restriction()

    @property
    def size(self) -> int:
        """Number of configurations inside the restriction."""
        per_layer = (
            len(self.operations)
            * len(self.heads)
            * len(self.feed_forward_dims)
            * len(self.feed_forward_depths)
        )
        return len(self.hidden_sizes) * sum(per_layer**n for n in self.num_layers)

    def violation(self, config: BertConfig) -> str | None:
        """Why ``config`` is outside the restriction, or None when it is inside."""
        if config.hidden_size not in self.hidden_sizes:
            return f"hidden_size {config.hidden_size} not in {list(self.hidden_sizes)}"
        if config.num_layers not in self.num_layers:
            return f"num_layers {config.num_layers} not in {list(self.num_layers)}"
        for i, layer in enumerate(config.layers):
            if (layer.operation_type, layer.operation_parameter) not in self.operations:
                return f"layer {i}: operation {layer.operation} not allowed"
            for name, value, allowed in (
                ("num_operation_heads", layer.num_operation_heads, self.heads),
                ("feed_forward_dimension", layer.feed_forward_dimension, self.feed_forward_dims),
                ("num_feed_forward", layer.num_feed_forward, self.feed_forward_depths),
            ):
                if value not in allowed:
                    return f"layer {i}: {name} {value} not in {list(allowed)}"
        return None

    def contains(self, config: BertConfig) -> bool:
        return self.violation(config) is None

    def to_dict(self) -> dict:
        """JSON-able; ``parse_restriction`` reads it back."""
        return {
            "hidden_size": list(self.hidden_sizes),
            "num_layers": list(self.num_layers),
            "operation": [f"{k}:{p}" for k, p in self.operations],
            "num_operation_heads": list(self.heads),
            "feed_forward_dimension": list(self.feed_forward_dims),
            "num_feed_forward": list(self.feed_forward_depths),
        }


def _values(name: str, raw: Any) -> list:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise RestrictionError(f"restriction field {name!r} allows no value")
    out = []
    for v in values:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        elif isinstance(v, str):
            v = v.strip()
        out.append(v)
    return out


def _subset(name: str, raw: Any, space: tuple) -> tuple:
    values = _values(name, raw)
    for v in values:
        if isinstance(v, bool) or v not in space:
            raise RestrictionError(
                f"restriction {name}={v!r} is outside the space (allowed: "
                f"{', '.join(map(str, space))})"
            )
    return tuple(v for v in space if v in values)  # the space's order, no repeats


def restriction_from_mapping(data: Mapping[str, Any]) -> Restriction:
    """Build a restriction from ``{field: value or [values]}``; unknown fields are errors."""
    if not isinstance(data, Mapping):
        raise RestrictionError("a restriction is a mapping of field -> allowed values")
    description = str(data.get("description", ""))
    unknown = sorted(set(data) - set(FIELDS) - {"description"})
    if unknown:
        raise RestrictionError(
            f"unknown restriction field {unknown[0]!r} (known: {', '.join(FIELDS)})"
        )
    ops = list(ALL_OPERATIONS)
    if "operation_type" in data:
        kinds = _subset("operation_type", data["operation_type"], tuple(OPERATIONS))
        ops = [op for op in ops if op[0] in kinds]
    if "operation_parameter" in data:
        params = tuple(p for ps in OPERATIONS.values() for p in ps)
        allowed = _subset("operation_parameter", data["operation_parameter"], params)
        ops = [op for op in ops if op[1] in allowed]
    if "operation" in data:
        named = _subset("operation", data["operation"], tuple(f"{k}:{p}" for k, p in ops or []))
        ops = [op for op in ops if f"{op[0]}:{op[1]}" in named]
    if not ops:
        raise RestrictionError("the restriction allows no operation")
    kwargs: dict[str, Any] = {"operations": tuple(ops), "description": description}
    for name, attr, space in (
        ("hidden_size", "hidden_sizes", HIDDEN_SIZES),
        ("num_layers", "num_layers", NUM_LAYERS),
        ("num_operation_heads", "heads", HEADS),
        ("feed_forward_dimension", "feed_forward_dims", FEED_FORWARD_DIMS),
        ("num_feed_forward", "feed_forward_depths", FEED_FORWARD_DEPTHS),
    ):
        if name in data:
            kwargs[attr] = _subset(name, data[name], space)
    return Restriction(**kwargs)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _read_file(path: Path) -> Mapping[str, Any]:
    try:
        if path.suffix == ".toml":
            import tomllib  # Python >= 3.11

            return tomllib.loads(path.read_text(encoding="utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RestrictionError(f"cannot read restriction file {str(path)!r}: {exc}") from None


def parse_restriction(text: str | Mapping[str, Any] | None) -> Restriction:
    """A restriction from inline ``field=v|v,...``, a .json/.toml file, a preset name, or a
    mapping; None or an empty string is the whole space."""
    if text is None:
        return Restriction()
    if isinstance(text, Mapping):
        return restriction_from_mapping(text)
    spec = text.strip()
    if not spec:
        return Restriction()
    if "=" not in spec:
        path = Path(spec)
        if path.suffix in (".json", ".toml"):
            if not path.is_file():
                raise RestrictionError(f"restriction file {spec!r} does not exist")
            return restriction_from_mapping(_read_file(path))
        if spec in preset_names():
            return restriction_from_mapping(_read_file(PRESET_DIR / f"{spec}.json"))
        raise RestrictionError(
            f"restriction {spec!r} is neither FIELD=VALUE[|VALUE],..., a .json/.toml file, "
            f"nor a preset (presets: {', '.join(preset_names()) or 'none'})"
        )
    data: dict[str, Any] = {}
    for part in spec.split(","):
        name, sep, values = (s.strip() for s in part.partition("="))
        if not sep or not name or not values:
            raise RestrictionError(f"restriction part {part.strip()!r} is not FIELD=VALUE[|VALUE]")
        if name in data:
            raise RestrictionError(f"restriction field {name!r} given twice")
        data[name] = [v for v in values.split("|")]
    return restriction_from_mapping(data)
