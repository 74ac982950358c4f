"""NAS-Bench-NLP cell recipes: parsing, validation and a canonical form.

A recipe maps node names to ``{"op": OP, "input": [names...]}``. The cell reads ``x`` and
``h_prev_0 .. h_prev_{k-1}`` and writes ``h_new_0 .. h_new_{k-1}``; ``h_new_0`` is the layer
output. This is exactly the benchmark's ``recepie`` field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

LINEAR = "linear"
BLEND = "blend"
PROD = "elementwise_prod"
SUM = "elementwise_sum"
ACTIVATIONS = ("activation_tanh", "activation_sigm", "activation_leaky_relu")
OPS = (LINEAR, BLEND, PROD, SUM, *ACTIVATIONS)

# Inputs of these ops are interchangeable (each linear input has its own weight matrix),
# so their order carries no architectural meaning.
COMMUTATIVE_OPS = frozenset({LINEAR, PROD, SUM})

_OUTPUT_RE = re.compile(r"^h_new_(\d+)$")
_STATE_RE = re.compile(r"^h_prev_(\d+)$")


class RecipeError(ValueError):
    """A recipe that does not describe a valid cell; the message names the bad node."""


def _arity_ok(op: str, n: int) -> bool:
    if op == LINEAR:
        return n >= 1
    if op == BLEND:
        return n == 3
    if op in (PROD, SUM):
        return n >= 2
    return n == 1  # activations


_ARITY_TEXT = {
    LINEAR: "at least 1",
    BLEND: "exactly 3",
    PROD: "at least 2",
    SUM: "at least 2",
    **{a: "exactly 1" for a in ACTIVATIONS},
}


def ancestors(inputs_of: Mapping[str, Iterable[str]], roots: Iterable[str]) -> set[str]:
    """The nodes of a graph (node -> its input names) that ``roots`` depend on, roots included;
    names outside the graph (cell inputs) are left out."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen or n not in inputs_of:
            continue
        seen.add(n)
        stack.extend(inputs_of[n])
    return seen


def output_index(name: str) -> int | None:
    m = _OUTPUT_RE.match(name)
    return int(m.group(1)) if m else None


def state_index(name: str) -> int | None:
    m = _STATE_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """A validated cell graph. Build with :meth:`from_json` / :meth:`from_dict`."""

    nodes: tuple[tuple[str, Node], ...]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data, Mapping) or not data:
            raise RecipeError("a recipe must be a non-empty JSON object of nodes")
        nodes = []
        for name, spec in data.items():
            if not isinstance(spec, Mapping) or "op" not in spec or "input" not in spec:
                raise RecipeError(f"node {name!r}: expected {{'op': ..., 'input': [...]}}")
            inputs = spec["input"]
            if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
                raise RecipeError(f"node {name!r}: 'input' must be a list of node names")
            nodes.append((str(name), Node(str(spec["op"]), tuple(inputs))))
        recipe = cls(tuple(nodes))
        recipe.validate()
        return recipe

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"recipe is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: {"op": n.op, "input": list(n.inputs)} for name, n in self.nodes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    # ------------------------------------------------------------------ structure
    @cached_property
    def node_map(self) -> dict[str, Node]:
        return dict(self.nodes)

    @cached_property
    def num_states(self) -> int:
        """k: the size of the hidden tuple carried between steps."""
        return sum(1 for name, _ in self.nodes if output_index(name) is not None)

    @cached_property
    def topological_order(self) -> tuple[str, ...]:
        """Node names so that every node comes after its inputs (raises on a cycle)."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        graph = self.node_map
        for root, _ in self.nodes:
            if state.get(root) == 2:
                continue
            stack = [(root, iter(graph[root].inputs))]
            state[root] = 1
            while stack:
                name, it = stack[-1]
                for child in it:
                    if child not in graph:
                        continue
                    if state.get(child) == 1:
                        raise RecipeError(f"node {child!r}: part of a cycle (via {name!r})")
                    if state.get(child) is None:
                        state[child] = 1
                        stack.append((child, iter(graph[child].inputs)))
                        break
                else:
                    stack.pop()
                    state[name] = 2
                    order.append(name)
        return tuple(order)

    def validate(self) -> None:
        graph = self.node_map
        if len(graph) != len(self.nodes):
            raise RecipeError("duplicate node names")
        outputs = sorted(i for name in graph if (i := output_index(name)) is not None)
        if 0 not in outputs:
            raise RecipeError("node 'h_new_0': missing (the cell must define its output h_new_0)")
        if outputs != list(range(len(outputs))):
            missing = next(i for i in range(len(outputs)) if i not in outputs)
            raise RecipeError(f"node 'h_new_{missing}': missing (outputs must be h_new_0..k-1)")
        k = len(outputs)
        for name, node in self.nodes:
            if name == "x" or state_index(name) is not None:
                raise RecipeError(f"node {name!r}: the name is reserved for a cell input")
            if node.op not in OPS:
                raise RecipeError(
                    f"node {name!r}: unknown op {node.op!r} (known: {', '.join(OPS)})"
                )
            if not _arity_ok(node.op, len(node.inputs)):
                raise RecipeError(
                    f"node {name!r}: {node.op} takes {_ARITY_TEXT[node.op]} inputs, "
                    f"got {len(node.inputs)}"
                )
            if len(set(node.inputs)) != len(node.inputs):
                raise RecipeError(f"node {name!r}: the same input is listed twice")
            for inp in node.inputs:
                si = state_index(inp)
                if inp == "x":
                    if node.op != LINEAR:
                        raise RecipeError(
                            f"node {name!r}: x may only feed a linear node (its width is the "
                            f"layer's input size), not {node.op}"
                        )
                elif si is not None:
                    if si >= k:
                        raise RecipeError(
                            f"node {name!r}: input {inp!r} has no matching output h_new_{si}"
                        )
                elif inp not in graph:
                    raise RecipeError(f"node {name!r}: input {inp!r} is not defined")
                elif inp == name:
                    raise RecipeError(f"node {name!r}: part of a cycle (reads itself)")
        self.topological_order  # noqa: B018  (raises on a cycle)
        used = {inp for _, node in self.nodes for inp in node.inputs}
        if "x" not in used:
            raise RecipeError("node 'x': the cell never reads its input x")
        for i in range(1, k):
            if f"h_prev_{i}" not in used:
                raise RecipeError(f"node 'h_new_{i}': never read back (h_prev_{i} is unused)")
        inputs_of = {name: node.inputs for name, node in self.nodes}
        live = ancestors(inputs_of, [f"h_new_{i}" for i in range(k)])
        for name, _ in self.nodes:
            if name not in live:
                raise RecipeError(f"node {name!r}: does not reach any output h_new_i")

    # ------------------------------------------------------------------ canonical form
    @cached_property
    def canonical(self) -> Recipe:
        """The same cell with internal nodes renamed by structure and commutative inputs
        sorted, so recipes that differ only in node names (or input order of linear/sum/prod
        nodes) have an identical canonical form."""
        labels = self._structural_labels()
        fixed = {name for name, _ in self.nodes if output_index(name) is not None}
        depth: dict[str, int] = {}
        for name in self.topological_order:
            depth[name] = 1 + max((depth.get(i, 0) for i in self.node_map[name].inputs), default=0)
        rename: dict[str, str] = {}

        def new(n: str) -> str:
            return rename.get(n, n)

        def renamed_inputs(n: str) -> tuple[str, ...]:
            node = self.node_map[n]
            ins = tuple(new(i) for i in node.inputs)
            return tuple(sorted(ins)) if node.op in COMMUTATIVE_OPS else ins

        # Name level by level; within a level, ties of structural label are broken by the
        # new names of the inputs (all on lower levels, so already named). Nodes that still
        # tie read the same inputs and are interchangeable, so their order cannot matter.
        internal = [n for n, _ in self.nodes if n not in fixed]
        for level in sorted({depth[n] for n in internal}):
            at_level = [n for n in internal if depth[n] == level]
            for n in sorted(at_level, key=lambda n: (labels[n], renamed_inputs(n))):
                rename[n] = f"n{len(rename)}"

        out = []
        for name in self.topological_order:
            node = self.node_map[name]
            inputs = tuple(new(i) for i in node.inputs)
            if node.op in COMMUTATIVE_OPS:
                inputs = tuple(sorted(inputs))
            out.append((new(name), Node(node.op, inputs)))
        out.sort(key=lambda item: _node_sort_key(item[0]))
        return Recipe(tuple(out))

    @cached_property
    def key(self) -> str:
        """A short identifier of the architecture: equal for equal canonical forms."""
        return hashlib.sha1(self.canonical.to_json().encode()).hexdigest()[:16]

    def _structural_labels(self) -> dict[str, str]:
        """Weisfeiler-Lehman style labels over the DAG, from both the inputs (what a node
        computes) and the consumers (how it is used). Nodes that keep the same label are
        interchangeable, so tie order does not change the canonical form."""
        graph = self.node_map
        order = self.topological_order

        def h(*parts: object) -> str:
            return hashlib.sha1(repr(parts).encode()).hexdigest()

        label: dict[str, str] = {}
        for name in order:  # bottom-up: what the node computes
            node = graph[name]
            ins = [label.get(i, i) for i in node.inputs]
            if node.op in COMMUTATIVE_OPS:
                ins.sort()
            role = name if output_index(name) is not None else ""
            label[name] = h(node.op, tuple(ins), role)
        consumers: dict[str, list[tuple[str, int]]] = {n: [] for n in graph}
        for name in order:
            node = graph[name]
            for pos, i in enumerate(node.inputs):
                if i in consumers:
                    slot = -1 if node.op in COMMUTATIVE_OPS else pos
                    consumers[i].append((name, slot))
        for _ in range(len(graph)):
            new = {
                n: h(label[n], tuple(sorted((label[c], s) for c, s in consumers[n]))) for n in graph
            }
            if len(set(new.values())) == len(set(label.values())):
                label = new
                break
            label = new
        return label


def _node_sort_key(name: str) -> tuple[int, int, str]:
    if (i := output_index(name)) is not None:
        return (1, i, name)
    return (0, int(name[1:]) if name[1:].isdigit() else 0, name)
