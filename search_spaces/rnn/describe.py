"""Cells a person can read: a one-line formula and a drawing of a recipe's graph.

The formula
-----------
:func:`cell_formula` writes every new state as an equation in ``x`` and the previous states,
equations separated by ``"; "``, each one after the equations it reads::

    c_new = sigmoid(W1 x + W2 h) * c + sigmoid(W3 x + W4 h) * tanh(W5 x + W6 h); h_new = ...

Names. The cell input is ``x``; the states ``h_prev_0, h_prev_1, h_prev_2, ...`` are ``h, c, s2,
s3, ...`` and the outputs ``h_new_i`` are ``h_new, c_new, s2_new, ...`` (``h_new`` is the layer
output; ``c`` is only the name of the second state, whatever the cell does with it).

Ops, exactly as :mod:`.model` computes them:

- ``linear`` with inputs ``u1 .. un``: ``W1 u1 + ... + Wn un`` -- one weight matrix per input
  (the columns of the node's single weight over the concatenated inputs) and one bias vector,
  written ``+ b1`` only with ``biases=True``. An operand that is not a name or a function call
  is put in parentheses (``W5 (r * h)``); a multi-term linear inside a sum or product is too.
- activations: ``tanh(.)``, ``sigmoid(.)``, ``leaky_relu(.)`` (torch's slope, 0.01).
- ``elementwise_prod`` / ``elementwise_sum``: ``a * b * ...`` / ``a + b + ...`` (``*`` is the
  elementwise product). A product inside a product, or a sum (or blend, or multi-term linear)
  inside a sum, keeps its parentheses, so every node of the graph shows.
- ``blend`` with inputs (z, a, b): ``z * a + (1 - z) * b``.

Weights are numbered ``W1, W2, ...`` (biases ``b1, b2, ...``) in the order they first appear in
the printed text. The text is computed from ``recipe.canonical`` only, and operands of
commutative ops are put in an order that depends on structure alone (linear: ``x``, then the
states ``h, c, ...``, then computed terms; product and sum: computed terms, then the states;
computed terms by their text with weight numbers left out, ties by canonical node name), so
recipes with the same canonical form print the same text.

Shared terms. A new state read by another node is written by name (``tanh(c_new)``). A computed
node read more than once (a blend's gate ``z`` counts twice) gets its own equation ``t1 = ...``
before the first equation that reads it, instead of being written out at every use: that is
how the textbook writes a GRU's update gate, and it keeps the weight numbers of one node in
one place. Products and sums of plain inputs (``h * c``) are as short as a name and stay
inline. ``inline_shared=True`` writes every shared term out in full at every use instead.

A valid recipe always reads ``x``; a cell that does not (built without validation) gets the
note ``  [ignores the input x]`` appended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .recipe import ACTIVATIONS, BLEND, LINEAR, PROD, SUM, Recipe, output_index, state_index

_FUNCTION = {
    "activation_tanh": "tanh",
    "activation_sigm": "sigmoid",
    "activation_leaky_relu": "leaky_relu",
}
assert set(_FUNCTION) == set(ACTIVATIONS)

IGNORES_INPUT = "  [ignores the input x]"

# Precedence of a rendered term: what it may appear inside without parentheses.
_ATOM, _PROD, _SUM = 3, 2, 1

# Placeholders, replaced once the whole text is known: weights and biases are numbered by
# first appearance, shared terms by equation order. \0 never occurs in a node name.
_PLACEHOLDER = re.compile(r"\0([Wbto]) ([^\0]*)\0")


def state_name(i: int) -> str:
    """The printed name of ``h_prev_i``: ``h``, ``c``, then ``s2``, ``s3``, ..."""
    return ("h", "c")[i] if i < 2 else f"s{i}"


def output_name(i: int) -> str:
    """The printed name of ``h_new_i``: ``h_new``, ``c_new``, ``s2_new``, ..."""
    return f"{state_name(i)}_new"


@dataclass(frozen=True)
class CellFormula:
    """A cell written out: ``text`` is :func:`cell_formula`'s string, ``equations`` its parts
    as (name, expression) in printed order. ``weights`` maps each printed weight name
    (``"W3"``) to the (node, input) of ``recipe`` whose weight it is, ``biases`` each bias name
    to its linear node (only with ``biases=True``); ``recipe`` is the canonical recipe those
    node names belong to."""

    text: str
    equations: tuple[tuple[str, str], ...]
    weights: dict[str, tuple[str, str]]
    biases: dict[str, str]
    recipe: Recipe


@dataclass(frozen=True)
class _Term:
    text: str  # with placeholders
    prec: int
    single_linear: bool = False  # "W1 x": a matrix product, put in parentheses next to a "*"


def _skeleton(text: str) -> str:
    """The text without weight numbers or node identities (for ordering operands)."""

    def repl(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "o":
            return output_name(output_index(arg))
        return kind

    return _PLACEHOLDER.sub(repl, text)


def _name_key(name: str) -> tuple[int, int, str]:
    if name == "x":
        return (0, 0, name)
    if (i := state_index(name)) is not None:
        return (1, i, name)
    if (i := output_index(name)) is not None:
        return (3, i, name)
    return (2, int(name[1:]) if name[1:].isdigit() else 0, name)


def _paren(term: _Term, at_least: int, *, no_single_linear: bool = False) -> str:
    if term.prec < at_least or (no_single_linear and term.single_linear):
        return f"({term.text})"
    return term.text


def describe_cell(
    recipe: Recipe, *, biases: bool = False, inline_shared: bool = False
) -> CellFormula:
    """The cell's equations, with the map from printed weight names to the recipe's weights
    (see the module docstring for the notation)."""
    canon = recipe.canonical
    graph = canon.node_map
    k = canon.num_states

    uses: dict[str, int] = dict.fromkeys(graph, 0)
    for node in graph.values():
        for pos, inp in enumerate(node.inputs):
            if inp in uses:
                uses[inp] += 2 if (node.op == BLEND and pos == 0) else 1
    cell_inputs = {"x", *(f"h_prev_{i}" for i in range(k))}

    def trivial(name: str) -> bool:
        node = graph[name]
        return node.op in (PROD, SUM) and all(i in cell_inputs for i in node.inputs)

    named = {
        n
        for n in graph
        if output_index(n) is None and uses[n] >= 2 and not inline_shared and not trivial(n)
    }

    memo: dict[str, _Term] = {}

    def ref(name: str) -> _Term:
        if name == "x":
            return _Term("x", _ATOM)
        if (i := state_index(name)) is not None:
            return _Term(state_name(i), _ATOM)
        if output_index(name) is not None:
            return _Term(f"\0o {name}\0", _ATOM)
        if name in named:
            return _Term(f"\0t {name}\0", _ATOM)
        return expr(name)

    def ordered(names: tuple[str, ...], inputs_last: bool) -> list[tuple[str, _Term]]:
        """Operands of a commutative op in print order: the cell inputs x, h, c, s2, ... in
        that order, after (``inputs_last``, product and sum) or before (linear) the computed
        terms, which go by their text without weight numbers, then canonical name."""

        def key(item: tuple[str, _Term]) -> tuple:
            name, term = item
            if name in cell_inputs:
                return (1 if inputs_last else 0, _name_key(name), "")
            return (0 if inputs_last else 1, _skeleton(term.text), _name_key(name))

        return sorted(((n, ref(n)) for n in names), key=key)

    def expr(name: str) -> _Term:
        if name in memo:
            return memo[name]
        node = graph[name]
        if node.op == LINEAR:
            terms = [
                f"\0W {name} {inp}\0 {_paren(t, _ATOM)}"
                for inp, t in ordered(node.inputs, inputs_last=False)
            ]
            if biases:
                terms.append(f"\0b {name}\0")
            text = " + ".join(terms)
            out = _Term(text, _SUM if len(terms) > 1 else _PROD, single_linear=len(terms) == 1)
        elif node.op in _FUNCTION:
            out = _Term(f"{_FUNCTION[node.op]}({ref(node.inputs[0]).text})", _ATOM)
        elif node.op == PROD:
            parts = [_paren(t, _ATOM) for _, t in ordered(node.inputs, inputs_last=True)]
            out = _Term(" * ".join(parts), _PROD)
        elif node.op == SUM:
            parts = [_paren(t, _PROD) for _, t in ordered(node.inputs, inputs_last=True)]
            out = _Term(" + ".join(parts), _SUM)
        elif node.op == BLEND:
            z, a, b = (_paren(ref(i), _PROD, no_single_linear=True) for i in node.inputs)
            out = _Term(f"{z} * {a} + (1 - {z}) * {b}", _SUM)
        else:  # pragma: no cover - a validated recipe has no other op
            raise ValueError(f"node {name!r}: unknown op {node.op!r}")
        memo[name] = out
        return out

    # Equations in dependency order: depth-first from h_new_0, h_new_1, ..., each equation
    # after the named terms and outputs its expression reads, in the order it reads them.
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for m in _PLACEHOLDER.finditer(expr(name).text):
            if m.group(1) in "to":
                visit(m.group(2))
        order.append(name)

    for i in range(k):
        visit(f"h_new_{i}")

    term_names: dict[str, str] = {}
    for name in order:
        if name in named:
            term_names[name] = f"t{len(term_names) + 1}"

    def left(name: str) -> str:
        if (i := output_index(name)) is not None:
            return output_name(i)
        return term_names[name]

    raw = "; ".join(f"{left(n)} = {expr(n).text}" for n in order)

    weight_names: dict[tuple[str, str], str] = {}
    bias_names: dict[str, str] = {}

    def number(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "W":
            node, inp = arg.split(" ")
            key = (node, inp)
            if key not in weight_names:
                weight_names[key] = f"W{len(weight_names) + 1}"
            return weight_names[key]
        if kind == "b":
            if arg not in bias_names:
                bias_names[arg] = f"b{len(bias_names) + 1}"
            return bias_names[arg]
        if kind == "t":
            return term_names[arg]
        return output_name(output_index(arg))

    text = _PLACEHOLDER.sub(number, raw)
    equations = tuple((eq.split(" = ", 1)[0], eq.split(" = ", 1)[1]) for eq in text.split("; "))
    if not any("x" in node.inputs for node in graph.values()):
        text += IGNORES_INPUT
    return CellFormula(
        text=text,
        equations=equations,
        weights={v: key for key, v in weight_names.items()},
        biases={v: key for key, v in bias_names.items()},
        recipe=canon,
    )


def cell_formula(recipe: Recipe, *, biases: bool = False, inline_shared: bool = False) -> str:
    """One line of equations for the cell's new states, e.g. for the ``gru`` preset
    ``t1 = sigmoid(W1 x + W2 h); h_new = t1 * h + (1 - t1) * tanh(...)``; see the module
    docstring for the notation. Equal canonical forms give equal text."""
    return describe_cell(recipe, biases=biases, inline_shared=inline_shared).text


# ---------------------------------------------------------------------- drawing
_NODE_LABEL = {
    LINEAR: "linear",
    PROD: "*",
    SUM: "+",
    BLEND: "blend",
    **_FUNCTION,
}
_COLORS = {"input": "#a6d96a", "state": "#fdd49e", "output": "#f4a582", "inner": "#d1e5f0"}
_SWEEPS = 4  # barycentre sweeps (down and up) that order the nodes within each layer


def _layout(g: Any) -> tuple[dict[Any, tuple[float, float]], list[list[Any]]]:
    """A layered (Sugiyama-style) layout of the DAG ``g``, left to right: each node in the
    layer of its longest path from a cell input; an edge that spans several layers passes
    through one dummy point per layer it crosses (``("dummy", u, v, layer)``), so it is
    routed around the nodes in between; within a layer, nodes and dummies are ordered by
    the mean height of their neighbours in the layer before (sweeping right) or after
    (sweeping left). Returns the positions (nodes and dummies) and each edge's path."""
    import networkx as nx

    layer: dict[Any, int] = {}
    for n in nx.topological_sort(g):
        preds = list(g.predecessors(n))
        layer[n] = 1 + max((layer[p] for p in preds), default=-1)
    depth = max(layer.values()) + 1
    rows: list[list[Any]] = [[] for _ in range(depth)]
    for n in g:  # insertion order: x, h, c, then the canonical topological order
        rows[layer[n]].append(n)
    up: dict[Any, list[Any]] = {n: [] for n in g}
    down: dict[Any, list[Any]] = {n: [] for n in g}
    paths = []
    for u, v in g.edges:
        chain = [u]
        for level in range(layer[u] + 1, layer[v]):
            d = ("dummy", u, v, level)
            rows[level].append(d)
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(v)
        for a, b in zip(chain, chain[1:], strict=False):
            down[a].append(b)
            up[b].append(a)
        paths.append(chain)

    def sweep(levels: range, neighbours: dict[Any, list[Any]]) -> None:
        for level in levels:
            slot = {n: j for j, n in enumerate(rows[level - 1 if neighbours is up else level + 1])}
            first = {n: j for j, n in enumerate(rows[level])}

            def key(n: Any, slot: dict = slot, first: dict = first) -> tuple[float, int]:
                near = [slot[m] for m in neighbours[n] if m in slot]
                return (sum(near) / len(near) if near else first[n], first[n])

            rows[level].sort(key=key)

    for _ in range(_SWEEPS):
        sweep(range(1, depth), up)
        sweep(range(depth - 2, -1, -1), down)
    # Keep the cell inputs in their reading order: x, h_prev, c_prev, ...
    rows[0].sort(key=lambda n: _name_key(n) if isinstance(n, str) else (9, 0, ""))
    sweep(range(1, depth), up)
    pos = {}
    for level, row in enumerate(rows):
        for j, n in enumerate(row):
            pos[n] = (float(level), (len(row) - 1) / 2 - j)
    return pos, paths


def draw_cell(recipe: Recipe, path_or_ax: Any, *, title: str | None = None) -> Any:
    """Draw the cell's graph, inputs on the left, new states on the right.

    Boxes show each node's op (``linear``, ``tanh``, ``sigmoid``, ``leaky_relu``, ``*``,
    ``+``, ``blend``); the cell input ``x`` is green, the previous states (``h_prev``,
    ``c_prev``, ...) orange, the new states (``h_new``, ``c_new``, ...; the op under the
    name) red, computed nodes blue. Edges into a linear node carry the weight names of
    :func:`cell_formula` (the canonical form is drawn, so they match), edges into a blend
    its slots ``z``, ``a``, ``b`` (``z * a + (1 - z) * b``). Layout: :func:`_layout`
    (networkx for the graph, matplotlib for the drawing; graphviz is not needed).

    ``path_or_ax``: a file name (a PNG is written with matplotlib's Agg canvas, whatever the
    pyplot backend is, and the name returned) or a matplotlib ``Axes`` to draw into
    (returned).
    """
    import networkx as nx

    formula = describe_cell(recipe)
    canon = formula.recipe
    graph = canon.node_map
    weight_of = {key: name for name, key in formula.weights.items()}
    k = canon.num_states

    g = nx.DiGraph()
    kinds: dict[str, str] = {}
    labels: dict[str, str] = {}
    used = {i for node in graph.values() for i in node.inputs}
    for source in ["x", *(f"h_prev_{i}" for i in range(k))]:
        if source in used:
            g.add_node(source)
            i = state_index(source)
            kinds[source] = "input" if i is None else "state"
            labels[source] = "x" if i is None else f"{state_name(i)}_prev"
    for name in canon.topological_order:
        node = graph[name]
        g.add_node(name)
        i = output_index(name)
        kinds[name] = "inner" if i is None else "output"
        op = _NODE_LABEL[node.op]
        labels[name] = op if i is None else f"{output_name(i)}\n{op}"
    edge_labels: dict[tuple[str, str], str] = {}
    for name in canon.topological_order:
        node = graph[name]
        for slot, inp in enumerate(node.inputs):
            g.add_edge(inp, name)
            if node.op == LINEAR:
                edge_labels[(inp, name)] = weight_of[(name, inp)]
            elif node.op == BLEND:
                edge_labels[(inp, name)] = "zab"[slot]

    pos, paths = _layout(g)
    depth = 1 + int(max(x for x, _ in pos.values()))
    height = 1 + max(y for _, y in pos.values()) - min(y for _, y in pos.values())
    own_figure = not hasattr(path_or_ax, "figure")
    if own_figure:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(4.0, 1.5 * depth), max(2.0, 0.75 * height + 0.8)), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    else:
        ax = path_or_ax
        fig = ax.figure

    boxes = {}
    for n in g:
        boxes[n] = ax.text(
            *pos[n],
            labels[n],
            ha="center",
            va="center",
            fontsize=8,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "fc": _COLORS[kinds[n]], "ec": "#333333"},
        )
    for chain in paths:
        u, v = chain[0], chain[-1]
        for j, (a, b) in enumerate(zip(chain, chain[1:], strict=False)):
            last = j == len(chain) - 2
            ax.annotate(
                "",
                xy=pos[b],
                xytext=pos[a],
                zorder=1,
                arrowprops={
                    "arrowstyle": "-|>" if last else "-",
                    "color": "#555555",
                    "lw": 1.0,
                    "shrinkA": 1 if j == 0 else 0,
                    "shrinkB": 1 if last else 0,
                    "patchA": boxes[a].get_bbox_patch() if j == 0 else None,
                    "patchB": boxes[b].get_bbox_patch() if last else None,
                },
            )
        if (u, v) in edge_labels:  # on the last stretch, near the node that reads it
            (x0, y0), (x1, y1) = pos[chain[-2]], pos[v]
            ax.text(
                x0 + 0.72 * (x1 - x0),
                y0 + 0.72 * (y1 - y0),
                edge_labels[(u, v)],
                ha="center",
                va="center",
                fontsize=7,
                zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
            )
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    if own_figure:
        fig.tight_layout()
        fig.savefig(str(path_or_ax), format="png")
        return path_or_ax
    return ax
