"""A probe: one untrained network and its input batch, with passes run once and shared.

Metrics declare what they read as ``needs``: each need names one of the passes in
:data:`PASSES`. The :class:`~nas_engine.scoring.Scorer` hands the union of the requested
metrics' needs to the probe as its plan; each pass then records everything the plan asks of
it in one go (for example one forward records both the states entering the cells and the
activation outputs, and one backward from the decoder output serves both synflow variants).
A request outside the plan still works: it runs a pass of its own.

Every pass is deterministic for a given seed: the weights are drawn on the CPU generator, and
the random inputs (Jacobian noise, Zen-score inputs) come from CPU generators seeded from the
probe's seed, never from torch's global RNG. No pass changes the weights or their ``.grad``
(gradients are taken with :func:`torch.autograd.grad`), and none installs hooks: what a pass
observes is recorded through explicit arguments of the model's forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from nas_engine.corpus import Corpus, CorpusError, first_batch, windows
from nas_engine.errors import TrainingConfigError
from nas_engine.health import STRESS_SCALE, STRESS_SEQUENCES, STRESS_STEPS
from nas_engine.metrics.registry import MetricFailure
from nas_engine.parameters import count_parameters
from nas_engine.seeds import generator_for

from .compiled import StepRepeater
from .graphs import StepGraphs
from .model import CellRecord, ModelSizes, RNNLanguageModel, SharedEmbedding
from .recipe import Recipe
from .training.proxy import ProxyTraining

if TYPE_CHECKING:
    from nas_engine.scoring import ScoringSetup

    from .training.outcome import TrainingOutcome

NOISE_LEVELS = {"small": 0.1, "large": 10.0, "huge": 100.0}  # Jacobian noise scale a
ZEN_PERTURBATION = 0.1  # Zen-score: x and x + 0.1 * eps
NTK_MINIBATCHES = 10  # m, the minibatches of the NTK Gram matrix

# Every need a metric may declare: the pass it names, and how deep the model must be built.
# "<l>" stands for a layer number, "<level>" for a noise level.
PASSES: dict[str, str] = {
    "param_count": "the parameter count (a weightless 'meta' model; no pass)",
    "entering_states:<l>": (
        "one forward without autograd through layers 1..l, recording the first state element "
        "entering each cell at every step"
    ),
    "activation_codes": (
        "the same forward through every layer, also recording every activation node's output "
        "(reduced to the NASWOT kernel)"
    ),
    "zen_outputs": (
        "one forward without autograd of Gaussian inputs and their perturbation through the "
        "recurrent stack (embedding bypassed)"
    ),
    "jacobian": (
        "one forward + backward: gradient of the summed decoder outputs w.r.t. the embeddings"
    ),
    "jacobian_noise:<level>": "the same on noised embeddings (small, large, huge)",
    "saliency:weights": (
        "one forward + backward from the decoder output y with gradient y: the gradients of the "
        "cell and decoder weights"
    ),
    "saliency:states": "the same backward: the gradients of the states entering each cell",
    "loss_grad": (
        "one forward + backward: the gradient of the cross-entropy of the batch (next-token "
        "targets) w.r.t. all parameters"
    ),
    "minibatch_grads": (
        f"the same on {NTK_MINIBATCHES} consecutive (T, B) windows of the split (the first is "
        "loss_grad's batch)"
    ),
    "training": (
        "a short training run of the whole model from the probe's initial weights (the trained "
        "proxy; the scorer gives the recipe and the corpus splits)"
    ),
}


def check_need(need: str) -> None:
    """Raise ValueError unless ``need`` names a declared pass."""
    name, _, arg = need.partition(":")
    if name == "entering_states":
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"need {need!r}: the layer must be a number >= 1")
        return
    if name == "jacobian_noise":
        if arg not in NOISE_LEVELS:
            raise ValueError(f"need {need!r}: the noise level must be one of {list(NOISE_LEVELS)}")
        return
    if need not in PASSES:
        raise ValueError(f"unknown need {need!r} (declared passes: {', '.join(PASSES)})")


def plan_depth(needs: Iterable[str], num_layers: int) -> int:
    """How many layers the probe must build for ``needs``: ``entering_states:l`` needs l
    layers (and no decoder), every pass through the stack or the decoder needs them all.
    A layer beyond the model is left to the metric, which fails with the reason."""
    depth = 1
    for need in needs:
        check_need(need)
        if need.startswith("entering_states:"):
            depth = max(depth, min(int(need.split(":")[1]), num_layers))
        elif need != "param_count":
            depth = num_layers
    return depth


def first_layer_only(needs: Iterable[str], num_layers: int) -> bool:
    """Whether ``needs`` ask for the lean forward through the first layer alone (its entering
    states, no activation codes, nothing deeper): what a
    :class:`~search_spaces.rnn.batch.CellBatch` computes for several cells at once."""
    needs = frozenset(needs)
    return (
        plan_depth(needs, num_layers) == 1
        and "activation_codes" not in needs
        and any(n.startswith("entering_states:") for n in needs)
    )


@dataclass(frozen=True)
class ActivationKernel:
    """The NASWOT kernel: K[i, j] = the number of activation units (over nodes, steps and
    layers) on which sequences i and j agree about the sign (output > 0)."""

    kernel: torch.Tensor  # (B, B) float64, exact integer counts
    units: int  # binary units per sequence (the diagonal of K)
    nodes: int  # activation nodes of the cell


@dataclass(frozen=True)
class _Forward:
    entering: list[torch.Tensor]  # per layer, (T, B, H)
    kernel: ActivationKernel | None


class RNNProbe:
    """What the RNN metrics read. The model is built lazily from ``seed`` (without touching
    torch's global RNG state), only as deep as the requested metrics need (``depth``), and
    passes are run at most once.

    ``needs``: the plan (the union of the metrics' needs); None plans nothing ahead, so each
    pass records only what its first request asks. ``targets``: the next tokens of
    ``tokens`` (T, B), for the loss. ``minibatches``: the NTK's (inputs, targets) windows,
    the first equal to (tokens, targets). ``missing``: why targets or minibatches are absent
    (keys "targets", "minibatches"), reported by the metrics that need them. ``shared``:
    the seed's embedding drawn once for many probes (:class:`SharedEmbedding`, of this
    ``seed`` and ``sizes``, on ``device``); the network is the same with or without it.
    ``repeat``: how the lean forward's recurrences repeat their step (a
    :class:`~search_spaces.rnn.graphs.StepGraphs` on CUDA); the same states either way.
    """

    def __init__(
        self,
        recipe: Recipe,
        sizes: ModelSizes,
        tokens: torch.Tensor,
        seed: int,
        device: torch.device | str = "cpu",
        depth: int | None = None,
        *,
        needs: Iterable[str] | None = None,
        targets: torch.Tensor | None = None,
        minibatches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        missing: Mapping[str, str] | None = None,
        shared: SharedEmbedding | None = None,
        training: ProxyTraining | None = None,
        repeat: StepRepeater | None = None,
        health: bool = False,
    ) -> None:
        self.recipe = recipe
        self.sizes = sizes
        self.tokens = tokens
        self.seed = seed
        self.device = torch.device(device)
        self.depth = sizes.num_layers if depth is None else depth
        self.plan = None if needs is None else frozenset(needs)
        self.targets = targets
        self.minibatches = minibatches
        self.missing = dict(missing or {})
        self.shared = shared
        self.training = training  # the trained proxy's recipe and data, when planned
        self.repeat = repeat  # how the lean forward repeats a step (CUDA graphs), if not run()
        # The health rule is planned (nas_engine.health): the lean forward also runs the
        # stress test's sequences.
        self.health = health
        self._jacobians: dict[str | None, torch.Tensor] = {}
        self._loss_grads: dict[int, torch.Tensor] = {}
        self._grams: dict[int, torch.Tensor] = {}

    @cached_property
    def _trained(self) -> TrainingOutcome:
        if self.training is None:
            reason = self.missing.get("training", "the probe was given no training setup")
            raise MetricFailure(f"no proxy training: {reason}")
        return self.training.run(self.recipe, self.sizes)

    def trained_outcome(self) -> TrainingOutcome:
        """The outcome of training this cell with the scorer's proxy recipe (run once; it
        builds its own model from the probe's seed, so it starts from the same weights)."""
        return self._trained

    def _planned(self, need: str) -> bool:
        return self.plan is not None and need in self.plan

    # ------------------------------------------------------------------ the network
    @cached_property
    def model(self) -> RNNLanguageModel:
        # Weights are drawn on the CPU generator whatever the device (a shared stream's views
        # hold those draws), so an architecture gets the same network, and the same score up
        # to rounding, on CPU and GPU.
        if self.shared is not None:
            model = self.shared.build(self.recipe, self.sizes, self.device, self.depth)
            return model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = RNNLanguageModel(self.recipe, self.sizes, "cpu", build_layers=self.depth)
        return model.to(self.device).eval()

    def _full_model(self, what: str) -> RNNLanguageModel:
        if self.depth < self.sizes.num_layers:
            raise ValueError(
                f"probe planned for depth {self.depth}; {what} needs all "
                f"{self.sizes.num_layers} layers and the decoder"
            )
        return self.model

    @cached_property
    def param_count(self) -> int:
        return count_parameters(RNNLanguageModel(self.recipe, self.sizes, device="meta"))

    @property
    def _dtype(self) -> torch.dtype:
        return self.model.encoder.weight.dtype

    @cached_property
    def _embeddings(self) -> torch.Tensor:
        """(T, B, E): the embedding of the input batch, without autograd."""
        with torch.no_grad():
            return self.model.encoder(self.tokens.to(self.device))

    # ------------------------------------------------------------------ forward passes
    @cached_property
    def _forward(self) -> _Forward:
        return self._run_forward(codes=self._planned("activation_codes"))

    @cached_property
    def _coded_forward(self) -> _Forward:
        return self._run_forward(codes=True)

    def _run_forward(self, codes: bool) -> _Forward:
        if codes:
            self._full_model("the activation codes")
        with torch.no_grad():
            if not codes:  # the lean path: only the entering states, only `depth` layers
                tokens = self.tokens.to(self.device)
                if self.health and self.repeat is None:  # the stress test rides along
                    *entering, extra = self.model.entering_states(
                        tokens, self.depth, extra_state=self._stress_initial()
                    )
                    self.__dict__["_stress"] = _rms_per_step(extra[:STRESS_STEPS])
                    return _Forward(entering, None)
                entering = self.model.entering_states(tokens, self.depth, self.repeat)
                return _Forward(entering, None)
            run = self.model.run_layers(self._embeddings, entering=True, activations=True)
            entering = [torch.stack(r.entering_steps) for r in run.records]
            return _Forward(entering, _naswot_kernel(run.records))

    def launch_forward(self) -> list[torch.Tensor]:
        """Run the planned forward of the entering states now, if it needs no host
        synchronisation (no activation codes planned), and return the tensors it produced
        (for a caller that launches it on a side CUDA stream); otherwise run nothing."""
        if self.plan is None or self._planned("activation_codes"):
            return []
        if not any(n.startswith("entering_states:") for n in self.plan):
            return []
        return list(self._forward.entering)

    def supply_entering_states(self, first_layer: torch.Tensor) -> None:
        """Take the first layer's entering states (T, B, H), computed elsewhere for this
        probe's own cell and input (a :class:`~search_spaces.rnn.batch.CellBatch` run of
        several probes' cells), as the planned forward's result."""
        lean = self.plan is not None and first_layer_only(self.plan, self.sizes.num_layers)
        if not lean or self.depth != 1:
            raise ValueError("only a forward planned through the first layer alone is supplied")
        hidden = self.sizes.layer_sizes()[0][1]
        expected = (self.tokens.shape[0], self.tokens.shape[1], hidden)
        if tuple(first_layer.shape) != expected:
            raise ValueError(f"entering states of shape {expected}, got {tuple(first_layer.shape)}")
        if "_forward" in self.__dict__:
            raise ValueError("the probe's forward has already run")
        self.__dict__["_forward"] = _Forward([first_layer], None)  # the cached_property's slot

    def entering_states(self, layer: int) -> torch.Tensor:
        """(T, B, H): the first state element entering layer ``layer``'s cell (1-based)."""
        if not 1 <= layer <= self.sizes.num_layers:
            raise ValueError(f"layer must be in 1..{self.sizes.num_layers}, got {layer}")
        if layer > self.depth:
            raise ValueError(f"probe planned for depth {self.depth}, asked for layer {layer}")
        return self._forward.entering[layer - 1]

    def health_states(self) -> list[torch.Tensor]:
        """The states entering the cells that the scoring pass computes, for the health
        verdict (:func:`~nas_engine.health.state_verdict`): the planned forward's, or, when the
        metrics run no such forward (gradients, the parameter count), a lean forward of the
        first layer alone."""
        planned = self.plan is not None and any(
            n.startswith("entering_states:") or n == "activation_codes" for n in self.plan
        )
        if planned or "_forward" in self.__dict__:
            return list(self._forward.entering)
        if "_coded_forward" in self.__dict__:
            return list(self._coded_forward.entering)
        with torch.no_grad():
            return self.model.entering_states(self.tokens.to(self.device), 1, self.repeat)

    def _stress_initial(self) -> list[torch.Tensor]:
        """The stress test's starting states: one (k, H) draw of RMS ``STRESS_SCALE`` per state
        of the first cell, from the probe's seed (on the CPU)."""
        cell = self.model.layers[0]
        columns = min(STRESS_SEQUENCES, self.tokens.shape[1])
        gen = generator_for(self.seed, "stress")
        return [
            STRESS_SCALE * torch.randn(columns, cell.hidden_size, generator=gen)
            for _ in range(cell.program.num_states)
        ]

    @cached_property
    def _stress(self) -> list[float]:
        model = self.model
        cell = model.layers[0]
        program = cell.program
        steps = min(STRESS_STEPS, self.tokens.shape[0])
        initial = self._stress_initial()
        columns = initial[0].shape[0]
        like = model.encoder.weight
        with torch.no_grad():
            weights = program.weights(cell)
            x = model.encoder(self.tokens[:steps, :columns].to(self.device))
            state = [s.to(like) for s in initial]
            run = program.run(
                weights,
                program.project(weights, x),
                state,
                steps=steps,
                batch_size=columns,
                hidden_size=cell.hidden_size,
                like=like,
            )
        return _rms_per_step(run.outputs)

    def stress_rms(self) -> list[float]:
        """The stress test of :mod:`nas_engine.health`: the first cell's recurrence on the
        first input sequences, from random states of RMS ``STRESS_SCALE`` (drawn on the CPU
        from the probe's seed); the state RMS after each of its first ``STRESS_STEPS`` steps.
        With ``health`` the lean forward runs these sequences beside the scored ones, in the
        same multiplies; otherwise (activation codes, CUDA graphs, states supplied by a cell
        batch) they run on their own: the same numbers to float rounding."""
        return self._stress

    def activation_kernel(self) -> ActivationKernel:
        """The NASWOT kernel over every activation node, step and layer (shares the forward
        of the entering states when planned)."""
        forward = self._forward if self._planned("activation_codes") else self._coded_forward
        assert forward.kernel is not None
        return forward.kernel

    @cached_property
    def zen_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's output at the last step, (B, H_last), for Gaussian inputs x
        (drawn as (B, T, E), fed as (T, B, E) straight into the recurrent stack) and for
        x + 0.1 * eps. Both run as one batch of 2B independent sequences."""
        model = self._full_model("the Zen-score")
        steps, batch = self.tokens.shape[0], self.tokens.shape[1]
        gen = generator_for(self.seed, "zen")
        shape = (batch, steps, self.sizes.embedding_size)
        x = torch.randn(shape, generator=gen, dtype=self._dtype)
        eps = torch.randn(shape, generator=gen, dtype=self._dtype)
        both = torch.cat([x, x + ZEN_PERTURBATION * eps]).transpose(0, 1).to(self.device)
        with torch.no_grad():
            last = model.run_layers(both).output[-1]
        return last[:batch], last[batch:]

    # ------------------------------------------------------------------ Jacobians
    @cached_property
    def _jacobian_noise(self) -> torch.Tensor:
        """N(0, 1) of the embeddings' shape; one draw shared by all noise levels."""
        e = self._embeddings
        gen = generator_for(self.seed, "jacobian_noise")
        return torch.randn(e.shape, generator=gen, dtype=e.dtype).to(self.device)

    def noised_embeddings(self, level: str | None) -> torch.Tensor:
        """e, or e + a * var(e over the batch axis) * N(0, 1) for a noise level's a."""
        e = self._embeddings
        if level is None:
            return e
        scale = NOISE_LEVELS[level]
        return e + scale * e.var(dim=1, keepdim=True) * self._jacobian_noise

    def jacobian(self, level: str | None = None) -> torch.Tensor:
        """(T, B, E): d(sum of all decoder outputs) / d(input embeddings), for the clean
        embeddings (``level`` None) or the noised ones. The sum of the decoder outputs is
        sum_tb h_tb . (sum_v W_v) + const, so the (T, B, V) logits are never formed."""
        if level not in self._jacobians:
            model = self._full_model("the Jacobian")
            e = self.noised_embeddings(level).detach().requires_grad_(True)
            with torch.enable_grad():
                h = model.run_layers(e).output
                total = (h @ model.decoder.weight.detach().sum(0)).sum()
                (grad,) = torch.autograd.grad(total, e)
            self._jacobians[level] = grad.detach()
        return self._jacobians[level]

    # ------------------------------------------------------------------ saliency
    @cached_property
    def _saliency(self) -> dict[str, list]:
        if self.plan is None:  # nothing planned: one backward serves both parts
            return self._run_saliency({"weights", "states"})
        return self._run_saliency(
            {p for p in ("weights", "states") if f"saliency:{p}" in self.plan}
        )

    def _run_saliency(self, parts: set[str]) -> dict[str, list]:
        if not parts:
            return {}
        model = self._full_model("the synaptic saliency")
        weights = self.saliency_weights() if "weights" in parts else []
        with torch.enable_grad():
            e = model.encoder(self.tokens.to(self.device))
            run = model.run_layers(e, entering="states" in parts)
            y = model.decoder(run.output)
            # The zero initial state (t = 0) is a constant: h * dh = 0 there.
            states = [s for r in run.records for s in r.entering_steps if s.requires_grad]
            inputs = [w for _, w in weights] + states
            grads = torch.autograd.grad(y, inputs, grad_outputs=y.detach(), allow_unused=True)
        grads = [
            torch.zeros_like(x) if g is None else g.detach()
            for x, g in zip(inputs, grads, strict=True)
        ]
        out: dict[str, list] = {}
        if "weights" in parts:
            out["weights"] = grads[: len(weights)]
        if "states" in parts:
            out["states"] = list(
                zip((s.detach() for s in states), grads[len(weights) :], strict=True)
            )
        return out

    def saliency_weights(self) -> list[tuple[str, torch.Tensor]]:
        """(name, weight) of every linear node of every layer, then the (tied) decoder."""
        model = self._full_model("the synaptic saliency")
        named = [
            (f"layers.{i}.{node}", lin.weight)
            for i, cell in enumerate(model.layers)
            for node, lin in zip(cell.linear_nodes, cell.linears, strict=True)
        ]
        return [*named, ("decoder", model.decoder.weight)]

    def saliency(self, part: str) -> list:
        """From one backward of the decoder output y with gradient y (d(sum y^2 / 2)):
        ``"weights"``: the gradients of :meth:`saliency_weights`, in order (the tied decoder
        weight's gradient is the total one, embedding path included); ``"states"``: (h, dh)
        for every state entering every cell at steps 1..T-1."""
        if part not in ("weights", "states"):
            raise ValueError(f"saliency part must be 'weights' or 'states', not {part!r}")
        if part not in self._saliency:
            self._saliency.update(self._run_saliency({part}))
        return self._saliency[part]

    # ------------------------------------------------------------------ loss gradients
    def _minibatch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index == 0 and self.targets is not None:
            return self.tokens, self.targets
        if self.minibatches is not None and index < len(self.minibatches):
            return self.minibatches[index]
        if index == 0:
            reason = self.missing.get("targets", "the probe was given no target tokens")
            raise MetricFailure(f"no next-token targets: {reason}")
        have = 0 if self.minibatches is None else len(self.minibatches)
        reason = self.missing.get("minibatches", f"the probe was given {have} minibatches")
        raise MetricFailure(f"no minibatch {index}: {reason}")

    def loss_gradient(self, index: int = 0) -> torch.Tensor:
        """The gradient of the mean next-token cross-entropy of minibatch ``index`` (0: the
        scoring batch) w.r.t. all parameters (the tied weight once), flattened."""
        if index not in self._loss_grads:
            inputs, targets = self._minibatch(index)
            model = self._full_model("the loss gradient")
            params = [p for p in model.parameters() if p.requires_grad]
            with torch.enable_grad():
                logits, _ = model(inputs.to(self.device))
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.to(self.device).reshape(-1)
                )
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            self._loss_grads[index] = torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g.detach()).reshape(-1)
                    for p, g in zip(params, grads, strict=True)
                ]
            )
        return self._loss_grads[index]

    def loss_gradient_gram(self, m: int = NTK_MINIBATCHES) -> torch.Tensor:
        """Theta = G G^T (m x m, float64), G's rows the loss gradients of minibatches 0..m-1;
        built once per probe for the NTK metrics that share it."""
        if m not in self._grams:
            rows = [self.loss_gradient(i) for i in range(m)]
            gram = torch.zeros(m, m, dtype=torch.float64, device=self.device)
            for start in range(0, rows[0].numel(), 1 << 20):  # float64 in bounded chunks
                chunk = torch.stack([r[start : start + (1 << 20)] for r in rows]).double()
                gram += chunk @ chunk.T
            self._grams[m] = gram
        return self._grams[m]


class RNNProber:
    """Per scorer, for the RNN space: the input batch, the next-token targets and the NTK's
    minibatches (each built once, on the device), the model sizes, and the plan (the union of
    the metrics' needs and the depth it asks for). Input that a split is too short for is
    recorded in ``missing``, so that only the metrics that read it fail, with the reason."""

    def __init__(
        self, setup: ScoringSetup, corpus: Corpus, device: torch.device, needs: Iterable[str]
    ) -> None:
        self.seed = setup.seed
        self.device = device
        self.needs = frozenset(needs)
        self.health = setup.health_check
        ids = corpus.split(setup.split)
        # The scoring input: the first T steps of the batchified split (T, B).
        self.tokens = first_batch(ids, setup.batch_size, setup.bptt).to(device)
        given = {
            "embedding_size": setup.embedding_size,
            "hidden_size": setup.hidden_size,
            "num_layers": setup.num_layers,
            "init_gain": setup.init_gain,
        }
        self.sizes = ModelSizes(
            vocab_size=len(corpus.vocab), **{k: v for k, v in given.items() if v is not None}
        )
        self.depth = plan_depth(self.needs, self.sizes.num_layers)
        self.shared: SharedEmbedding | None = None
        self.step_graphs = StepGraphs(device) if setup.cuda_graphs else None
        # Loss-based metrics read the next tokens: the (T + 1, B) slice, rows 1..T; the NTK
        # reads consecutive windows.
        self.targets: torch.Tensor | None = None
        self.minibatches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.missing: dict[str, str] = {}
        if self.needs & {"loss_grad", "minibatch_grads"}:
            try:
                batch = first_batch(ids, setup.batch_size, setup.bptt, targets=True)
                self.targets = batch[1:].to(device)
            except CorpusError as exc:
                self.missing["targets"] = str(exc)
        if "minibatch_grads" in self.needs:
            try:
                self.minibatches = [
                    (x.to(device), y.to(device))
                    for x, y in windows(ids, setup.batch_size, setup.bptt, NTK_MINIBATCHES)
                ]
            except CorpusError as exc:
                self.missing["minibatches"] = str(exc)
        self.training: ProxyTraining | None = None
        if "training" in self.needs:  # the splits are prepared once, for every candidate
            try:
                self.training = ProxyTraining.from_setup(corpus, setup)
            except TrainingConfigError as exc:
                self.missing["training"] = str(exc)

    def share_embedding(self) -> None:
        """Draw the seed's embedding once, for every probe from now on (the same values each
        probe would draw for itself; see :class:`~search_spaces.rnn.model.SharedEmbedding`)."""
        if self.shared is None:
            self.shared = SharedEmbedding.draw(self.seed, self.sizes, self.device)

    def probe(self, recipe: Recipe) -> RNNProbe:
        """The probe of one (validated) recipe, planned for this prober's needs."""
        return RNNProbe(
            recipe,
            self.sizes,
            self.tokens,
            self.seed,
            self.device,
            self.depth,
            needs=self.needs,
            targets=self.targets,
            minibatches=self.minibatches,
            missing=self.missing,
            shared=self.shared,
            training=self.training,
            repeat=self.step_graphs,
            health=self.health,
        )


def _rms_per_step(outputs: torch.Tensor) -> list[float]:
    """(S, k, H) -> the RMS of each step's states, in float64."""
    return [float(v) for v in outputs.double().pow(2).mean(dim=(1, 2)).sqrt().cpu()]


def _naswot_kernel(records: list[CellRecord]) -> ActivationKernel:
    """K = sum over activation nodes, steps and layers of c c^T + (1 - c)(1 - c)^T, with
    c = (output > 0) per sequence. With z = 2c - 1 in {-1, +1}, K = (z z^T + N) / 2 for N
    units: one product per node and layer, exact (integer counts well below 2^24)."""
    kernel, units, nodes = None, 0, 0
    for rec in records:
        nodes = max(nodes, len(rec.activation_steps))
        for out in rec.stacked_activations().values():  # (T, B, H)
            z = (
                (out > 0)
                .to(torch.float32)
                .mul_(2)
                .sub_(1)
                .transpose(0, 1)
                .reshape(out.shape[1], -1)
            )
            part = (z @ z.T).double()
            kernel = part if kernel is None else kernel + part
            units += z.shape[1]
    if kernel is None:  # no activation node: K = 0
        batch = records[0].entering_steps[0].shape[0]
        return ActivationKernel(torch.zeros(batch, batch, dtype=torch.float64), 0, 0)
    return ActivationKernel(((kernel + units) / 2).cpu(), units, nodes)
