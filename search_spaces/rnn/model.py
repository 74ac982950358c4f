"""The NAS-Bench-NLP language model built from a cell recipe.

Embedding -> ``num_layers`` recurrent layers that all use the same cell graph -> decoder tied
to the embedding (so the last layer's hidden size is the embedding size). Parameter count and
initialisation follow the benchmark: each linear node is one weight over the concatenation of
its inputs plus one bias; every cell parameter is uniform(-1/sqrt(H), 1/sqrt(H)) for the
layer's hidden size H; the embedding is uniform(-0.1, 0.1); the decoder bias is zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .compiled import CellProgram, CellWeights, GatheredRows, StepRepeater
from .recipe import (
    ACTIVATIONS,
    BLEND,
    LINEAR,
    PROD,
    SUM,
    Recipe,
    state_index,
)

_ACTIVATION_FNS = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": nn.functional.leaky_relu,
}
assert set(_ACTIVATION_FNS) == set(ACTIVATIONS)
EMBEDDING_BOUND = 0.1  # the embedding (and an untied decoder) start uniform(-0.1, 0.1)


@dataclass(frozen=True)
class ModelSizes:
    """Every size of the language model (benchmark defaults)."""

    vocab_size: int = 33278
    embedding_size: int = 400
    hidden_size: int = 600
    num_layers: int = 3
    tied: bool = True
    # Not a size, but it travels with them to every model a scorer builds: the cells'
    # weights are uniform(-g/sqrt(H), g/sqrt(H)); 1 is the benchmark's initialisation. A
    # training-free metric reads the network at initialisation, so the scale it reads it at
    # is a free choice of the metric, like the widths (experiments/fitness_search.py).
    init_gain: float = 1.0

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(input size, hidden size) of each layer."""
        sizes = []
        for layer in range(self.num_layers):
            inp = self.embedding_size if layer == 0 else self.hidden_size
            last = layer == self.num_layers - 1
            hid = self.embedding_size if (last and self.tied) else self.hidden_size
            sizes.append((inp, hid))
        return sizes


@dataclass
class CellRecord:
    """What one cell's forward records, step by step (filled in place; pass it as
    ``record``). The tensors are the ones the computation uses, not copies, so gradients with
    respect to them can be taken when autograd is on."""

    entering: bool = False  # record the first state element entering each step
    activations: bool = False  # record the output of every activation node at each step
    entering_steps: list[torch.Tensor] = field(default_factory=list)  # T tensors (B, H)
    activation_steps: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def stacked_activations(self) -> dict[str, torch.Tensor]:
        """Node name -> (T, B, H) outputs of that activation node."""
        return {name: torch.stack(steps) for name, steps in self.activation_steps.items()}


@dataclass
class StackRecord:
    """The result of running the recurrent stack: the last run layer's outputs (T, B, H),
    each layer's final state, and each layer's :class:`CellRecord`."""

    output: torch.Tensor
    states: list[tuple[torch.Tensor, ...]]
    records: list[CellRecord]


class _NodeLinear(nn.Linear):
    """A linear node's weight and bias: torch's Linear, without its initialisation on the
    "meta" device, where it draws nothing and only costs time (with the cell's own, skipped
    likewise, a fast-mode score went from 4.4 to 3.6 ms); the cell draws its own."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class RecipeCell(nn.Module):
    """One recurrent layer running a recipe over a sequence.

    ``forward`` runs the compiled program (:class:`~.compiled.CellProgram`, built once per
    cell): input-to-hidden products of all steps are one matrix multiply before the
    recurrence, the products of every value with all linear nodes that read it are one
    multiply per step, and the step is generated straight-line code. ``step`` interprets the
    graph node by node and is the reference the compiled path is tested against;
    ``forward_interpreted`` is the earlier fast path (the same multiplies, the graph walked at
    every step), kept to measure what the compilation gains.
    """

    def __init__(
        self,
        recipe: Recipe,
        input_size: int,
        hidden_size: int,
        program: CellProgram | None = None,
        init_gain: float = 1.0,
    ) -> None:
        """``program``: the recipe's compiled program, when the caller already has one (the
        layers of a model share theirs). ``init_gain``: see :attr:`ModelSizes.init_gain`."""
        super().__init__()
        self.recipe = recipe
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.init_gain = init_gain
        self.num_states = recipe.num_states
        self.order = recipe.topological_order
        graph = recipe.node_map
        self.linear_nodes = [n for n in self.order if graph[n].op == LINEAR]
        self.linears = nn.ModuleList(
            _NodeLinear(sum(self._width(i) for i in graph[n].inputs), hidden_size)
            for n in self.linear_nodes
        )
        self._linear_index = {n: j for j, n in enumerate(self.linear_nodes)}
        self.program = CellProgram(recipe) if program is None else program
        if not self.linears[0].weight.is_meta:  # on "meta" the owner draws after to_empty
            self.reset_parameters()

    def _width(self, name: str) -> int:
        return self.input_size if name == "x" else self.hidden_size

    @property
    def init_bound(self) -> float:
        """Every parameter of the cell starts uniform(-init_bound, init_bound)."""
        return self.init_gain / math.sqrt(self.hidden_size)

    def reset_parameters(self) -> None:
        bound = self.init_bound
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _column_slices(self, node: str) -> dict[str, slice]:
        out, start = {}, 0
        for name in self.recipe.node_map[node].inputs:
            w = self._width(name)
            out[name] = slice(start, start + w)
            start += w
        return out

    def initial_state(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(like.new_zeros(batch_size, self.hidden_size) for _ in range(self.num_states))

    # ------------------------------------------------------------------ reference path
    def step(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        values: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """One time step, interpreted node by node. ``values``, if given, is filled with
        every node's value (and the inputs)."""
        values = {} if values is None else values
        values["x"] = x
        values.update({f"h_prev_{i}": s for i, s in enumerate(state)})
        for name in self.order:
            node = self.recipe.node_map[name]
            ins = [values[i] for i in node.inputs]
            values[name] = _apply(node.op, ins, self, name)
        return tuple(values[f"h_new_{i}"] for i in range(self.num_states))

    # ------------------------------------------------------------------ compiled path
    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...] | None = None,
        record_entering: bool = False,
        record: CellRecord | None = None,
        *,
        projected: torch.Tensor | None = None,
        weights: CellWeights | None = None,
        steps: int | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """Run the whole sequence ``x`` of shape (T, B, input_size).

        Returns the outputs (T, B, H), the final state, and, with ``record_entering``, the
        first state element entering the cell at every step, (T, B, H). ``record`` is filled
        with what it asks for (the per-step tensors themselves).

        ``projected``: the inputs already projected (``self.program.project`` with
        ``weights``, this cell's ``self.program.weights(self)``), used in place of ``x``'s
        projection (x then only gives shape, dtype and device). ``steps``: run only
        the first ``steps`` steps (all by default); the states entering steps 0..T-1 need
        only T-1 of them.
        """
        if weights is None:
            weights = self.program.weights(self, batch_size=x.shape[1])
        if projected is None:
            projected = self.program.project(weights, x)
        run = self.program.run(
            weights,
            projected,
            state,
            steps=x.shape[0] if steps is None else steps,
            batch_size=x.shape[1],
            hidden_size=self.hidden_size,
            like=x,
            entering=record_entering or (record is not None and record.entering),
            activations=record is not None and record.activations,
        )
        if record is not None:
            if record.entering:
                record.entering_steps.extend(run.entering)
            for name, values in run.activations.items():
                record.activation_steps.setdefault(name, []).extend(values)
        recorded = torch.stack(run.entering) if record_entering and run.entering else None
        if record_entering and recorded is None:
            recorded = x.new_empty(0, x.shape[1], self.hidden_size)
        return run.outputs, run.state, recorded

    # ------------------------------------------------------------------ interpreted path
    def forward_interpreted(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...] | None = None,
        record_entering: bool = False,
        record: CellRecord | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """``forward`` without the compiled program (the graph walked at every step)."""
        steps, batch = x.shape[0], x.shape[1]
        if state is None:
            state = self.initial_state(batch, x)
        graph = self.recipe.node_map
        hsz = self.hidden_size

        # Input-to-hidden products (with the biases) of all steps in one multiply.
        x_nodes = [n for n in self.linear_nodes if "x" in graph[n].inputs]
        pre_x: dict[str, torch.Tensor] = {}
        if x_nodes:
            weights = [self._weight_cols(n, "x") for n in x_nodes]
            biases = [self.linears[self._linear_index[n]].bias for n in x_nodes]
            pre = torch.addmm(
                torch.cat(biases), x.reshape(steps * batch, -1), torch.cat(weights).t()
            ).view(steps, batch, len(x_nodes), hsz)
            pre_x = {n: pre[:, :, j] for j, n in enumerate(x_nodes)}

        # For each state element, the stacked weights of all linear nodes that read it.
        state_readers: list[tuple[list[str], torch.Tensor]] = []
        for i in range(self.num_states):
            readers = [n for n in self.linear_nodes if f"h_prev_{i}" in graph[n].inputs]
            w = (
                torch.cat([self._weight_cols(n, f"h_prev_{i}") for n in readers]).t()
                if readers
                else None
            )
            state_readers.append((readers, w))
        inner_cols = {
            n: [
                (i, self._weight_cols(n, i).t())
                for i in graph[n].inputs
                if i != "x" and state_index(i) is None
            ]
            for n in self.linear_nodes
        }
        plain_bias = {
            n: self.linears[self._linear_index[n]].bias for n in self.linear_nodes if n not in pre_x
        }

        outputs = []
        entering = [] if record_entering else None
        step_entering = record.entering_steps if record is not None and record.entering else None
        activations = None
        if record is not None and record.activations:
            activations = record.activation_steps
            for name in self.order:
                if graph[name].op in _ACTIVATION_FNS:
                    activations.setdefault(name, [])
        for t in range(steps):
            if entering is not None:
                entering.append(state[0])
            if step_entering is not None:
                step_entering.append(state[0])
            acc: dict[str, torch.Tensor] = {}
            for i, (readers, w) in enumerate(state_readers):
                if readers:
                    prod = (state[i] @ w).view(batch, len(readers), hsz)
                    for j, n in enumerate(readers):
                        acc[n] = prod[:, j] if n not in acc else acc[n] + prod[:, j]
            values: dict[str, torch.Tensor] = {f"h_prev_{i}": s for i, s in enumerate(state)}
            for name in self.order:
                node = graph[name]
                if node.op == LINEAR:
                    total = pre_x[name][t] if name in pre_x else plain_bias[name]
                    if name in acc:
                        total = total + acc[name]
                    for inp, w in inner_cols[name]:
                        total = torch.addmm(total, values[inp], w)
                    values[name] = total
                else:
                    values[name] = _apply(node.op, [values[i] for i in node.inputs], self, name)
                    if activations is not None and name in activations:
                        activations[name].append(values[name])
            state = tuple(values[f"h_new_{i}"] for i in range(self.num_states))
            outputs.append(state[0])
        recorded = torch.stack(entering) if entering is not None else None
        return torch.stack(outputs), state, recorded

    def _weight_cols(self, node: str, inp: str) -> torch.Tensor:
        lin = self.linears[self._linear_index[node]]
        return lin.weight[:, self._column_slices(node)[inp]]


def _apply(op: str, ins: list[torch.Tensor], cell: RecipeCell, name: str) -> torch.Tensor:
    if op == LINEAR:
        lin = cell.linears[cell._linear_index[name]]
        return lin(torch.cat(ins, dim=-1) if len(ins) > 1 else ins[0])
    if op == BLEND:
        z, a, b = ins
        return z * a + (1 - z) * b
    if op == PROD:
        out = ins[0]
        for t in ins[1:]:
            out = out * t
        return out
    if op == SUM:
        out = ins[0]
        for t in ins[1:]:
            out = out + t
        return out
    return _ACTIVATION_FNS[op](ins[0])


class RNNLanguageModel(nn.Module):
    """Embedding -> stacked recipe cells -> tied decoder, as in NAS-Bench-NLP."""

    def __init__(
        self,
        recipe: Recipe,
        sizes: ModelSizes,
        device: torch.device | str | None = None,
        build_layers: int | None = None,
        encoder_weight: torch.Tensor | None = None,
        stream: UniformStream | None = None,
    ) -> None:
        """``build_layers``: build only the embedding and the first layers (no decoder), for
        probes that read no deeper. Their weights equal the full model's: they are drawn
        first, in the same order.

        ``encoder_weight``: an embedding (V, E) drawn earlier, used as is (not copied, not
        drawn again: torch's RNG must then stand where that draw left it, see
        :class:`SharedEmbedding`). Many models of one seed share it.

        ``stream`` (with ``encoder_weight``): the draws that follow the embedding's; the other
        weights are views of it, the numbers torch's RNG would draw next, and nothing is
        drawn (see :class:`UniformStream`)."""
        super().__init__()
        self.recipe = recipe
        self.sizes = sizes
        last_hidden = sizes.layer_sizes()[-1][1]
        if sizes.tied and last_hidden != sizes.embedding_size:
            raise ValueError("tied weights need the last hidden size to equal E")
        # Allocate without torch's default initialisation (it would be overwritten anyway,
        # and on a 33k x 400 embedding it costs more than scoring a cell).
        layer_sizes = sizes.layer_sizes()[:build_layers]
        self.complete = len(layer_sizes) == sizes.num_layers
        if encoder_weight is not None and tuple(encoder_weight.shape) != (
            sizes.vocab_size,
            sizes.embedding_size,
        ):
            raise ValueError(
                f"encoder weight of shape {tuple(encoder_weight.shape)}, expected "
                f"({sizes.vocab_size}, {sizes.embedding_size})"
            )
        program = CellProgram(recipe)  # one compiled step for every layer
        device = device or "cpu"
        if encoder_weight is not None:  # shares the tensor's storage; no init on "meta"
            self.encoder = nn.Embedding(*encoder_weight.shape, _weight=encoder_weight)
        with torch.device("meta"):
            if encoder_weight is None:
                self.encoder = nn.Embedding(sizes.vocab_size, sizes.embedding_size)
            self.layers = nn.ModuleList(
                RecipeCell(recipe, inp, hid, program, sizes.init_gain) for inp, hid in layer_sizes
            )
            self.decoder = nn.Linear(last_hidden, sizes.vocab_size) if self.complete else None
        if stream is not None:
            if encoder_weight is None:
                raise ValueError("weights from a stream need the embedding drawn before it")
            if stream.device != resolved_device(device):
                raise ValueError(f"the weight stream is on {stream.device}, not on {device}")
            self._take_parameters(stream, device)
            return
        if encoder_weight is None:
            self.encoder.to_empty(device=device)
        self.layers.to_empty(device=device)
        if self.decoder is not None:
            self.decoder.to_empty(device=device)
        if sizes.tied and self.decoder is not None:
            self.decoder.weight = self.encoder.weight
        self.reset_parameters(draw_encoder=encoder_weight is None)

    def _take_parameters(self, stream: UniformStream, device: torch.device | str) -> None:
        """:meth:`reset_parameters` without the embedding, each weight a view of ``stream``
        at the offset its draw would start at (the same order and bounds)."""
        offset = 0
        for cell in self.layers:
            for module in cell.modules():
                for name, p in list(module._parameters.items()):
                    view = stream.take(offset, p.shape, cell.init_bound)
                    module._parameters[name] = nn.Parameter(view)
                    offset += p.numel()
        if self.decoder is None:
            return
        if self.sizes.tied:
            self.decoder.weight = self.encoder.weight
        else:
            self.decoder.weight = nn.Parameter(
                stream.take(offset, self.decoder.weight.shape, EMBEDDING_BOUND)
            )
        self.decoder.bias = nn.Parameter(torch.zeros(self.sizes.vocab_size, device=device))

    def reset_parameters(self, draw_encoder: bool = True) -> None:
        """The benchmark's initialisation, drawn from torch's current RNG state (the
        embedding first, unless ``draw_encoder`` is False)."""
        if draw_encoder:
            nn.init.uniform_(self.encoder.weight, -EMBEDDING_BOUND, EMBEDDING_BOUND)
        for cell in self.layers:
            cell.reset_parameters()
        if self.decoder is not None:
            if not self.sizes.tied:
                nn.init.uniform_(self.decoder.weight, -EMBEDDING_BOUND, EMBEDDING_BOUND)
            nn.init.zeros_(self.decoder.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        state: list[tuple[torch.Tensor, ...]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
        """Logits (T, B, V) for tokens (T, B), and the final state of every layer."""
        if self.decoder is None:
            raise RuntimeError("this model was built with only its first layers")
        h = self.encoder(tokens)
        new_state = []
        for layer, cell in enumerate(self.layers):
            h, s, _ = cell(h, None if state is None else state[layer])
            new_state.append(s)
        return self.decoder(h), new_state

    def run_layers(
        self,
        e: torch.Tensor,
        num_layers: int | None = None,
        *,
        entering: bool = False,
        activations: bool = False,
    ) -> StackRecord:
        """Run embeddings ``e`` (T, B, E) through the first ``num_layers`` recurrent layers
        (all by default) from zero states, recording per layer what is asked: the state
        tensors entering each step and/or every activation node's output at each step."""
        num_layers = len(self.layers) if num_layers is None else num_layers
        if num_layers > len(self.layers):
            raise ValueError(f"asked for {num_layers} layers, {len(self.layers)} were built")
        h, states, records = e, [], []
        for cell in self.layers[:num_layers]:
            rec = CellRecord(entering=entering, activations=activations)
            h, s, _ = cell(h, record=rec)
            states.append(s)
            records.append(rec)
        return StackRecord(h, states, records)

    def forward_from_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        """Logits (T, B, V) for embeddings ``e`` (T, B, E) fed in place of the embedding
        lookup (all layers from zero states, then the decoder)."""
        if self.decoder is None:
            raise RuntimeError("this model was built with only its first layers")
        return self.decoder(self.run_layers(e).output)

    def entering_states(
        self,
        tokens: torch.Tensor,
        num_layers: int,
        repeat: StepRepeater | None = None,
        extra_state: Sequence[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """The first state element entering each of the first ``num_layers`` cells at every
        step, each (T, B, H_layer). Layers above ``num_layers`` are not run. ``repeat``: run
        the recurrences with :meth:`CellProgram.run_fixed` and this repeater (a
        :class:`~.graphs.StepGraphs` replays one recorded step on a GPU).

        ``extra_state``: one (k, H) tensor per state of the cell; the first layer then also
        runs k extra sequences, the first k of ``tokens``, from these states instead of zero
        (in the same multiplies: their weights are read once a step for all columns). Their
        outputs (T', k, H) are appended to the returned list, after the layers' states; they
        never reach the layers above (the stress test of nas_engine.health). Not with
        ``repeat``."""
        if num_layers > len(self.layers):
            raise ValueError(f"asked for {num_layers} layers, {len(self.layers)} were built")
        if extra_state is not None and repeat is not None:
            raise ValueError("extra sequences run without a step repeater")
        steps, batch = tokens.shape
        like = self.encoder.weight
        recorded, h, extra = [], None, None
        for layer, cell in enumerate(self.layers[:num_layers]):
            width = batch
            if layer == 0 and extra_state is not None:
                k = extra_state[0].shape[0]
                tokens = torch.cat([tokens, tokens[:, :k]], dim=1)
                width = batch + k
            weights = cell.program.weights(cell, batch_size=width)
            if layer == 0:
                projected = self._project_tokens(cell, weights, tokens)
            else:
                projected = cell.program.project(weights, h)
            top = layer == num_layers - 1
            # The state entering the last step is the state after T - 1 steps: the top
            # layer's last step is never needed.
            sequence = {
                "steps": steps - 1 if top else steps,
                "batch_size": width,
                "hidden_size": cell.hidden_size,
                "like": like,
            }
            if repeat is not None:
                outputs = cell.program.run_fixed(weights, projected, repeat=repeat, **sequence)
                # Entering step t is the output of step t - 1, zero for the first.
                first = like.new_zeros(1, batch, cell.hidden_size)
                recorded.append(torch.cat([first, outputs[: steps - 1]]))
                h = outputs
                continue
            state = None
            if width != batch:
                zeros = like.new_zeros(batch, cell.hidden_size)
                state = [torch.cat([zeros, s.to(like)]) for s in extra_state]
            run = cell.program.run(weights, projected, state, entering=True, **sequence)
            entering = [*run.entering, run.state[0]] if top else run.entering
            h = run.outputs
            if width != batch:  # the stack copies anyway: the scored columns come out whole
                entering = [e[:batch] for e in entering]
                extra, h = h[:, batch:], h[:, :batch]
            recorded.append(torch.stack(entering))
        return recorded if extra is None else [*recorded, extra]

    def _project_tokens(
        self, cell: RecipeCell, weights: CellWeights, tokens: torch.Tensor
    ) -> torch.Tensor | GatheredRows | None:
        """The first layer's input projection of ``tokens`` (T, B) -> (T, B, n_x * H). A
        batch of T * B tokens holds far fewer distinct ones (1172 of 3500 in PTB's first
        batch), so on the CPU each distinct token is embedded and projected once and each
        step gathers its rows (the same numbers up to rounding, a third of the multiply).
        Not on a GPU: finding the distinct tokens there would wait for the device."""
        if weights.x_weight is None:
            return None
        if tokens.device.type == "cpu":
            distinct, inverse = torch.unique(tokens, return_inverse=True)
            if 4 * distinct.numel() < 3 * tokens.numel():
                table = cell.program.project(weights, self.encoder(distinct))
                return GatheredRows(table, inverse)
        return cell.program.project(weights, self.encoder(tokens))


class UniformStream:
    """The numbers torch's CPU generator draws from one saved state, drawn once and kept
    scaled, so that each model's uniform(-b, b) weights are views of it instead of draws.

    Every model of one seed draws its cells from the same state (the one right after the
    embedding, see :class:`SharedEmbedding`), one parameter after the other, and torch's
    ``uniform_`` on float32 takes one 32-bit draw per element, in order: so the parameter
    that starts at offset o of a model's draws holds draws o, o+1, ... of one stream, mapped
    to (-b, b). :meth:`take` returns exactly those values, as a view of the stream scaled to
    that bound; nothing is drawn, copied or moved to the device per model. Drawing the cells
    of a median cell at the benchmark's sizes took about 10 ms of a 0.14 s score on a 2-core
    Xeon, and on a GPU the CPU draw and the copy to the device would be most of a score.

    The stream is drawn on the CPU, as the models are, and grows (drawn again from the state,
    longer) when a model needs more. The scaled copies are shared by every model built from
    them, so a model must never change its weights in place: :meth:`take` refuses to go on
    once one has (torch's version counter of the stream moved). ``device``: where the scaled
    streams live. Only float32 (torch's default dtype) is supported; see
    :func:`stream_reproduces_uniform`.
    """

    def __init__(self, rng_state: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.rng_state = rng_state
        self.device = resolved_device(device)
        self._raw = torch.empty(0)  # float32 draws in [0, 1), on the CPU
        self._scaled: dict[float, tuple[torch.Tensor, int]] = {}  # bound -> (stream, version)

    def __len__(self) -> int:
        return self._raw.numel()

    def take(self, offset: int, shape: Sequence[int], bound: float) -> torch.Tensor:
        """The tensor of ``shape`` that ``uniform_(-bound, bound)`` would fill from draw
        ``offset`` of the stream on: a view of the stream scaled to ``bound``."""
        end = offset + math.prod(shape)
        if end > len(self):
            self._grow(end)
        if bound not in self._scaled:
            scaled = _uniform_from_unit(self._raw, bound).to(self.device)
            self._scaled[bound] = (scaled, scaled._version)
        scaled, version = self._scaled[bound]
        if scaled._version != version:
            raise RuntimeError(
                "a model built from the shared weight stream changed its weights in place; "
                "the stream's later models would start from those weights"
            )
        return scaled[offset:end].view(tuple(shape))

    def _grow(self, length: int) -> None:
        # Geometric growth: a larger cell then seldom draws the whole stream again.
        length = max(length, 2 * len(self), 1 << 16)
        generator = torch.Generator()
        generator.set_state(self.rng_state)
        self._raw = torch.empty(length, dtype=torch.float32).uniform_(0.0, 1.0, generator=generator)
        self._scaled.clear()


def resolved_device(device: torch.device | str) -> torch.device:
    """``device`` with its index, as a tensor's ``.device`` gives it ("cuda" -> "cuda:0")."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _uniform_from_unit(unit: torch.Tensor, bound: float) -> torch.Tensor:
    """Draws of ``uniform_(0, 1)`` mapped as ``uniform_(-bound, bound)`` maps the same draws:
    torch computes u * (to - from) + from in float32 with one rounding (a fused multiply-add
    on x86 builds); in float64 that product and sum are exact for a symmetric range (u has
    24 bits, to - from = 2 * to exactly), so rounding once to float32 gives the same value."""
    low = torch.tensor(-bound, dtype=torch.float32)
    span = torch.tensor(bound, dtype=torch.float32) - low
    return (unit.double() * span.double() + low.double()).to(torch.float32)


@functools.cache
def stream_reproduces_uniform() -> bool:
    """Whether :class:`UniformStream` gives exactly what this torch build's ``uniform_`` gives
    (checked once per process on a few thousand draws at several bounds; a build that rounds
    differently gets False, and models are then drawn as usual)."""
    state = torch.Generator().manual_seed(12345).get_state()
    sizes, bounds = (1000, 37, 3000, 5), (0.1, 0.5, 1 / math.sqrt(600), 1.25 / math.sqrt(64))
    generator = torch.Generator()
    generator.set_state(state)
    drawn = [
        torch.empty(n, dtype=torch.float32).uniform_(-b, b, generator=generator)
        for n, b in zip(sizes, bounds, strict=True)
    ]
    stream = UniformStream(state)
    offset = 0
    for got, n, b in zip(drawn, sizes, bounds, strict=True):
        if not torch.equal(stream.take(offset, (n,), b), got):
            return False
        offset += n
    return True


@dataclass(frozen=True)
class SharedEmbedding:
    """The embedding that every model of one seed and size draws first (the benchmark draws
    it before the cells), drawn once, and torch's CPU RNG state right after that draw.
    Building a model with ``encoder_weight=weight`` from ``rng_state`` gives exactly the
    model that :func:`torch.manual_seed` (seed) would, without drawing and storing V x E
    numbers again (at the default sizes that draw costs more than a small cell's forward).
    ``stream``: the draws after the embedding's (:class:`UniformStream`), so that the cells
    are not drawn either; None where it would not reproduce torch's draws."""

    weight: torch.Tensor  # (V, E), on the device the models will run on
    rng_state: torch.Tensor  # torch.get_rng_state() right after drawing it on the CPU
    stream: UniformStream | None = None

    @classmethod
    def draw(
        cls, seed: int, sizes: ModelSizes, device: torch.device | str = "cpu"
    ) -> SharedEmbedding:
        """Draw it as :class:`RNNLanguageModel` does (torch's default dtype), leaving torch's
        global RNG state as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            weight = torch.empty(sizes.vocab_size, sizes.embedding_size)
            nn.init.uniform_(weight, -EMBEDDING_BOUND, EMBEDDING_BOUND)
            state = torch.get_rng_state()
        stream = None
        if weight.dtype == torch.float32 and stream_reproduces_uniform():
            stream = UniformStream(state, device)
        return cls(weight.to(device), state, stream)

    def build(
        self,
        recipe: Recipe,
        sizes: ModelSizes,
        device: torch.device | str = "cpu",
        build_layers: int | None = None,
    ) -> RNNLanguageModel:
        """The model of ``recipe`` with this embedding (the cells' weights views of the
        stream on its device, or drawn on the CPU from the saved RNG state; torch's global
        RNG state left as it was), on ``device``. Its weights are shared with every other
        model built here: train a model of your own."""
        if self.weight.dtype != torch.get_default_dtype():
            raise ValueError(
                f"shared embedding is {self.weight.dtype}, the default dtype is "
                f"{torch.get_default_dtype()}: draw it under the same default dtype"
            )
        if self.stream is not None and self.stream.device == resolved_device(device):
            return RNNLanguageModel(
                recipe,
                sizes,
                device,
                build_layers=build_layers,
                encoder_weight=self.weight,
                stream=self.stream,
            )
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            model = RNNLanguageModel(
                recipe, sizes, "cpu", build_layers=build_layers, encoder_weight=self.weight
            )
        return model.to(device)
