"""Sampling, presets, mutation and distance for NAS-Bench-NLP cells."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .recipe import (
    ACTIVATIONS,
    BLEND,
    LINEAR,
    PROD,
    SUM,
    Node,
    Recipe,
    RecipeError,
    ancestors,
    output_index,
)

PRESETS: dict[str, dict] = {
    "rnn": {
        "f": {"op": "linear", "input": ["x", "h_prev_0"]},
        "h_new_0": {"op": "activation_tanh", "input": ["f"]},
    },
    "lstm": {
        "i": {"op": "linear", "input": ["x", "h_prev_0"]},
        "i_act": {"op": "activation_tanh", "input": ["i"]},
        "j": {"op": "linear", "input": ["x", "h_prev_0"]},
        "j_act": {"op": "activation_sigm", "input": ["j"]},
        "f": {"op": "linear", "input": ["x", "h_prev_0"]},
        "f_act": {"op": "activation_sigm", "input": ["f"]},
        "o": {"op": "linear", "input": ["x", "h_prev_0"]},
        "o_act": {"op": "activation_tanh", "input": ["o"]},
        "h_new_1_part1": {"op": "elementwise_prod", "input": ["f_act", "h_prev_1"]},
        "h_new_1_part2": {"op": "elementwise_prod", "input": ["i_act", "j_act"]},
        "h_new_1": {"op": "elementwise_sum", "input": ["h_new_1_part1", "h_new_1_part2"]},
        "h_new_1_act": {"op": "activation_tanh", "input": ["h_new_1"]},
        "h_new_0": {"op": "elementwise_prod", "input": ["h_new_1_act", "o_act"]},
    },
    "gru": {
        "r": {"op": "linear", "input": ["x", "h_prev_0"]},
        "r_act": {"op": "activation_sigm", "input": ["r"]},
        "z": {"op": "linear", "input": ["x", "h_prev_0"]},
        "z_act": {"op": "activation_sigm", "input": ["z"]},
        "rh": {"op": "elementwise_prod", "input": ["r_act", "h_prev_0"]},
        "h_tilde": {"op": "linear", "input": ["x", "rh"]},
        "h_tilde_act": {"op": "activation_tanh", "input": ["h_tilde"]},
        "h_new_0": {"op": "blend", "input": ["z_act", "h_prev_0", "h_tilde_act"]},
    },
}

GENERATOR_STATES = 2  # k: the hidden tuple size of generated cells
_OP_WEIGHTS = {LINEAR: 3, BLEND: 1, PROD: 1, SUM: 1}


def preset(name: str) -> Recipe:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return Recipe.from_dict(PRESETS[name])


def _choice(rng: np.random.Generator, items: list, weights: list[float] | None = None):
    p = None if weights is None else np.asarray(weights, float) / sum(weights)
    return items[int(rng.choice(len(items), p=p))]


def _draw_once(rng: np.random.Generator, k: int) -> dict[str, dict] | None:
    base = ["x"] + [f"h_prev_{i}" for i in range(k)]
    graph: dict[str, dict] = {}
    activations: list[str] = []
    ops, weights = list(_OP_WEIGHTS), list(_OP_WEIGHTS.values())
    while len(graph) < k + 7:
        op = _choice(rng, ops, weights)
        if op == LINEAR:
            n_in = _choice(rng, [2, 3], [4, 1])
            pool = base + activations
            if len(pool) < n_in:
                continue
            picks = rng.choice(len(pool), size=n_in, replace=False)
            lin = f"node_{len(graph)}"
            graph[lin] = {"op": LINEAR, "input": [pool[i] for i in picks]}
            act = f"node_{len(graph)}"
            graph[act] = {"op": _choice(rng, list(ACTIVATIONS)), "input": [lin]}
            activations.append(act)
        else:
            n_in = 3 if op == BLEND else 2
            pool = base[1:] + list(graph)
            if len(pool) < n_in:
                continue
            picks = rng.choice(len(pool), size=n_in, replace=False)
            graph[f"node_{len(graph)}"] = {"op": op, "input": [pool[i] for i in picks]}
    names = list(graph)
    outputs = rng.choice(len(names), size=k, replace=False)
    rename = {names[j]: f"h_new_{i}" for i, j in enumerate(outputs)}
    graph = {
        rename.get(n, n): {"op": v["op"], "input": [rename.get(i, i) for i in v["input"]]}
        for n, v in graph.items()
    }
    live = ancestors({n: v["input"] for n, v in graph.items()}, [f"h_new_{i}" for i in range(k)])
    graph = {n: v for n, v in graph.items() if n in live}
    used = {i for v in graph.values() for i in v["input"]}
    if not set(base) <= used:
        return None
    for i in range(k):
        if any(inp.startswith("h_prev_") for inp in graph[f"h_new_{i}"]["input"]):
            return None
    return graph


def sample_cell(rng: np.random.Generator, k: int = GENERATOR_STATES) -> Recipe:
    """One cell from the NAS-Bench-NLP generator distribution (rejection sampling)."""
    for _ in range(10_000):
        graph = _draw_once(rng, k)
        if graph is not None:
            return Recipe.from_dict(graph)
    raise RuntimeError("the generator rejected 10,000 samples in a row")


# ---------------------------------------------------------------------- mutation
MUTATIONS = ("change_op", "rewire", "insert_linear", "remove_linear", "swap_outputs")


def _descendants(graph: dict[str, Node], node: str) -> set[str]:
    consumers: dict[str, list[str]] = {n: [] for n in graph}
    for n, spec in graph.items():
        for i in spec.inputs:
            if i in consumers:
                consumers[i].append(n)
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(consumers[n])
    return seen


def _prune(graph: dict[str, Node], k: int) -> dict[str, Node]:
    live = ancestors({n: v.inputs for n, v in graph.items()}, [f"h_new_{i}" for i in range(k)])
    return {n: v for n, v in graph.items() if n in live}


def _fresh_name(graph: dict[str, Node], stem: str) -> str:
    i = 0
    while f"{stem}{i}" in graph:
        i += 1
    return f"{stem}{i}"


def _try_mutation(recipe: Recipe, kind: str, rng: np.random.Generator, max_nodes: int):
    graph = dict(recipe.node_map)
    k = recipe.num_states
    states = [f"h_prev_{i}" for i in range(k)]
    names = list(graph)
    if kind == "change_op":
        name = _choice(rng, names)
        op = graph[name].op
        if op in ACTIVATIONS:
            new_op = _choice(rng, [a for a in ACTIVATIONS if a != op])
        elif op in (PROD, SUM):
            new_op = SUM if op == PROD else PROD
        else:
            return None
        graph[name] = Node(new_op, graph[name].inputs)
    elif kind == "rewire":
        name = _choice(rng, names)
        node = graph[name]
        pos = int(rng.integers(len(node.inputs)))
        banned = _descendants(graph, name) | set(node.inputs)
        pool = [n for n in names + states if n not in banned]
        if node.op == LINEAR:
            pool += [] if "x" in node.inputs else ["x"]
        if not pool:
            return None
        inputs = list(node.inputs)
        inputs[pos] = _choice(rng, pool)
        graph[name] = Node(node.op, tuple(inputs))
        graph = _prune(graph, k)
    elif kind == "insert_linear":
        if len(graph) + 2 > max_nodes:
            return None
        # Splice act(linear(old_input, other)) into one edge.
        name = _choice(rng, names)
        node = graph[name]
        pos = int(rng.integers(len(node.inputs)))
        old = node.inputs[pos]
        banned = _descendants(graph, name) | {old}
        pool = [n for n in names + states + ["x"] if n not in banned]
        if not pool:
            return None
        other = _choice(rng, pool)
        lin, act = _fresh_name(graph, "m"), None
        graph[lin] = Node(LINEAR, (old, other))
        act = _fresh_name(graph, "m")
        graph[act] = Node(_choice(rng, list(ACTIVATIONS)), (lin,))
        inputs = list(node.inputs)
        inputs[pos] = act
        graph[name] = Node(node.op, tuple(inputs))
    elif kind == "remove_linear":
        # Bypass an activation fed by a linear node: its readers read one of the linear's
        # non-x inputs instead.
        pairs = [
            n
            for n, v in graph.items()
            if v.op in ACTIVATIONS
            and output_index(n) is None
            and graph.get(v.inputs[0], Node("", ())).op == LINEAR
        ]
        if not pairs:
            return None
        act = _choice(rng, pairs)
        lin = graph[act].inputs[0]
        sources = [i for i in graph[lin].inputs if i != "x"]
        if not sources:
            return None
        src = _choice(rng, sources)
        for n, v in list(graph.items()):
            if act in v.inputs:
                graph[n] = Node(v.op, tuple(src if i == act else i for i in v.inputs))
        del graph[act]
        graph = _prune(graph, k)
    elif kind == "swap_outputs":
        # Make another node the layer output h_new_0 (the old output keeps its op).
        candidates = [n for n in names if output_index(n) is None]
        if not candidates:
            return None
        new_out = _choice(rng, candidates)
        tmp = _fresh_name(graph, "m")
        rename = {"h_new_0": tmp, new_out: "h_new_0"}
        graph = {
            rename.get(n, n): Node(v.op, tuple(rename.get(i, i) for i in v.inputs))
            for n, v in graph.items()
        }
        graph = _prune(graph, k)
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    try:
        child = Recipe.from_dict(
            {n: {"op": v.op, "input": list(v.inputs)} for n, v in graph.items()}
        )
    except RecipeError:
        return None
    return child


def mutate_cell(
    recipe: Recipe, rng: np.random.Generator, max_nodes: int = 24, max_tries: int = 200
) -> tuple[Recipe, str]:
    """A valid child that differs from ``recipe``, and the name of the mutation used."""
    for _ in range(max_tries):
        kind = _choice(rng, list(MUTATIONS))
        child = _try_mutation(recipe, kind, rng, max_nodes)
        if child is not None and child.key != recipe.key:
            return child, kind
    raise RuntimeError(f"no valid mutation of cell {recipe.key} found in {max_tries} tries")


# ---------------------------------------------------------------------- distance
def node_signatures(recipe: Recipe, depth: int = 3) -> Counter:
    """Multiset of name-free descriptions of what each node computes, to ``depth`` levels."""
    graph = recipe.node_map
    memo: dict[tuple[str, int], str] = {}

    def sig(name: str, d: int) -> str:
        if name not in graph:
            return name  # x and h_prev_i are fixed names
        if (name, d) in memo:
            return memo[(name, d)]
        node = graph[name]
        role = name if output_index(name) is not None else ""
        if d == 0:
            s = f"{node.op}{role}"
        else:
            parts = [sig(i, d - 1) for i in node.inputs]
            if node.op != BLEND:
                parts.sort()
            s = f"{node.op}{role}({','.join(parts)})"
        memo[(name, d)] = s
        return s

    return Counter(sig(n, level) for n in graph for level in range(depth + 1))


def cell_distance(a: Recipe, b: Recipe) -> float:
    """Weighted Jaccard distance between node-signature multisets: 0 for the same
    architecture, 1 for cells that share no computation."""
    sa, sb = node_signatures(a), node_signatures(b)
    inter = sum((sa & sb).values())
    union = sum((sa | sb).values())
    return 1.0 - inter / union if union else 0.0
