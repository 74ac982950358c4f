"""The NAS-Bench-BERT encoder built from a configuration.

Embeddings (token + position + segment, LayerNorm), then per layer: the token-mixing
operation; for SA and DSC a linear output projection; residual + LayerNorm; the feed-forward
stack (``num_feed_forward`` linear + GELU layers, the first from H to F, the others F to F);
a linear back to H; residual + LayerNorm. No dropout (the scored network is in eval mode), no
pre-training head: the output is the last hidden state (batch, length, H).

Token-mixing operations, with ``n`` heads of width ``d = H / n``:

* ``SA:SDP``: multi-head scaled dot-product attention, softmax(q k^T / sqrt(d)) v.
* ``SA:WMA``: weighted multiplicative attention: the query passes through an extra square
  weight (H x H, no bias) before the dot product.
* ``LT:DFT``: an input projection, then per head the real part of the 2-D FFT over the
  sequence and the head width (FNet's Fourier mixing, applied per head).
* ``LT:DCT``: the same with the 2-D type-II DCT (unnormalised, scipy's ``norm=None``),
  written with ``torch.fft``.
* ``DSC:k``: ConvBERT's span-based dynamic convolution with kernel k: a depthwise separable
  convolution of the input (the key) times the query gives, per head, a softmax over k
  kernel weights for each position, which mix the k neighbouring value vectors. Local by
  design: an output depends on the inputs within (k - 1) / 2 positions.

The linear layers, their names and their roles (``linear_roles``) are what the transformer
metrics read: "mixing" projections inside the token-mixing operation (query, key, value, the
WMA weight, the LT input projection, the DSC value and kernel generator), "output" (the
projection after SA/DSC) and "feed_forward" (the stack and its linear back to H).

Initialisation as BERT: linear and embedding weights normal(0, 0.02), biases 0, LayerNorm
weight 1 and bias 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import BertConfig, LayerConfig

INIT_STD = 0.02
# The token-mixing projections whose outputs head_confidence reads (metrics.md: query, key,
# value, WMA's extra weight, the LT input projection; the DSC key's pointwise linear is its key
# projection). A DSC kernel generator or span-convolution linear is no projection of this kind.
MIXING_PROJECTIONS = frozenset(
    {"query", "key", "value", "query_weight", "projection", "key_pointwise"}
)
SEGMENTS = 2  # segment (token type) embedding rows, as BERT
LAYER_NORM_EPS = 1e-12


@dataclass(frozen=True)
class EncoderSizes:
    """What the configuration does not fix: the vocabulary and the longest sequence."""

    vocab_size: int
    max_length: int


def dct2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Unnormalised type-II DCT along ``dim``: y_k = 2 sum_n x_n cos(pi k (2n + 1) / (2N))
    (scipy.fft.dct(type=2, norm=None)), through one FFT of the even/odd reordering (Makhoul)."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spectrum = torch.fft.fft(v, dim=-1)
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    phase = -math.pi * k / (2 * n)
    y = 2 * (spectrum.real * torch.cos(phase) - spectrum.imag * torch.sin(phase))
    return y.movedim(-1, dim)


class AttentionProbs(nn.Module):
    """Softmax over the keys; a module of its own so a forward hook can read the
    probabilities (batch, heads, length, length)."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=-1)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, h = x.shape
    return x.view(b, t, heads, h // heads).transpose(1, 2)  # (B, n, T, d)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, n * d)


class SelfAttention(nn.Module):
    """Multi-head attention; ``dropout`` on the probabilities after the hooked softmax (only
    the paper-notebook family has any: networks.py)."""

    def __init__(self, hidden: int, heads: int, weighted: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.query_weight = nn.Linear(hidden, hidden, bias=False) if weighted else None
        self.probs = AttentionProbs()
        self.probs_dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query(x)
        if self.query_weight is not None:
            q = self.query_weight(q)
        q, k, v = (_split_heads(t, self.heads) for t in (q, self.key(x), self.value(x)))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        return _merge_heads(self.probs_dropout(self.probs(scores)) @ v)


class LinearTransform(nn.Module):
    def __init__(self, hidden: int, heads: int, transform: str) -> None:
        super().__init__()
        self.heads = heads
        self.transform = transform
        self.projection = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _split_heads(self.projection(x), self.heads)  # (B, n, T, d)
        if self.transform == "DFT":
            mixed = torch.fft.fft2(h, dim=(-2, -1)).real
        else:
            mixed = dct2(dct2(h, dim=-2), dim=-1)
        return _merge_heads(mixed)


class DynamicConvolution(nn.Module):
    """ConvBERT's span-based dynamic convolution (all heads convolutional)."""

    def __init__(self, hidden: int, heads: int, kernel: int) -> None:
        super().__init__()
        self.heads = heads
        self.kernel = kernel
        self.query = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        # The key: a depthwise convolution over the sequence, then a pointwise linear.
        self.key_depthwise = nn.Conv1d(
            hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False
        )
        self.key_pointwise = nn.Linear(hidden, hidden)
        self.kernel_generator = nn.Linear(hidden, heads * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        key = self.key_pointwise(self.key_depthwise(x.transpose(1, 2)).transpose(1, 2))
        weights = self.kernel_generator(key * self.query(x)).view(b, t, self.heads, self.kernel)
        weights = weights.softmax(dim=-1)
        pad = self.kernel // 2
        value = F.pad(self.value(x), (0, 0, pad, pad))  # (B, T + 2 pad, H)
        windows = value.unfold(1, self.kernel, 1)  # (B, T, H, k): positions t - pad .. t + pad
        windows = windows.view(b, t, self.heads, h // self.heads, self.kernel)
        return (windows * weights[:, :, :, None, :]).sum(-1).reshape(b, t, h)


def token_mixing(hidden: int, layer: LayerConfig) -> nn.Module:
    kind, param, heads = layer.operation_type, layer.operation_parameter, layer.num_operation_heads
    if kind == "SA":
        return SelfAttention(hidden, heads, weighted=param == "WMA")
    if kind == "LT":
        return LinearTransform(hidden, heads, str(param))
    return DynamicConvolution(hidden, heads, int(param))


class FeedForward(nn.Module):
    """``depth`` linear + GELU layers, then a linear back to ``hidden``. The first layer is
    ``first`` wide (default ``dim``) and the others ``dim``: the benchmark's trained networks
    open with a 4H layer whatever ``feed_forward_dimension`` says (search_spaces.bert.networks).
    """

    def __init__(self, hidden: int, dim: int, depth: int, first: int | None = None) -> None:
        super().__init__()
        widths = [dim if first is None else first] + [dim] * (depth - 1)
        self.linears = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip([hidden, *widths], widths, strict=False)
        )
        self.activations = nn.ModuleList(nn.GELU() for _ in range(depth))
        self.output = nn.Linear(widths[-1], hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, act in zip(self.linears, self.activations, strict=True):
            x = act(linear(x))
        return self.output(x)


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, layer: LayerConfig) -> None:
        super().__init__()
        self.mixing = token_mixing(hidden, layer)
        self.mixing_output = nn.Linear(hidden, hidden) if layer.operation_type != "LT" else None
        self.mixing_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.feed_forward = FeedForward(
            hidden, layer.feed_forward_dimension, layer.num_feed_forward
        )
        self.output_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mixing(x)
        if self.mixing_output is not None:
            mixed = self.mixing_output(mixed)
        x = self.mixing_norm(x + mixed)
        return self.output_norm(x + self.feed_forward(x))


class Embeddings(nn.Module):
    def __init__(self, hidden: int, sizes: EncoderSizes) -> None:
        super().__init__()
        self.token = nn.Embedding(sizes.vocab_size, hidden)
        self.position = nn.Embedding(sizes.max_length, hidden)
        self.segment = nn.Embedding(SEGMENTS, hidden)
        self.norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)[None] + self.segment.weight[0]
        return self.norm(x)


class BertEncoder(nn.Module):
    """Token ids (batch, length) -> last hidden state (batch, length, H)."""

    def __init__(self, config: BertConfig, sizes: EncoderSizes, device: str | torch.device = "cpu"):
        super().__init__()
        self.config = config
        self.sizes = sizes
        with torch.device(device):
            self.embeddings = Embeddings(config.hidden_size, sizes)
            self.layers = nn.ModuleList(EncoderLayer(config.hidden_size, x) for x in config.layers)
        if torch.device(device).type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        bert_init_(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.sizes.max_length:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds max_length {self.sizes.max_length}"
            )
        x = self.embeddings(tokens)
        for layer in self.layers:
            x = layer(x)
        return x

    def linear_roles(self) -> list[tuple[str, str, nn.Linear]]:
        """(role, name, module) of every linear layer of the encoder layers, in order; role is
        'mixing', 'output' or 'feed_forward' (see the module docstring)."""
        return layer_linear_roles(self.layers)


@torch.no_grad()
def bert_init_(
    model: nn.Module, drawn: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Embedding)
) -> None:
    """BERT's initialisation, in place and in module order: the weights of the ``drawn``
    module types (default: linear, convolution, embedding) normal(0, 0.02), their biases 0,
    LayerNorm weight 1 and bias 0."""
    for module in model.modules():
        if isinstance(module, drawn):
            module.weight.normal_(0.0, INIT_STD)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


def layer_linear_roles(layers: nn.ModuleList) -> list[tuple[str, str, nn.Linear]]:
    """(role, name, module) of every linear layer under ``layers`` (a list of layers whose
    submodules are named ``mixing``, ``mixing_output`` and ``feed_forward``), in order: the
    role is the submodule's ('mixing', 'output', 'feed_forward'). Every network family reads
    its linears so, whatever the operations inside ``mixing``."""
    out = []
    for name, module in layers.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if name.split(".")[1] == "mixing":
            role = "mixing"
        elif name.split(".")[1] == "mixing_output":
            role = "output"
        else:
            role = "feed_forward"
        out.append((role, f"layers.{name}", module))
    return out


def count_nonembedding_parameters(model: BertEncoder) -> int:
    """LiteTransformerSearch's proxy: the parameters of the encoder layers (every parameter
    but the token, position and segment embeddings and the embedding LayerNorm)."""
    return sum(p.numel() for p in model.layers.parameters() if p.requires_grad)
