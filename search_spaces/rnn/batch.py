"""Several recipe cells' recurrences run together, one operation kind at a time.

A population's cells are all different graphs, so their steps cannot share kernels as they
are written. :class:`CellBatch` runs K cells (one layer each, the same input and hidden sizes)
in lockstep instead: every value of every cell at a step is a row of one tensor ``V`` (slots,
B, H), and each step walks the cells' nodes level by level (a node's level is one more than
its deepest input's; states and ``x`` are level 0), doing at each level

- all linear nodes' products of that level as one batched multiply: one (H, H) block per
  (node, non-x input) pair, gathered from ``V``, added into the node's input projection and
  bias (computed for all steps before the recurrence, as the compiled cell does);
- each activation kind, each arity of sums and products, and all blends as one gather, one
  operation and one scatter.

So a step costs a number of operations that depends on the deepest cell and on which kinds
occur, not on K: 10 levels for the first 32 of the benchmark's cells, a few operations each,
against about 15 operations per cell and step one cell at a time. On a 2-core Xeon at the fast
sizes it is as fast per cell as one cell at a time (1.96 against 1.93 ms, 64 cells in batches
of 32, one thread: the gathers cost what the fewer operations save); it is written for a GPU,
where each operation is a kernel launch, and is not yet measured there
(``experiments/bench_scoring.py --cell-batch K`` times both on the same cells, and whole scores
with it). A scorer uses it for each batch with ``ScoringSetup.cell_batch`` (the search's
``--cell-batch``; :mod:`nas_engine.batched`). The
numbers are the compiled cell's up to float32 rounding (sums of three or more terms and the
products are added in another order). Forward only, without autograd.

Every step is the same operations on the same index tensors, so with the step index on the
device as well (``entering_states(x, repeat)``) one step can be recorded as a CUDA graph and
replayed (:class:`~.graphs.StepGraphs`): then a step of all K cells is one graph launch.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .compiled import StepRepeater
from .model import RecipeCell
from .recipe import BLEND, LINEAR, PROD, SUM

_ACTIVATIONS = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": F.leaky_relu,
}


@dataclass(frozen=True)
class _Level:
    """The index tensors of one level (see the module docstring)."""

    linear_slots: torch.Tensor | None  # (n,) where each linear node's value goes
    linear_rows: torch.Tensor | None  # (n,) its row of the input projections
    pair_sources: torch.Tensor | None  # (p,) the slot each product reads
    pair_targets: torch.Tensor | None  # (p,) the linear node (0..n-1) it adds to
    pair_weights: torch.Tensor | None  # (p, H, H) the products' weights, (in, out)
    activations: tuple[tuple[str, torch.Tensor, torch.Tensor], ...]  # (op, inputs, outputs)
    reductions: tuple[tuple[str, int, torch.Tensor, torch.Tensor], ...]  # (op, arity, ins, outs)
    blend: tuple[torch.Tensor, torch.Tensor] | None  # (3n,) z, a, b per node; (n,) outputs


class CellBatch:
    """K cells of one layer size, run together (see the module docstring)."""

    def __init__(self, cells: Sequence[RecipeCell]) -> None:
        if not cells:
            raise ValueError("a cell batch needs at least one cell")
        first = cells[0]
        sizes = {(c.input_size, c.hidden_size) for c in cells}
        if len(sizes) > 1:
            raise ValueError(f"cells of one batch need one (input, hidden) size, got {sizes}")
        like = first.linears[0].weight
        if any(c.linears[0].weight.device != like.device for c in cells):
            raise ValueError("cells of one batch need to be on one device")
        self.cells = tuple(cells)
        self.hidden_size = first.hidden_size
        self.device = like.device
        slot: dict[tuple[int, str], int] = {}
        level: dict[tuple[int, str], int] = {}
        self._rows: dict[tuple[int, str], int] = {}
        entering, states, new_states = [], [], []
        for k, cell in enumerate(self.cells):
            graph = cell.recipe.node_map
            for i in range(cell.num_states):
                slot[k, f"h_prev_{i}"] = len(slot)
            for name in cell.order:
                slot[k, name] = len(slot)
                level[k, name] = 1 + max(level.get((k, i), 0) for i in graph[name].inputs)
            for name in cell.linear_nodes:
                self._rows[k, name] = len(self._rows)
            entering.append(slot[k, "h_prev_0"])
            states += [slot[k, f"h_prev_{i}"] for i in range(cell.num_states)]
            new_states += [slot[k, f"h_new_{i}"] for i in range(cell.num_states)]
        self.num_slots = len(slot)
        self._host_indices: list[torch.Tensor] = []  # moved to the device together
        self._entering = self._index(entering)
        self._states = self._index(states)
        self._new_states = self._index(new_states)
        # Where each cell's input projections go (indexing with a list instead would copy
        # it to the device, and wait for the copy, at every call).
        self._x_rows = [
            self._index([self._rows[k, n] for n in cell.program.x_readers])
            for k, cell in enumerate(self.cells)
        ]
        by_level: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for key, lv in level.items():
            by_level[lv].append(key)
        with torch.no_grad():
            self._levels = tuple(self._plan(by_level[lv], slot) for lv in sorted(by_level))
        if self.device.type != "cpu":
            self._move_indices()

    def _index(self, values: list[int]) -> torch.Tensor:
        """An index tensor, made on the host (see :meth:`_move_indices`)."""
        index = torch.tensor(values, dtype=torch.long)
        self._host_indices.append(index)
        return index

    def _move_indices(self) -> None:
        """Every index tensor of the plan to the device in one copy, from pinned memory: a
        plain copy from pageable memory waits for the device (torch synchronises the stream
        after it), and a hundred of them, one per index, would stall a GPU's queue at every
        batch. Each index becomes a view of the one device tensor."""
        host, self._host_indices = self._host_indices, []  # kept alive: keyed by id below
        flat = torch.cat(host)
        if self.device.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(self.device, non_blocking=True)
        moved, start = {}, 0
        for index in host:
            moved[id(index)] = flat[start : start + index.numel()]
            start += index.numel()

        def on_device(value):  # an index tensor, or a tuple holding some; anything else as is
            if isinstance(value, tuple):
                return tuple(on_device(v) for v in value)
            return moved.get(id(value), value) if isinstance(value, torch.Tensor) else value

        self._entering = on_device(self._entering)
        self._states = on_device(self._states)
        self._new_states = on_device(self._new_states)
        self._x_rows = [on_device(rows) for rows in self._x_rows]
        self._levels = tuple(
            dataclasses.replace(
                lv, **{f.name: on_device(getattr(lv, f.name)) for f in dataclasses.fields(lv)}
            )
            for lv in self._levels
        )

    def _plan(self, nodes: list[tuple[int, str]], slot: dict[tuple[int, str], int]) -> _Level:
        linear_slots, linear_rows, sources, targets, weights = [], [], [], [], []
        activations: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        reductions: dict[tuple[str, int], tuple[list[int], list[int]]] = defaultdict(
            lambda: ([], [])
        )
        blend_in, blend_out = [], []
        for k, name in nodes:
            cell = self.cells[k]
            node = cell.recipe.node_map[name]
            ins = [slot[k, i] for i in node.inputs if i != "x"]
            if node.op == LINEAR:
                weight = cell.linears[cell._linear_index[name]].weight
                columns = cell._column_slices(name)
                for i in node.inputs:
                    if i != "x":
                        sources.append(slot[k, i])
                        targets.append(len(linear_slots))
                        weights.append(weight[:, columns[i]].t())
                linear_slots.append(slot[k, name])
                linear_rows.append(self._rows[k, name])
            elif node.op in _ACTIVATIONS:
                activations[node.op][0].extend(ins)
                activations[node.op][1].append(slot[k, name])
            elif node.op in (SUM, PROD):
                reductions[node.op, len(ins)][0].extend(ins)
                reductions[node.op, len(ins)][1].append(slot[k, name])
            elif node.op == BLEND:
                blend_in.extend(ins)
                blend_out.append(slot[k, name])
            else:  # a validated recipe has no other op
                raise ValueError(f"unknown op {node.op!r} in node {name!r}")
        index = self._index
        return _Level(
            linear_slots=index(linear_slots) if linear_slots else None,
            linear_rows=index(linear_rows) if linear_rows else None,
            pair_sources=index(sources) if sources else None,
            pair_targets=index(targets) if targets else None,
            pair_weights=torch.stack(weights) if weights else None,
            activations=tuple((op, index(i), index(o)) for op, (i, o) in activations.items()),
            reductions=tuple(
                (op, arity, index(i), index(o)) for (op, arity), (i, o) in reductions.items()
            ),
            blend=(index(blend_in), index(blend_out)) if blend_out else None,
        )

    def _projections(self, x: torch.Tensor) -> torch.Tensor:
        """(T, linear nodes of all cells, B, H): each linear node's input projection and bias,
        for every step (one multiply per cell, as the compiled cell projects)."""
        steps, batch, _ = x.shape
        out = x.new_empty(steps, len(self._rows), batch, self.hidden_size)
        for k, cell in enumerate(self.cells):
            weights = cell.program.input_weights(cell)
            projected = cell.program.project(weights, x)
            if projected is not None:
                rows = self._x_rows[k]
                block = projected.view(steps, batch, rows.numel(), self.hidden_size)
                out.index_copy_(1, rows, block.transpose(1, 2))
            for name, bias in zip(cell.program.plain_nodes, weights.plain_biases, strict=True):
                out[:, self._rows[k, name]] = bias
        return out

    def entering_states(self, x: torch.Tensor, repeat: StepRepeater | None = None) -> torch.Tensor:
        """(K, T, B, H): the first state element entering each cell at every step of the
        input sequence ``x`` (T, B, input size), from zero states. ``repeat``: run the steps
        as the same operations on the same memory, the step index on the device, through this
        repeater (a :class:`~.graphs.StepGraphs` records one step as a CUDA graph and replays
        it: one launch a step for all K cells)."""
        with torch.no_grad():
            if repeat is None:
                return self._run(x)
            return self._run_fixed(x, repeat)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch, _ = x.shape
        projections = self._projections(x)
        values = x.new_zeros(self.num_slots, batch, self.hidden_size)
        recorded = []
        for t in range(steps):
            recorded.append(values.index_select(0, self._entering))
            self._step(values, projections[t])
        return torch.stack(recorded, dim=1)

    def _run_fixed(self, x: torch.Tensor, repeat: StepRepeater) -> torch.Tensor:
        steps, batch, _ = x.shape
        projections = self._projections(x)
        values = x.new_zeros(self.num_slots, batch, self.hidden_size)
        recorded = x.new_empty(len(self.cells), steps, batch, self.hidden_size)
        t = torch.zeros(1, dtype=torch.long, device=x.device)

        def advance() -> None:
            recorded.index_copy_(1, t, values.index_select(0, self._entering).unsqueeze(1))
            self._step(values, projections.index_select(0, t)[0])
            t.add_(1)

        repeat(advance, steps)
        return recorded

    def _step(self, values: torch.Tensor, base: torch.Tensor) -> None:
        """One step in place on ``values`` (slots, B, H), ``base`` the step's input
        projections and biases (linear nodes, B, H)."""
        batch, hidden = values.shape[1], values.shape[2]
        for lv in self._levels:
            if lv.linear_slots is not None:
                acc = base.index_select(0, lv.linear_rows)
                if lv.pair_weights is not None:
                    read = values.index_select(0, lv.pair_sources)
                    acc.index_add_(0, lv.pair_targets, torch.bmm(read, lv.pair_weights))
                values.index_copy_(0, lv.linear_slots, acc)
            for op, ins, outs in lv.activations:
                values.index_copy_(0, outs, _ACTIVATIONS[op](values.index_select(0, ins)))
            for op, arity, ins, outs in lv.reductions:
                read = values.index_select(0, ins).view(-1, arity, batch, hidden)
                values.index_copy_(0, outs, read.sum(1) if op == SUM else read.prod(1))
            if lv.blend is not None:
                ins, outs = lv.blend
                z, a, b = values.index_select(0, ins).view(-1, 3, batch, hidden).unbind(1)
                values.index_copy_(0, outs, z * a + (1 - z) * b)
        values.index_copy_(0, self._states, values.index_select(0, self._new_states))
