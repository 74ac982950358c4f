"""Transformer metrics (space ``bert``): the definitions of metrics.md, on a BERT probe.

Each reads :class:`~nas_engine.bert_probes.BertProbe` passes: the forward (token-mixing
projection outputs, attention probabilities, feed-forward activations) or the backward (the
gradients of the linear weights and the position embeddings; see the probe for the seed of
that backward). Every summed metric has a ``_normalised`` twin: the sum divided by the number
of terms. A sum over no terms (an encoder without attention has no attention probabilities) is
0, and so is its normalised twin: nothing to be confident about; never a NaN.
"""

from __future__ import annotations

import torch

from nas_engine.metrics.eig import eig_score
from nas_engine.metrics.registry import Measured, register

SPACE = "bert"
HEAD_IMPORTANCE_MIN_OUTPUTS = 128  # metrics.md: mixing linears with at least 128 outputs


def _twin(total: float, terms: int, name: str) -> Measured:
    return Measured(total, {f"{name}_terms": terms})


def _normalised(total: float, terms: int) -> float:
    return total / terms if terms else 0.0


# ---------------------------------------------------------------------------- parameters
@register(
    "params",
    direction="higher",
    needs={"param_count"},
    description="number of parameters, embeddings included (paper: tau +0.454 with GLUE)",
    space=SPACE,
)
def params(probe) -> float:
    return float(probe.param_count)


@register(
    "nonembedding_params",
    direction="higher",
    needs={"param_count"},
    description="parameters of the encoder layers, embeddings excluded (LiteTransformerSearch)",
    space=SPACE,
)
def nonembedding_params(probe) -> float:
    return float(probe.nonembedding_param_count)


# ---------------------------------------------------------------------------- confidence
def _head_confidence(probe) -> tuple[float, int]:
    return probe.shared("head_confidence", _compute_head_confidence)


def _compute_head_confidence(probe) -> tuple[float, int]:
    outputs = probe.forward.projection_outputs
    total = sum(float(o.amax(dim=1).mean()) for o in outputs)
    return total, len(outputs)


@register(
    "head_confidence",
    direction="higher",
    needs={"forward"},
    description="sum over token-mixing projections of mean(max over length of the output)",
    space=SPACE,
)
def head_confidence(probe) -> Measured:
    return _twin(*_head_confidence(probe), "head_confidence")


@register(
    "head_confidence_normalised",
    direction="higher",
    needs={"forward"},
    description="head_confidence / number of projections",
    space=SPACE,
)
def head_confidence_normalised(probe) -> float:
    return _normalised(*_head_confidence(probe))


def _softmax_confidence(probe) -> tuple[float, int]:
    return probe.shared("head_softmax_confidence", _compute_softmax_confidence)


def _compute_softmax_confidence(probe) -> tuple[float, int]:
    probs = probe.forward.attention_probs
    total = sum(float(p.amax(dim=1).mean()) for p in probs)
    return total, len(probs)


@register(
    "head_softmax_confidence",
    direction="higher",
    needs={"forward"},
    description="sum over attention-probability tensors of mean(max over heads); 0 without SA",
    space=SPACE,
)
def head_softmax_confidence(probe) -> Measured:
    return _twin(*_softmax_confidence(probe), "head_softmax_confidence")


@register(
    "head_softmax_confidence_normalised",
    direction="higher",
    needs={"forward"},
    description="head_softmax_confidence / number of attention tensors (0 without SA)",
    space=SPACE,
)
def head_softmax_confidence_normalised(probe) -> float:
    return _normalised(*_softmax_confidence(probe))


# ---------------------------------------------------------------------------- gradients
def _saliency(pairs) -> tuple[float, int]:
    total = sum(float((p.weight * p.grad).abs().sum()) for p in pairs)
    return total, len(pairs)


def _importance_terms(probe):
    return [
        p
        for p in probe.backward.linears
        if p.role == "mixing" and p.weight.shape[0] >= HEAD_IMPORTANCE_MIN_OUTPUTS
    ]


@register(
    "head_importance",
    direction="higher",
    needs={"backward"},
    description="sum over token-mixing linears with >= 128 outputs of sum |W * dW|",
    space=SPACE,
)
def head_importance(probe) -> Measured:
    return _twin(*_saliency(_importance_terms(probe)), "head_importance")


@register(
    "head_importance_normalised",
    direction="higher",
    needs={"backward"},
    description="head_importance / number of those linears",
    space=SPACE,
)
def head_importance_normalised(probe) -> float:
    return _normalised(*_saliency(_importance_terms(probe)))


def _diversity(probe) -> tuple[float, int]:
    return probe.shared("synaptic_diversity", _compute_diversity)


def _compute_diversity(probe) -> tuple[float, int]:
    roles = probe.protocol.diversity_roles  # the paper-notebook family: the output linear too
    pairs = [p for p in probe.backward.linears if p.role in roles]
    total = 0.0
    for p in pairs:
        w = torch.linalg.matrix_norm(p.weight.double(), ord="nuc")
        g = torch.linalg.matrix_norm(p.grad.double(), ord="nuc")
        total += float(w * g)
    return total, len(pairs)


@register(
    "synaptic_diversity",
    direction="higher",
    needs={"backward"},
    description="sum over token-mixing linears of nuclear norm(W) * nuclear norm(dW)",
    space=SPACE,
)
def synaptic_diversity(probe) -> Measured:
    return _twin(*_diversity(probe), "synaptic_diversity")


@register(
    "synaptic_diversity_normalised",
    direction="higher",
    needs={"backward"},
    description="synaptic_diversity / number of token-mixing linears",
    space=SPACE,
)
def synaptic_diversity_normalised(probe) -> float:
    return _normalised(*_diversity(probe))


def _ff_terms(probe):
    return [p for p in probe.backward.linears if p.role == "feed_forward"]


@register(
    "synaptic_saliency",
    direction="higher",
    needs={"backward"},
    description="sum over feed-forward linears of sum |W * dW|",
    space=SPACE,
)
def synaptic_saliency(probe) -> Measured:
    return _twin(*_saliency(_ff_terms(probe)), "synaptic_saliency")


@register(
    "synaptic_saliency_normalised",
    direction="higher",
    needs={"backward"},
    description="synaptic_saliency / number of feed-forward linears",
    space=SPACE,
)
def synaptic_saliency_normalised(probe) -> float:
    return _normalised(*_saliency(_ff_terms(probe)))


# ---------------------------------------------------------------------------- activations
def _activation_distance(probe) -> tuple[float, int]:
    return probe.shared("activation_distance", _compute_activation_distance)


def _compute_activation_distance(probe) -> tuple[float, int]:
    total = 0.0
    acts = probe.forward.activations
    for act in acts:
        codes = (act[0] > 0).double()  # first sequence: (length, width)
        kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
        total += float(kernel.sum())
    return total, len(acts)


@register(
    "activation_distance",
    direction="higher",
    needs={"forward"},
    description="sum over feed-forward activations of the sum of the NASWOT kernel entries "
    "(first sequence, tokens as rows)",
    space=SPACE,
)
def activation_distance(probe) -> Measured:
    return _twin(*_activation_distance(probe), "activation_distance")


@register(
    "activation_distance_normalised",
    direction="higher",
    needs={"forward"},
    description="activation_distance / number of feed-forward activations",
    space=SPACE,
)
def activation_distance_normalised(probe) -> float:
    return _normalised(*_activation_distance(probe))


@register(
    "jacob_cov",
    direction="higher",
    needs={"backward"},
    description="eig_score of the gradient w.r.t. the position-embedding rows (paper: ~0)",
    space=SPACE,
)
def jacob_cov(probe) -> Measured:
    score, constant = eig_score(probe.backward.position_grad)
    return Measured(score, {"jacob_cov_constant_positions": constant})
