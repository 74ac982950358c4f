"""The BERT probe: one untrained encoder, its input batch, and passes run once and shared.

Metrics of the ``bert`` space declare what they read as ``needs``, each one of
:data:`BERT_PASSES`. The :class:`BertProber` (one per scorer) holds the input batch; a
:class:`BertProbe` per architecture builds the network from the seed (without touching
torch's global RNG) and runs each pass at most once:

* ``param_count``: the parameter counts, from a weightless model on the ``meta`` device;
* ``forward``: one forward pass, recording through forward hooks (installed by
  :func:`recording`, a context manager that always removes them) the outputs of the
  token-mixing linear projections, the attention probabilities and the feed-forward
  activations;
* ``backward``: the same forward with autograd, then one backward from the last hidden state,
  giving the gradients of the linear weights and of the position-embedding table. The weights
  and their ``.grad`` are untouched (``torch.autograd.grad``).

The backward's seed. metrics.md says "a gradient of ones". Through the last layer's
LayerNorm that gradient is zero in exact arithmetic (the LayerNorm output of every token sums
to its bias, whatever the input, while its weight is 1 as initialised), so every gradient
below it would be float rounding noise (about 1e-8 of a normal gradient, measured, and
different on CPU and GPU). We therefore seed the backward with a fixed standard-normal tensor
G drawn from the probe's seed: the gradient of sum(G * y). The one exception is the
``paper-notebook`` family, whose :class:`~.networks.ScoringProtocol` copies the notebook (a
gradient of ones, train mode with dropout) because its purpose is to reproduce the paper's
columns, rounding residue included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import torch

from nas_engine.corpus import Corpus, first_batch
from nas_engine.errors import ConfigError
from nas_engine.seeds import derived_seed

from .config import BertConfig
from .model import MIXING_PROJECTIONS, AttentionProbs, BertEncoder, EncoderSizes, FeedForward
from .networks import (
    FAMILY_SIZES,
    FamilyEncoder,
    ScoringProtocol,
    build_network,
    count_nonembedding_parameters,
    family_ids,
    scoring_protocol,
)

BERT_PASSES: dict[str, str] = {
    "param_count": "the parameter counts (a weightless 'meta' model; no pass)",
    "forward": (
        "one forward, recording the token-mixing projections' outputs, the attention "
        "probabilities and the feed-forward activations"
    ),
    "backward": (
        "the forward with autograd and one backward from the last hidden state: gradients of "
        "the linear weights and of the position-embedding table"
    ),
}
T = TypeVar("T")


def check_bert_need(need: str) -> None:
    if need not in BERT_PASSES:
        raise ValueError(f"unknown need {need!r} (declared passes: {', '.join(BERT_PASSES)})")


def bert_tokens(corpus: Corpus, split: str, batch_size: int, length: int) -> torch.Tensor:
    """(batch, length) token ids: the first ``length`` steps of the split batchified into
    ``batch_size`` columns, so each row is a contiguous stretch of the text (the same tokens
    the RNN side scores, one sequence per row)."""
    return first_batch(corpus.split(split), batch_size, length).t().contiguous()


@dataclass
class Recording:
    """What the forward hooks saw, in the order the modules ran."""

    projection_outputs: list[torch.Tensor] = field(default_factory=list)  # (B, T, width) each
    attention_probs: list[torch.Tensor] = field(default_factory=list)  # (B, n, T, T) each
    activations: list[torch.Tensor] = field(default_factory=list)  # (B, T, F) each


@contextmanager
def recording(model: BertEncoder) -> Iterator[Recording]:
    """Forward hooks on the token-mixing projections (:data:`~.model.MIXING_PROJECTIONS`), the
    attention softmaxes and the feed-forward activations for the duration of the block;
    removed on exit, error or not."""
    rec = Recording()
    handles = []

    def keep(into: list[torch.Tensor]):
        return lambda module, inputs, output: into.append(output.detach())

    try:
        for role, name, linear in model.linear_roles():
            if role == "mixing" and name.rsplit(".", 1)[-1] in MIXING_PROJECTIONS:
                handles.append(linear.register_forward_hook(keep(rec.projection_outputs)))
        for module in model.modules():
            if isinstance(module, AttentionProbs):
                handles.append(module.register_forward_hook(keep(rec.attention_probs)))
            elif isinstance(module, FeedForward):
                for act in module.activations:
                    handles.append(act.register_forward_hook(keep(rec.activations)))
        yield rec
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class WeightGradient:
    role: str  # "mixing", "output" or "feed_forward" (BertEncoder.linear_roles)
    name: str
    weight: torch.Tensor
    grad: torch.Tensor


@dataclass(frozen=True)
class Backward:
    linears: list[WeightGradient]
    position_grad: torch.Tensor  # (T, H): gradient of the position-embedding rows used


class BertProbe:
    """What the transformer metrics read, for one configuration."""

    def __init__(
        self,
        config: BertConfig,
        sizes: EncoderSizes,
        tokens: torch.Tensor,
        seed: int,
        device: torch.device | str = "cpu",
        needs: Iterable[str] | None = None,
        family: str | None = None,
        protocol: ScoringProtocol | None = None,
        network: BertEncoder | FamilyEncoder | None = None,
    ) -> None:
        self.config = config
        self.sizes = sizes
        # The network family (search_spaces.bert.networks); None: the encoder at ``sizes``.
        self.family = family
        # How it is scored: the family's protocol unless one is given.
        self.protocol = protocol or scoring_protocol(family)
        self.tokens = tokens
        # The weight draw (unless ``network`` is given) and, in train mode, the dropout masks.
        self.seed = seed
        # A network built elsewhere (for example from another weight draw), scored as it is.
        self._network = network
        self.device = torch.device(device)
        self.plan = frozenset(needs or ())
        for need in self.plan:
            check_bert_need(need)
        # Sums a metric and its normalised twin share, computed once (see ``shared``).
        self._shared: dict[str, object] = {}

    def shared(self, name: str, compute: Callable[[BertProbe], T]) -> T:
        """``compute(self)``, computed once per probe under ``name``."""
        if name not in self._shared:
            self._shared[name] = compute(self)
        return self._shared[name]  # type: ignore[return-value]

    def _build(self, device: str) -> BertEncoder | FamilyEncoder:
        if self.family is None:
            return BertEncoder(self.config, self.sizes, device)
        return build_network(self.config, self.family, device)

    @cached_property
    def model(self) -> BertEncoder | FamilyEncoder:
        if self._network is not None:
            return self._network.to(self.device).train(self.protocol.train_mode)
        # Weights drawn on the CPU generator whatever the device: the same network everywhere.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self._build("cpu")
        return model.to(self.device).train(self.protocol.train_mode)

    @cached_property
    def _meta_model(self) -> BertEncoder | FamilyEncoder:
        return self._build("meta")

    @cached_property
    def param_count(self) -> int:
        return sum(p.numel() for p in self._meta_model.parameters())

    @cached_property
    def nonembedding_param_count(self) -> int:
        if self.family is None:
            return sum(p.numel() for p in self._meta_model.layers.parameters())
        return count_nonembedding_parameters(self._meta_model)

    def _dropout_rng(self) -> AbstractContextManager:
        """In train mode, the dropout masks drawn from the probe's seed (the same masks for a
        forward run twice), leaving the global RNG as it was."""
        if not self.protocol.train_mode:
            return nullcontext()
        return _seeded(derived_seed(self.seed, "bert-dropout"), self.device)

    def _run(self, with_grad: bool) -> tuple[Recording, torch.Tensor]:
        tokens = self.tokens.to(self.device)
        with (
            self._dropout_rng(),
            recording(self.model) as rec,
            torch.set_grad_enabled(with_grad),
        ):
            out = self.model(tokens)
        return rec, out

    @cached_property
    def _forward_and_output(self) -> tuple[Recording, torch.Tensor]:
        return self._run(with_grad="backward" in self.plan)

    @property
    def forward(self) -> Recording:
        return self._forward_and_output[0]

    @cached_property
    def backward(self) -> Backward:
        rec, out = self._forward_and_output
        if not out.requires_grad:  # the forward ran without autograd (not planned): once more
            rec, out = self._run(with_grad=True)
        linears = self.model.linear_roles()
        position = self.model.embeddings.position.weight
        if self.protocol.gradient_of_ones:
            seed_grad = torch.ones_like(out)
        else:
            gen = torch.Generator().manual_seed(derived_seed(self.seed, "bert-backward"))
            seed_grad = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(self.device)
        grads = torch.autograd.grad(
            out, [lin.weight for _, _, lin in linears] + [position], grad_outputs=seed_grad
        )
        length = self.tokens.shape[1]
        return Backward(
            [
                WeightGradient(role, name, lin.weight.detach(), g)
                for (role, name, lin), g in zip(linears, grads[:-1], strict=True)
            ],
            grads[-1][:length],
        )


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's generators of the CPU and ``device`` seeded with ``seed`` inside the block and
    restored after it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class BertProber:
    """Per scorer: the input batch (built once, on the device) and the encoder sizes."""

    def __init__(
        self,
        corpus: Corpus,
        split: str,
        batch_size: int,
        length: int,
        seed: int,
        device: torch.device,
        needs: Iterable[str],
        family: str | None = None,
    ) -> None:
        tokens = bert_tokens(corpus, split, batch_size, length)
        if family is None:  # the encoder sized to the corpus and the input
            self.sizes = EncoderSizes(vocab_size=len(corpus.vocab), max_length=length)
        else:  # a family's fixed vocabulary and position table, whatever the input
            if length > FAMILY_SIZES.max_length:
                raise ConfigError(
                    f"--bptt {length}: the {family} networks read at most "
                    f"{FAMILY_SIZES.max_length} tokens"
                )
            tokens = family_ids(tokens)
            self.sizes = FAMILY_SIZES
        self.tokens = tokens.to(device)
        self.family = family
        self.seed = seed
        self.device = device
        self.needs = frozenset(needs)
        for need in self.needs:
            check_bert_need(need)

    def probe(
        self, config: BertConfig, network: BertEncoder | FamilyEncoder | None = None
    ) -> BertProbe:
        """The probe of ``config``: its network drawn from the seed, or ``network`` (built
        elsewhere for ``config``) scored as it is."""
        return BertProbe(
            config,
            self.sizes,
            self.tokens,
            self.seed,
            self.device,
            self.needs,
            self.family,
            network=network,
        )
