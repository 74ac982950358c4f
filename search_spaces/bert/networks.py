"""Network families of the NAS-Bench-BERT space: one configuration, three networks.

A benchmark entry's configuration names a network, but three different networks answer to it
(see the reference docs ``nasbench_bert/as_trained.md`` and ``nasbench_bert/paper_notebook.md``),
and a metric or a parameter count means something only with the family named:

``as-trained``
    What was pre-trained and fine-tuned for the benchmark's GLUE scores (the published
    TensorFlow ELECTRA code; the ELECTRA discriminator, i.e. the fine-tuned encoder).
    Its operation dispatch never fired (``is`` on decoded strings, as_trained.md §1.1), so
    **every layer is ordinary multi-head scaled dot-product attention** with the layer's own
    head count, whatever its label: SA:WMA, LT:DFT/DCT and DSC:k layers are SDP layers. The
    feed-forward stack opens with a 4H layer; ``feed_forward_dimension`` F sizes only the two
    extra layers of a ``num_feed_forward`` = 3 stack (H -> 4H -> F -> F -> H) and is unused
    when it is 1 (H -> 4H -> H). Embeddings 128 wide (vocabulary 30522, 512 positions, 2
    token types, LayerNorm), then a linear 128 -> H only when H is 256. Post-LN layers with
    two residuals. The parameter count is the CSV's ``as_trained_params`` (discriminator
    total: shared embeddings + projection + layers; no generator, no pre-training or
    classifier head) and :func:`count_nonembedding_parameters` its
    ``as_trained_nonembedding_params``. The generator (not built here) is this family at
    hidden size H / 4 (as_trained.md §3.2).

``paper-notebook``
    What the paper computed its training-free metrics on (the PyTorch ``ElectraModel`` built
    from ``ElectraConfig`` defaults plus the entry's ``nas_config``). **Hidden size 256 and
    feed-forward width 1024 whatever the entry says**; the labels are built literally: SA:SDP
    attention; SA:WMA the same with an extra bias-free H x H weight on the projected query;
    LT:DFT/DCT one linear ``input`` projection and the per-head 2-D transform, *no* output
    linear, *no* residual or LayerNorm (the layer is LN(FFN(u) + u)), plus a softmax over the
    transformed heads that is computed only so a hook can read it (the notebook's); DSC:k
    ConvBERT mixed attention with h' = max(h // 2, 1) attention heads of width 256 // h beside
    as many span-convolution heads. Embeddings 128 wide with the 128 -> 256 projection always
    (word row 0 is the padding row). The parameter count is the CSV's
    ``paper_number_of_parameters``.

``literal``
    The space as labelled (``search_spaces.md``): today's :class:`~.model.BertEncoder`
    semantics, a FlexiBERT-style space one would train. It differs from ``BertEncoder`` only
    in its sizes: the vocabulary (30522, the benchmark's uncased WordPiece) and the position
    table (512 rows) are fixed by the family, where ``BertEncoder`` takes both from the scoring
    input (the corpus vocabulary and the scored sequence length). Why: a parameter count, and
    ``params`` as a metric, must not change with the batch one scores on; with the same
    seed its weights equal ``BertEncoder(config, EncoderSizes(30522, 512))``'s. Compared with
    the other two families: embeddings are H wide (no 128 factorisation, no projection); the
    feed-forward's first layer is F wide; LT layers get the residual and LayerNorm; DSC:k is
    all-convolution with h heads (no attention half) and a biased linear pointwise key.

All three families are fixed-size in the vocabulary and the position table, so parameter
counts do not depend on the scoring batch or sequence length. The as-trained and literal
networks have no dropout and are scored in eval mode; the paper-notebook networks carry the
notebook's dropout 0.1 (embeddings, attention probabilities after the hooked softmax, the
self-output and feed-forward output linears) and are scored as the notebook scored them, in
train mode (:class:`ScoringProtocol`; the dropout masks come from the probe's seed, so a score
is still one fixed number on a given device). No family masks padding (neither the notebook
nor the scoring input has any).

Every family answers the interface the BERT probe and metrics read: ``model(tokens)`` with
token ids (batch, length) gives the last hidden state (batch, length, hidden); the encoder
layers are ``model.layers`` with submodules ``mixing``, ``mixing_output`` and
``feed_forward`` (so :meth:`FamilyEncoder.linear_roles` names each linear 'mixing',
'output' or 'feed_forward'); the token-mixing projections ``head_confidence`` reads are the
linears named in :data:`~.model.MIXING_PROJECTIONS`; attention probabilities pass through
:class:`~.model.AttentionProbs` modules and feed-forward activations through
:class:`~.model.FeedForward` ``activations`` (forward hooks read both); the position table is
``model.embeddings.position``. For the paper-notebook family these give the paper's term sets
exactly (paper_notebook.md §5): ``head_confidence`` q/k/v, the WMA weight, the LT input (not
DSC's kernel generator or span-convolution linear); ``head_importance`` the mixing linears with
at least 128 outputs; ``synaptic_diversity`` (through its protocol) those and the output
linear after SA/DSC; ``head_softmax_confidence`` one softmax per layer; ``synaptic_saliency``
and ``activation_distance`` the feed-forward stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nas_engine.parameters import count_parameters

from .config import BertConfig, LayerConfig
from .model import (
    INIT_STD,
    LAYER_NORM_EPS,
    AttentionProbs,
    Embeddings,
    EncoderLayer,
    EncoderSizes,
    FeedForward,
    LinearTransform,
    SelfAttention,
    _split_heads,
    bert_init_,
    layer_linear_roles,
)

FAMILIES = ("as-trained", "literal", "paper-notebook")
VOCAB_SIZE = 30522  # the uncased BERT WordPiece vocabulary (both codebases)
MAX_POSITIONS = 512  # rows of the position table (both codebases)
EMBEDDING_WIDTH = 128  # ELECTRA-small's embedding size E (both codebases)
FAMILY_SIZES = EncoderSizes(VOCAB_SIZE, MAX_POSITIONS)
PAPER_HIDDEN = 256  # ElectraConfig's default hidden_size: the notebook never passes the entry's
PAPER_FEED_FORWARD = 1024  # ElectraConfig's default intermediate_size
PAPER_DROPOUT = 0.1  # ElectraConfig's hidden and attention dropout (the notebook ran in train mode)
PAD_TOKEN = 0  # the notebook's word table zeroes (and freezes the gradient of) this row
TRUNCATED_AT = 2.0  # TF's truncated_normal redraws beyond two standard deviations


MASK_TOKEN = VOCAB_SIZE - 1  # the last row: [MASK] (training's masked positions)
WORD_ROWS = VOCAB_SIZE - 2  # rows 1 .. 30520 hold a corpus's words


@dataclass(frozen=True)
class ScoringProtocol:
    """How the probe scores a family's networks (search_spaces/bert/probe.py).

    The default is deterministic and informative: eval mode, no dropout, a backward seeded
    with a fixed normal tensor. The ``paper-notebook`` family copies the notebook's procedure
    instead, because its purpose is to reproduce the paper's columns (paper_notebook.md §4-5):
    train mode with dropout 0.1 (masks drawn from the probe's seed, so still one fixed value),
    a backward from a gradient of ones (zero through the last LayerNorm but for float
    rounding, as the paper's was: its gradient metrics read that residue), and
    ``synaptic_diversity`` over every linear under the notebook's ``operation`` module, the
    projection after SA and DSC included."""

    train_mode: bool = False
    gradient_of_ones: bool = False
    diversity_roles: frozenset[str] = frozenset({"mixing"})


DEFAULT_PROTOCOL = ScoringProtocol()
NOTEBOOK_PROTOCOL = ScoringProtocol(
    train_mode=True, gradient_of_ones=True, diversity_roles=frozenset({"mixing", "output"})
)


def scoring_protocol(family: str | None) -> ScoringProtocol:
    """The protocol of ``family`` (None: the encoder sized to its input, the default one)."""
    return NOTEBOOK_PROTOCOL if family == "paper-notebook" else DEFAULT_PROTOCOL


def family_ids(ids: torch.Tensor) -> torch.Tensor:
    """Corpus token ids -> the networks' ids ``1 + id % 30520`` (never 0, the padding row,
    never [MASK]): how scoring and training feed a word-level corpus to every family. A
    corpus of more than 30520 word types folds onto the rows deterministically."""
    return ids.long().remainder(WORD_ROWS).add_(1)


class UnknownFamilyError(ValueError):
    """A network family name that is not one of :data:`FAMILIES`."""


def check_family(family: str) -> str:
    """``family`` if known; else :class:`UnknownFamilyError` naming the known ones."""
    if family not in FAMILIES:
        raise UnknownFamilyError(
            f"unknown network family {family!r} (known: {', '.join(FAMILIES)})"
        )
    return family


# ---------------------------------------------------------------------------- modules
class FactorisedEmbeddings(Embeddings):
    """ELECTRA's embeddings: word + position + token type (type 0) tables 128 wide,
    LayerNorm(128), then a linear 128 -> H (no activation, no norm) when H is not 128."""

    def __init__(self, hidden: int, padding_idx: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(EMBEDDING_WIDTH, FAMILY_SIZES)
        self.token.padding_idx = padding_idx
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.projection = nn.Linear(EMBEDDING_WIDTH, hidden) if hidden != EMBEDDING_WIDTH else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.dropout(super().forward(tokens))
        return x if self.projection is None else self.projection(x)


class FamilyLayer(nn.Module):
    """One post-LN encoder layer: ``mixing``; the ``mixing_output`` linear and the residual
    LayerNorm when given (the paper's LT layers have neither: the layer is LN(FFN(u) + u) with
    u the transform's output); the feed-forward stack; residual + LayerNorm."""

    def __init__(
        self,
        hidden: int,
        mixing: nn.Module,
        feed_forward: FeedForward,
        mixing_output: bool,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mixing = mixing
        self.mixing_output = nn.Linear(hidden, hidden) if mixing_output else None
        self.mixing_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS) if mixing_output else None
        self.feed_forward = feed_forward
        self.output_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mixing(x)
        if self.mixing_output is not None:
            x = self.mixing_norm(x + self.dropout(self.mixing_output(mixed)))
        else:
            x = mixed
        return self.output_norm(x + self.dropout(self.feed_forward(x)))


class NotebookLinearTransform(LinearTransform):
    """The notebook's LT layer: the ``projection`` (its ``input``) and the per-head 2-D
    DFT (real part) or DCT-II; then a softmax over each transformed head's width whose result
    is discarded: it exists only so the head-softmax-confidence hook reads it, as the paper's
    did."""

    def __init__(self, hidden: int, heads: int, transform: str) -> None:
        super().__init__(hidden, heads, transform)
        self.probs = AttentionProbs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = super().forward(x)
        self.probs(_split_heads(mixed, self.heads))  # read by hooks only
        return mixed


class SeparableConv1d(nn.Module):
    """ConvBERT's key convolution over the sequence: depthwise (kernel k, no bias), pointwise
    (no bias), then one bias per output channel. (batch, length, in) -> (batch, length, out).

    Like ConvBERT's, it redraws both kernels from normal(0, 0.02) as it is built, right after
    torch's default draws; the model's initialisation then leaves convolutions alone. Where
    in the RNG stream these draws fall decides every later weight of the network."""

    def __init__(self, width_in: int, width_out: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            width_in, width_in, kernel, padding=kernel // 2, groups=width_in, bias=False
        )
        self.pointwise = nn.Conv1d(width_in, width_out, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(width_out, 1))
        if self.bias.device.type != "meta":
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """ConvBERT's draw: both kernels normal(0, 0.02), depthwise first; the bias 0."""
        self.depthwise.weight.normal_(0.0, INIT_STD)
        self.pointwise.weight.normal_(0.0, INIT_STD)
        self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x.transpose(1, 2))) + self.bias
        return y.transpose(1, 2)


class ConvAttention(nn.Module):
    """The notebook's DSC:k (ConvBERT mixed attention, head ratio 2): h' = max(h // 2, 1)
    softmax-attention heads of width d = H // h (the nominal h) beside h' span-based dynamic
    convolution heads of the same width, concatenated back to H. The per-token convolution
    kernels come from the separable-convolution key times the query; the convolution mixes
    the k neighbours of a linear of the input."""

    def __init__(self, hidden: int, heads: int, kernel: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = max(heads // 2, 1)
        self.head_width = hidden // heads
        width = self.heads * self.head_width
        if 2 * width != hidden:
            raise ValueError(
                f"DSC with {heads} heads: 2 x {self.heads} heads of width {self.head_width} "
                f"do not make the hidden size {hidden}"
            )
        self.kernel = kernel
        self.query = nn.Linear(hidden, width)
        self.key = nn.Linear(hidden, width)
        self.value = nn.Linear(hidden, width)
        self.key_conv = SeparableConv1d(hidden, width, kernel)
        self.conv_kernel = nn.Linear(width, self.heads * kernel)
        self.conv_out = nn.Linear(hidden, width)
        self.probs = AttentionProbs()
        self.probs_dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        n, d, k = self.heads, self.head_width, self.kernel
        q = self.query(x)
        kernels = self.conv_kernel(self.key_conv(x) * q).view(b, t, n, 1, k).softmax(dim=-1)
        pad = k // 2
        spans = nn.functional.pad(self.conv_out(x), (0, 0, pad, pad)).unfold(1, k, 1)
        conv = (spans.reshape(b, t, n, d, k) * kernels).sum(-1)  # (B, T, n, d)
        q, key, v = (_split_heads(y, n) for y in (q, self.key(x), self.value(x)))
        probs = self.probs_dropout(self.probs(q @ key.transpose(-1, -2) / d**0.5))
        attended = probs @ v  # (B, n, T, d)
        return torch.cat([attended.transpose(1, 2), conv], dim=2).reshape(b, t, 2 * n * d)


class FamilyEncoder(nn.Module):
    """Token ids (batch, length) -> last hidden state (batch, length, ``hidden_size``), for
    one family (built by :func:`build_network`)."""

    def __init__(
        self,
        family: str,
        config: BertConfig,
        hidden_size: int,
        embeddings: nn.Module,
        layers: list[nn.Module],
    ) -> None:
        super().__init__()
        self.family = check_family(family)
        self.config = config
        self.hidden_size = hidden_size
        self.sizes = FAMILY_SIZES
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > MAX_POSITIONS:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds the {MAX_POSITIONS} positions of "
                f"the {self.family} networks"
            )
        x = self.embeddings(tokens)
        for layer in self.layers:
            x = layer(x)
        return x

    def linear_roles(self) -> list[tuple[str, str, nn.Linear]]:
        """(role, name, module) of every linear of the encoder layers, in order; role is
        'mixing', 'output' or 'feed_forward' (as :meth:`BertEncoder.linear_roles`)."""
        return layer_linear_roles(self.layers)


# ---------------------------------------------------------------------------- families
def _as_trained(config: BertConfig) -> FamilyEncoder:
    hidden = config.hidden_size

    def layer(x: LayerConfig) -> FamilyLayer:
        ff = FeedForward(hidden, x.feed_forward_dimension, x.num_feed_forward, first=4 * hidden)
        attention = SelfAttention(hidden, x.num_operation_heads, weighted=False)
        return FamilyLayer(hidden, attention, ff, mixing_output=True)

    embeddings = FactorisedEmbeddings(hidden)
    return FamilyEncoder(
        "as-trained", config, hidden, embeddings, [layer(x) for x in config.layers]
    )


def _literal(config: BertConfig) -> FamilyEncoder:
    hidden = config.hidden_size
    embeddings = Embeddings(hidden, FAMILY_SIZES)  # before the layers: BertEncoder's order
    layers = [EncoderLayer(hidden, x) for x in config.layers]
    return FamilyEncoder("literal", config, hidden, embeddings, layers)


def _notebook_mixing(x: LayerConfig) -> nn.Module:
    kind, param, heads = x.operation_type, x.operation_parameter, x.num_operation_heads
    if PAPER_HIDDEN % heads:
        raise ValueError(f"{heads} heads do not divide the paper's hidden size {PAPER_HIDDEN}")
    if kind == "SA":
        return SelfAttention(PAPER_HIDDEN, heads, weighted=param == "WMA", dropout=PAPER_DROPOUT)
    if kind == "LT":
        return NotebookLinearTransform(PAPER_HIDDEN, heads, str(param))
    return ConvAttention(PAPER_HIDDEN, heads, int(param), dropout=PAPER_DROPOUT)


def _paper_notebook(config: BertConfig) -> FamilyEncoder:
    embeddings = FactorisedEmbeddings(PAPER_HIDDEN, padding_idx=PAD_TOKEN, dropout=PAPER_DROPOUT)
    layers = [
        FamilyLayer(
            PAPER_HIDDEN,
            _notebook_mixing(x),
            FeedForward(PAPER_HIDDEN, PAPER_FEED_FORWARD, x.num_feed_forward),
            mixing_output=x.operation_type != "LT",
            dropout=PAPER_DROPOUT,
        )
        for x in config.layers
    ]
    return FamilyEncoder("paper-notebook", config, PAPER_HIDDEN, embeddings, layers)


def _truncated_normal_(weight: torch.Tensor, std: float) -> None:
    """Normal(0, std) cut at ``TRUNCATED_AT`` std, drawn by the inverse CDF in one pass (torch's
    ``trunc_normal_`` resamples in a loop: seconds for the 30522-row table on a CPU)."""
    edge = math.erf(TRUNCATED_AT / math.sqrt(2.0))  # Phi(b) - Phi(-b), b = 2: P(|z| < b)
    weight.uniform_(-edge, edge).erfinv_().mul_(std * math.sqrt(2.0))
    weight.clamp_(-TRUNCATED_AT * std, TRUNCATED_AT * std)  # erfinv rounding at the edges


@torch.no_grad()
def _init_as_trained(model: FamilyEncoder) -> None:
    """The TF code's: truncated normal (std 0.02, cut at 2 std) for the tables and every
    kernel, Glorot-uniform for the embedding projection (no initialiser given), biases 0,
    LayerNorm 1 and 0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            _truncated_normal_(module.weight, INIT_STD)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
    projection = model.embeddings.projection
    if projection is not None:
        nn.init.xavier_uniform_(projection.weight)


@torch.no_grad()
def _init_paper_notebook(model: FamilyEncoder) -> None:
    """The notebook's ``_init_weights`` (paper_notebook.md §4), in its module order so that
    the same seed draws the same weights: normal(0, 0.02) for linears and embeddings, biases
    0, the padding row 0, LayerNorm 1 and 0. Convolutions keep the draw they got when built
    (:class:`SeparableConv1d`)."""
    bert_init_(model, drawn=(nn.Linear, nn.Embedding))
    model.embeddings.token.weight[PAD_TOKEN].zero_()


def build_network(
    config: BertConfig, family: str = "literal", device: str | torch.device = "cpu"
) -> FamilyEncoder:
    """The ``family`` network of ``config`` (one of :data:`FAMILIES`), initialised from
    torch's global RNG as that family was (or weightless on the 'meta' device, enough to
    count parameters)."""
    check_family(family)
    with torch.device(device):
        if family == "as-trained":
            model = _as_trained(config)
        elif family == "paper-notebook":
            model = _paper_notebook(config)
        else:
            model = _literal(config)
    if torch.device(device).type != "meta":
        if family == "as-trained":
            _init_as_trained(model)
        elif family == "paper-notebook":
            _init_paper_notebook(model)
        else:
            bert_init_(model)
    return model


def count_nonembedding_parameters(model: FamilyEncoder) -> int:
    """Every parameter but the word, position and token-type tables and their LayerNorm (the
    CSV's ``as_trained_nonembedding_params``: the 128 -> H projection counts as non-embedding).
    For the literal family it equals ``model.layers``' count."""
    tables = model.embeddings
    embedding = sum(
        count_parameters(m) for m in (tables.token, tables.position, tables.segment, tables.norm)
    )
    return count_parameters(model) - embedding
