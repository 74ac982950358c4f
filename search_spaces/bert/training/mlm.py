"""The masked-LM model: a family network with a small tied head, the masking, the evaluation.

The head is BERT's and ELECTRA's generator head (``as_trained.md`` §3.4): a dense layer from the
network's width H to the word table's width E, GELU, LayerNorm(E), then logits over the 30522
rows = that times the word table transposed, plus one bias per row. The output projection is
**tied** to the network's own word table (E = H for the literal family, 128 for the as-trained
and paper-notebook families), so the head adds only H*E + E + 2E + 30522 parameters, where an
untied projection would add 30522 * E (3.9M at E = 128). Its weights are drawn as BERT's
(normal 0.02, biases 0, LayerNorm 1 and 0) right after the network's, from the same seed.

Masking (:func:`mask_tokens`), as the benchmark's pre-training (``as_trained.md`` §3.1): in each
sequence of T tokens, ``max(1, round(p * T))`` positions drawn uniformly without replacement;
85% of them become [MASK] and the rest keep their token (ELECTRA's split; no random
replacement). The loss is the mean cross-entropy of the original tokens at the chosen positions
(nats), over the 30522 rows.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nas_engine.seeds import generator_for

from ..config import BertConfig
from ..model import LAYER_NORM_EPS, bert_init_
from ..networks import MASK_TOKEN, VOCAB_SIZE, FamilyEncoder, build_network
from .recipe import BertTrainingRecipe

MASK_SHARE = 0.85  # of the chosen positions, the share shown as [MASK] (the rest unchanged)


class MaskedLMHead(nn.Module):
    """Dense H -> E, GELU, LayerNorm(E); the vocabulary bias of the tied output projection."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, width)
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.bias = nn.Parameter(torch.zeros(VOCAB_SIZE))


class MaskedLanguageModel(nn.Module):
    """A family network (``encoder``) and its MLM ``head``; the output projection is the
    encoder's word table (``encoder.embeddings.token.weight``)."""

    def __init__(self, encoder: FamilyEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        width = encoder.embeddings.token.weight.shape[1]
        self.head = MaskedLMHead(encoder.hidden_size, width)

    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor, amp: bool = False
    ) -> torch.Tensor:
        """Logits (B, k, 30522) at ``positions`` (B, k) of ``tokens`` (B, T). ``amp``: the
        vocabulary projection in bf16 autocast (CUDA)."""
        hidden = self.encoder(tokens)
        index = positions[..., None].expand(-1, -1, hidden.shape[-1])
        picked = hidden.gather(1, index)
        h = self.head.norm(F.gelu(self.head.dense(picked)))
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
            return F.linear(h, self.encoder.embeddings.token.weight, self.head.bias)


def build_model(config: BertConfig, family: str, seed: int) -> MaskedLanguageModel:
    """The ``family`` network of ``config`` and its head, drawn from ``seed`` on the CPU
    without touching torch's global RNG state (the network's weights are those of
    ``build_network`` after ``torch.manual_seed(seed)``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MaskedLanguageModel(build_network(config, family))
        bert_init_(model.head)
    return model


def sequences(ids: torch.Tensor, length: int) -> torch.Tensor:
    """(N, length): the stream cut into consecutive whole sequences, the remainder dropped."""
    n = ids.numel() // length
    return ids[: n * length].view(n, length)


def mask_tokens(
    tokens: torch.Tensor, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, positions, targets) for the (N, T) CPU ``tokens``: ``max(1, round(p * T))``
    positions per sequence (sorted), 85% of them shown as [MASK]; targets are the original
    tokens there. The draws come from ``generator`` only."""
    n, t = tokens.shape
    k = max(1, round(probability * t))
    positions = torch.rand(n, t, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values
    shown = torch.rand(n, k, generator=generator) >= MASK_SHARE
    targets = tokens.gather(1, positions)
    replaced = torch.where(shown, targets, torch.full_like(targets, MASK_TOKEN))
    return tokens.clone().scatter_(1, positions, replaced), positions, targets


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> Any:
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction=reduction
    )


@torch.no_grad()
def evaluate(
    model: MaskedLanguageModel,
    ids: torch.Tensor,
    recipe: BertTrainingRecipe,
    split: str,
    device: torch.device | str | None = None,
) -> float:
    """Mean masked-token cross-entropy (nats) of the stream ``ids`` (network ids) cut into
    ``recipe.bptt``-token sequences, in eval mode. The masks come from the recipe's seed and
    ``split`` (a name: "valid", "test") and are drawn on the CPU for the whole split at once:
    every architecture trained with one recipe is evaluated on the same masked tokens, on any
    device and at any ``eval_batch_size``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device if device is None else torch.device(device)
    generator = generator_for(recipe.seed, f"bert-mlm-eval:{split}")
    inputs, positions, targets = mask_tokens(
        sequences(ids, recipe.bptt), recipe.mask_probability, generator
    )
    total, count = 0.0, 0
    for start in range(0, inputs.shape[0], recipe.eval_batch_size):
        rows = slice(start, start + recipe.eval_batch_size)
        logits = model(inputs[rows].to(device), positions[rows].to(device))
        total += masked_loss(logits, targets[rows].to(device), reduction="sum").item()
        count += targets[rows].numel()
    model.train(was_training)
    return total / count
