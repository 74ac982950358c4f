"""A recipe cell compiled once into a straight-line step function.

:class:`CellProgram` resolves everything about a recipe that does not change from step to step,
once: the topological order, which linear nodes read the input ``x`` (their input-to-hidden
products, biases included, are one matrix multiply over all steps before the recurrence), and,
for every other value a linear node reads (a state element or an internal node), the linear
nodes that read it (their products with that value are one merged matrix multiply per step).
Where the readers of a merged multiply are consecutive readers of ``x`` with no product yet
(an LSTM's four gates and ``h_prev_0``, say), the multiply adds their input projections itself
(``addmm`` on a slice of the step's projection), one kernel instead of a multiply and an add
per reader. The step itself is generated once as a straight-line Python function (no per-step
graph walking or dict lookups; the same code serves every layer, the hidden size being an
argument), the unit a GPU path can capture (CUDA graphs) or hand to ``torch.compile``.

Measured on a 2-core CPU: at the benchmark's sizes the recurrence is bound by the matrix
multiplies (about 100 GFLOP/s, near the machine's peak), so what pays there is doing fewer of
them (see ``RNNLanguageModel.entering_states``); at small sizes (the fast mode) the cost of
making the step matters as much as running it: ``torch.fx`` (a Graph turned into a
GraphModule) took 1.1 ms of CPU time per recipe, a quarter of a fast-mode score, where writing
the few lines of source directly and compiling them takes about 0.1 ms, so the step is written
directly (``step_source`` shows it). On the CPU at large sizes without autograd the same
step code runs its multiplies on oneDNN, on weights packed once per sequence
(``PACKED_MIN_WORK``): on a 2-core AMD EPYC, where torch's MKL is slow, whole ``hidden_cov``
scores at the benchmark's sizes were 1.23-1.39x faster.

The weights are gathered from the cell's parameters at every :meth:`CellProgram.run` (a few
slices and concatenations per sequence), so autograd flows to the parameters when it is on and
the same program serves every copy of the weights.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from .recipe import BLEND, LINEAR, PROD, SUM, Recipe

if TYPE_CHECKING:
    from .model import RecipeCell

# Calls a step function n times (see CellProgram.run_fixed and graphs.StepGraphs).
StepRepeater = Callable[[Callable[[], None], int], None]

_ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": F.leaky_relu,
}
_ACTIVATION_NAMES = {op: fn.__name__ for op, fn in _ACTIVATIONS.items()}
# What the generated code may call, and nothing else. Except ``__import__``: C code that a
# torch call runs (under a dispatch mode: FlopCounterMode, fake tensors) may import a
# module, and CPython looks the import function up in the builtins of the calling frame.
_STEP_GLOBALS = {
    "__builtins__": {"__import__": builtins.__import__},
    "mm": torch.mm,
    "addmm": torch.addmm,
    # The pieces are only read, never written in place, so they need no autograd view
    # tracking; Tensor.split's Python wrapper took twice as long (12 vs 6 us a call on a
    # 2-core Xeon), at every step.
    "split": torch.unsafe_split,
    **{f.__name__: f for f in _ACTIVATIONS.values()},
}

# Where a step's merged multiply has at least this many multiply-adds (B * H_in * n * H),
# run it with oneDNN on a weight packed once per sequence (see CellWeights.packed). Measured
# on a 2-core AMD EPYC (torch 2.13; MKL is torch's BLAS): (50 x 600)(600 x 1200) took 662 us
# against addmm's 807 us on one thread, 701 against 800 on two, and (50 x 600)(600 x 3600)
# 2211 against 2963 on one; at 9M multiply-adds (50 x 300 by 300 x 600) the two were within
# 10% either way, and below 4M oneDNN lost (its call costs about 15 us more: 2.5-5x slower at
# the fast mode's sizes).
PACKED_MIN_WORK = 16_000_000


def _packed_mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")


def _packed_addmm(acc: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise.binary(a, acc, w, None, "add")


def _pack(weight: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``weight`` (n * H, H_in), one row per output, reordered into oneDNN's blocked layout
    for (batch_size, H_in) inputs."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, batch_size)


_PACKED_STEP_GLOBALS = {**_STEP_GLOBALS, "mm": _packed_mm, "addmm": _packed_addmm}


@functools.cache
def packed_products_work() -> bool:
    """Whether this torch build's oneDNN linear ops (the ones torch.compile's CPU backend
    uses; private, so they may change or vanish between releases) exist and give what
    ``mm`` and ``addmm`` give, to float32 rounding. Checked once per process."""
    try:
        generator = torch.Generator().manual_seed(0)
        a, acc = torch.randn(5, 24, generator=generator), torch.randn(5, 36, generator=generator)
        weight = torch.randn(36, 24, generator=generator)
        packed = _pack(weight, 5)
        products = a @ weight.t()
        pairs = ((_packed_mm(a, packed), products), (_packed_addmm(acc, a, packed), acc + products))
        return all(torch.allclose(got, want, rtol=1e-5, atol=1e-5) for got, want in pairs)
    except (RuntimeError, AttributeError):
        return False


@dataclass(frozen=True)
class CellWeights:
    """The cell's parameters arranged for the program: ``x_weight`` (n_x * H, I) and
    ``x_bias`` (n_x * H,) of the linear nodes that read ``x``, stacked; per read value, the
    stacked weights of its readers, transposed into a row-major (H_in, n_readers * H) or,
    ``packed``, as (n_readers * H, H_in) in oneDNN's blocked layout, which only the
    oneDNN step multiplies read; the biases of the linear nodes that do not read ``x``."""

    x_weight: torch.Tensor | None
    x_bias: torch.Tensor | None
    source_weights: tuple[torch.Tensor, ...]
    plain_biases: tuple[torch.Tensor, ...]
    packed: bool = False


@dataclass(frozen=True)
class GatheredRows:
    """Per-step input projections kept as a table of distinct rows and, per step, which row
    each sequence reads: ``gathered[t]`` is ``table[index[t]]`` (B, n). Each step gathers
    its B rows when it runs, instead of the whole (T, B, n) block being written first: at the
    benchmark's sizes that block is 17-34 MB of fresh memory per cell, which costs more to
    write than the gathers (measured on a 2-core Xeon VM, where first touching a page is
    expensive)."""

    table: torch.Tensor  # (rows, n)
    index: torch.Tensor  # (T, B), int64

    def __getitem__(self, t: int) -> torch.Tensor:
        return self.table.index_select(0, self.index[t])

    def __len__(self) -> int:
        return self.index.shape[0]


@dataclass
class CellRun:
    """What :meth:`CellProgram.run` returns: the outputs (steps, B, H), the final state, and
    what was asked for: the state tensors entering each step (each the first state element,
    (B, H)) and each activation node's outputs per step."""

    outputs: torch.Tensor
    state: tuple[torch.Tensor, ...]
    entering: list[torch.Tensor] = field(default_factory=list)
    activations: dict[str, list[torch.Tensor]] = field(default_factory=dict)


def _stacked(blocks: list[torch.Tensor]) -> torch.Tensor:
    """The blocks stacked along the first axis; a single block is returned as it is (a
    column slice of a weight is a strided view that a matrix multiply reads in place, so
    copying it would only cost fresh memory)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


class CellProgram:
    """The compiled form of one recipe, for any layer sizes (see the module docstring)."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.num_states = recipe.num_states
        graph = recipe.node_map
        self.order = recipe.topological_order
        self.linear_nodes = tuple(n for n in self.order if graph[n].op == LINEAR)
        self.x_readers = tuple(n for n in self.linear_nodes if "x" in graph[n].inputs)
        self.plain_nodes = tuple(n for n in self.linear_nodes if n not in self.x_readers)
        self.activation_nodes = tuple(n for n in self.order if graph[n].op in _ACTIVATIONS)
        # Every non-x value some linear node reads, states first, then internal nodes in
        # topological order (a product is formed as soon as its value exists).
        read = {i for n in self.linear_nodes for i in graph[n].inputs if i != "x"}
        states = [f"h_prev_{i}" for i in range(self.num_states) if f"h_prev_{i}" in read]
        internal = [n for n in self.order if n in read]
        self.sources: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
            (s, tuple(n for n in self.linear_nodes if s in graph[n].inputs))
            for s in (*states, *internal)
        )
        self._steps: dict[tuple[bool, bool], Callable[..., tuple[torch.Tensor, ...]]] = {}

    # ------------------------------------------------------------------ weights
    def weights(self, cell: RecipeCell, batch_size: int | None = None) -> CellWeights:
        """The cell's parameters arranged for this program (differentiable slices). Given
        the ``batch_size`` the steps will run at, the step weights are packed for oneDNN
        where that pays (``CellWeights.packed``; see ``PACKED_MIN_WORK``)."""
        columns, weight, bias = self._parts(cell)
        inputs = self._input_weights(columns, weight, bias)
        sample = weight[self.linear_nodes[0]] if self.linear_nodes else None
        if batch_size is not None and self._packs(sample, cell.hidden_size, batch_size):
            source_weights = tuple(
                _pack(torch.cat([weight[n][:, columns[n, s]] for n in readers]), batch_size)
                for s, readers in self.sources
            )
            return dataclasses.replace(inputs, source_weights=source_weights, packed=True)
        # Row-major (H_in, n_readers * H), one transposing copy per sequence: the step's
        # (B, H_in) x (H_in, n * H) multiply ran about 20% faster on a row-major operand than
        # on the transposed view of the stacked weights (B = 50, H = 600, MKL on a 2-core
        # Xeon), and it runs at every step.
        source_weights = tuple(
            torch.cat([weight[n][:, columns[n, s]].t() for n in readers], dim=1)
            for s, readers in self.sources
        )
        return dataclasses.replace(inputs, source_weights=source_weights)

    def _packs(self, sample: torch.Tensor, hidden_size: int, batch_size: int) -> bool:
        """Whether the step weights are packed for oneDNN (``sample``: one of the cell's
        weights): float32 on the CPU, autograd off (oneDNN's ops have no derivative, for
        the weights or the inputs), the smallest merged multiply at least ``PACKED_MIN_WORK``
        multiply-adds, and oneDNN's ops working in this torch build."""
        if not self.sources or sample.device.type != "cpu" or sample.dtype != torch.float32:
            return False
        if torch.is_grad_enabled():
            return False
        smallest = min(len(readers) for _, readers in self.sources)
        work = batch_size * hidden_size * smallest * hidden_size
        return work >= PACKED_MIN_WORK and packed_products_work()

    def input_weights(self, cell: RecipeCell) -> CellWeights:
        """What :meth:`project` and the linear nodes' biases need, without the step's
        merged weights (``source_weights`` empty): for callers that run their own steps."""
        return self._input_weights(*self._parts(cell))

    def _parts(
        self, cell: RecipeCell
    ) -> tuple[dict[tuple[str, str], slice], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each (linear node, input)'s columns of the node's weight; the weights; the biases."""
        graph = self.recipe.node_map
        columns: dict[tuple[str, str], slice] = {}
        for node in self.linear_nodes:
            start = 0
            for name in graph[node].inputs:
                width = cell.input_size if name == "x" else cell.hidden_size
                columns[node, name] = slice(start, start + width)
                start += width
        # Each weight is read once: a parametrised weight (DropConnect while training) is
        # then computed, and its mask drawn, once per sequence.
        linears = dict(zip(cell.linear_nodes, cell.linears, strict=True))
        weight = {n: linears[n].weight for n in self.linear_nodes}
        bias = {n: linears[n].bias for n in self.linear_nodes}
        return columns, weight, bias

    def _input_weights(
        self,
        columns: dict[tuple[str, str], slice],
        weight: dict[str, torch.Tensor],
        bias: dict[str, torch.Tensor],
    ) -> CellWeights:
        x_weight = x_bias = None
        if self.x_readers:
            x_weight = _stacked([weight[n][:, columns[n, "x"]] for n in self.x_readers])
            x_bias = _stacked([bias[n] for n in self.x_readers])
        plain = tuple(bias[n] for n in self.plain_nodes)
        return CellWeights(x_weight, x_bias, (), plain)

    def project(self, weights: CellWeights, x: torch.Tensor) -> torch.Tensor | None:
        """(..., I) -> (..., n_x * H): the input-to-hidden products, biases included, of
        every linear node reading ``x``, in one multiply (None when no node reads ``x``)."""
        if weights.x_weight is None:
            return None
        flat = x.reshape(-1, x.shape[-1])
        out = torch.addmm(weights.x_bias, flat, weights.x_weight.t())
        return out.view(*x.shape[:-1], out.shape[-1])

    # ------------------------------------------------------------------ the recurrence
    def run(
        self,
        weights: CellWeights,
        projected: torch.Tensor | GatheredRows | None,
        state: Sequence[torch.Tensor] | None,
        *,
        steps: int,
        batch_size: int,
        hidden_size: int,
        like: torch.Tensor,
        entering: bool = False,
        activations: bool = False,
    ) -> CellRun:
        """Run ``steps`` steps. ``projected``: :meth:`project` of the inputs, (>= steps, B,
        n_x * H) (a tensor, or :class:`GatheredRows` of the same shape), or None when no
        node reads ``x``. ``state`` None starts from zero states.
        ``like`` gives dtype and device."""
        if state is None:
            state = tuple(like.new_zeros(batch_size, hidden_size) for _ in range(self.num_states))
        state = tuple(state)
        run = CellRun(like.new_empty(0), state)
        if activations:
            run.activations = {n: [] for n in self.activation_nodes}
        if steps == 0:
            run.outputs = like.new_empty(0, batch_size, hidden_size)
            return run
        step = self.step_function(activations=activations, packed=weights.packed)
        constants = (*weights.source_weights, *weights.plain_biases)
        k = self.num_states
        outputs = []
        for t in range(steps):
            if entering:
                run.entering.append(state[0])
            pre = projected[t] if projected is not None else None
            values = step(pre, hidden_size, *state, *constants)
            state = values[:k]
            if activations:
                for name, value in zip(self.activation_nodes, values[k:], strict=True):
                    run.activations[name].append(value)
            outputs.append(state[0])
        run.outputs = torch.stack(outputs)
        run.state = tuple(state)
        return run

    def run_fixed(
        self,
        weights: CellWeights,
        projected: torch.Tensor | GatheredRows | None,
        *,
        steps: int,
        batch_size: int,
        hidden_size: int,
        like: torch.Tensor,
        repeat: StepRepeater,
    ) -> torch.Tensor:
        """The outputs (steps, B, H) of ``steps`` steps from zero states, as :meth:`run`
        computes them, but with every step the same operations on the same memory: the step
        index is a tensor on the device, each step reads its input projection and writes its
        output through it, and the states are updated in place. One step can then be
        captured as a CUDA graph and replayed for the others (``repeat``: a
        :class:`~.graphs.StepGraphs`, or anything that calls a function n times)."""
        k = self.num_states
        state = tuple(like.new_zeros(batch_size, hidden_size) for _ in range(k))
        outputs = like.new_empty(steps, batch_size, hidden_size)
        if steps == 0:
            return outputs
        step = self.step_function(packed=weights.packed)
        constants = (*weights.source_weights, *weights.plain_biases)
        t = torch.zeros(1, dtype=torch.long, device=like.device)

        def advance() -> None:
            if projected is None:
                pre = None
            elif isinstance(projected, GatheredRows):
                pre = projected.table.index_select(0, projected.index.index_select(0, t)[0])
            else:
                pre = projected.index_select(0, t)[0]
            # Every new state is a fresh tensor, none an old state itself (the recipe format
            # has no identity node: a sum or product takes two inputs or more), so copying
            # them in order overwrites nothing a later copy reads.
            new = step(pre, hidden_size, *state, *constants)[:k]
            for buffer, value in zip(state, new, strict=True):
                buffer.copy_(value)
            outputs.index_copy_(0, t, state[0].unsqueeze(0))
            t.add_(1)

        repeat(advance, steps)
        return outputs

    def step_function(
        self, *, activations: bool = False, packed: bool = False
    ) -> Callable[..., tuple[torch.Tensor, ...]]:
        """The generated step: ``(pre_t, hidden_size, h_prev_0.., source weights..,
        plain biases..) -> (h_new_0.., activation outputs..)``, generated on first use.
        ``packed``: the same code with its multiplies bound to oneDNN's, for packed
        source weights (:class:`CellWeights`)."""
        key = (activations, packed)
        if key not in self._steps:
            namespace = dict(_PACKED_STEP_GLOBALS if packed else _STEP_GLOBALS)
            exec(compile(self.step_source_for(activations), "<cell step>", "exec"), namespace)
            self._steps[key] = namespace["step"]
        return self._steps[key]

    @property
    def step_source(self) -> str:
        """The generated code of the step (for reading and debugging)."""
        return self.step_source_for(False)

    def step_source_for(self, activations: bool) -> str:
        """Python source of the step: one line per operation, in topological order; every
        value is a local variable (``s*`` states, ``v*`` nodes, ``p*`` merged products)."""
        graph = self.recipe.node_map
        var = {f"h_prev_{i}": f"s{i}" for i in range(self.num_states)}
        var.update({name: f"v{j}" for j, name in enumerate(self.order)})
        source_index = {src: j for j, (src, _) in enumerate(self.sources)}
        plain_index = {n: j for j, n in enumerate(self.plain_nodes)}
        terms: dict[str, list[str]] = {n: [] for n in self.linear_nodes}
        args = ["pre", "hidden_size", *(f"s{i}" for i in range(self.num_states))]
        args += [f"w{j}" for j in range(len(self.sources))]
        args += [f"b{j}" for j in range(len(self.plain_nodes))]
        lines = [f"def step({', '.join(args)}):"]

        def split(name: str, expr: str, count: int) -> list[str]:
            if count == 1:
                lines.append(f"    {name} = {expr}")
                return [name]
            lines.append(f"    {name} = split({expr}, hidden_size, 1)")
            return [f"{name}[{r}]" for r in range(count)]

        x_position = {n: i for i, n in enumerate(self.x_readers)}
        base_of: dict[str, str] = {}  # linear node -> its x part with a product already in
        # The x parts are split from pre lazily, so a cell whose every x part is fused does
        # not split it at all.
        x_split: list[str] = []

        def x_part(name: str) -> str:
            if not x_split:
                x_split.extend(split("x", "pre", len(self.x_readers)))
            return x_split[x_position[name]]

        def multiply(src: str) -> None:
            j = source_index[src]
            readers = self.sources[j][1]
            first = x_position.get(readers[0])
            # Readers that are consecutive x-readers, in order, with no product yet: their
            # input projections are one slice of pre, added by the multiply itself (addmm:
            # one kernel, and no extra pass over the sum, instead of a multiply and an add
            # per reader).
            fused = first is not None and all(
                x_position.get(r) == first + i and not terms[r] and r not in base_of
                for i, r in enumerate(readers)
            )
            if fused:
                lo, hi = first, first + len(readers)
                whole = (lo, hi) == (0, len(self.x_readers))
                window = "pre" if whole else f"pre[:, {lo} * hidden_size:{hi} * hidden_size]"
                expr = f"addmm({window}, {var[src]}, w{j})"
            else:
                expr = f"mm({var[src]}, w{j})"
            for reader, piece in zip(readers, split(f"p{j}", expr, len(readers)), strict=True):
                if fused:
                    base_of[reader] = piece
                else:
                    terms[reader].append(piece)

        for i in range(self.num_states):
            if f"h_prev_{i}" in source_index:
                multiply(f"h_prev_{i}")
        for name in self.order:
            node = graph[name]
            ins = [var[i] for i in node.inputs if i != "x"]
            if node.op == LINEAR:
                if name in base_of:
                    base = base_of[name]
                elif name in x_position:
                    base = x_part(name)
                else:
                    base = f"b{plain_index[name]}"
                expr = " + ".join([base, *terms[name]])
            elif node.op == BLEND:
                z, a, b = ins  # as the reference computes it
                expr = f"{z} * {a} + (1 - {z}) * {b}"
            elif node.op == PROD:
                expr = " * ".join(ins)
            elif node.op == SUM:
                expr = " + ".join(ins)
            else:
                expr = f"{_ACTIVATION_NAMES[node.op]}({ins[0]})"
            lines.append(f"    {var[name]} = {expr}")
            if name in source_index:
                multiply(name)
        out = [var[f"h_new_{i}"] for i in range(self.num_states)]
        if activations:
            out += [var[n] for n in self.activation_nodes]
        lines.append(f"    return ({', '.join(out)},)")
        return "\n".join(lines) + "\n"
