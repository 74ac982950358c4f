"""Gradient metrics for NAS-Bench-NLP cells: synflow, hidden_synflow, grad_norm and the
TE-NAS NTK scores (definitions: shared/docs/metrics.md).

synflow and hidden_synflow share one backward from the decoder output y with gradient y;
grad_norm reads the loss gradient of the scoring batch, which is also the NTK's first row.
"""

from __future__ import annotations

import math

import torch

from nas_engine.metrics.registry import Measured, MetricFailure, register

SPACE = "rnn"


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise MetricFailure(f"{what} is {value}")
    return value


def recurrent_columns(probe) -> list[torch.Tensor | None]:
    """Per saliency weight (probe.saliency_weights order): a boolean mask of the columns
    that count for synflow, None for all. The columns multiplying the cell input x (the
    input-to-hidden weight) are left out in every layer; the decoder counts whole."""
    model = probe.model
    masks: list[torch.Tensor | None] = []
    for cell in model.layers:
        for node, lin in zip(cell.linear_nodes, cell.linears, strict=True):
            keep = torch.ones(lin.weight.shape[1], dtype=torch.bool, device=lin.weight.device)
            x_cols = cell._column_slices(node).get("x")
            if x_cols is not None:
                keep[x_cols] = False
            masks.append(keep)
    masks.append(None)
    return masks


@register(
    "synflow",
    space=SPACE,
    direction="lower",
    needs={"saliency:weights"},
    description=(
        "synaptic saliency: sum |w*dw| over recurrent weights (not x columns) and decoder, "
        "backward of y with grad y; lower: ref tau +0.19"
    ),
)
def synflow(probe) -> Measured:
    weights = probe.saliency_weights()
    grads = probe.saliency("weights")
    total, decoder = 0.0, 0.0
    for (name, w), g, keep in zip(weights, grads, recurrent_columns(probe), strict=True):
        sal = (w.detach().double() * g.double()).abs()
        part = float(sal.sum() if keep is None else sal[:, keep].sum())
        total += part
        if name == "decoder":
            decoder = part
    return Measured(_finite(total, "synflow"), {"synflow_decoder_part": decoder})


@register(
    "hidden_synflow",
    space=SPACE,
    direction="lower",
    needs={"saliency:states"},
    description=(
        "sum |h*dh| over the states entering every cell, same backward as synflow; lower: "
        "ref tau +0.21"
    ),
)
def hidden_synflow(probe) -> float:
    total = sum(float((h.double() * dh.double()).abs().sum()) for h, dh in probe.saliency("states"))
    return _finite(total, "hidden_synflow")


@register(
    "grad_norm",
    space=SPACE,
    direction="lower",
    needs={"loss_grad"},
    description=(
        "L2 norm of the cross-entropy gradient (next-token targets) w.r.t. all parameters; "
        "lower: measured tau +0.23"
    ),
)
def grad_norm(probe) -> float:
    norm = float(probe.loss_gradient(0).double().norm())
    return _finite(norm, "grad_norm (the loss gradient is not finite)")


def _gram(probe) -> torch.Tensor:
    gram = probe.loss_gradient_gram()  # m = 10 minibatches (probes.NTK_MINIBATCHES)
    if not torch.isfinite(gram).all():
        raise MetricFailure("non-finite loss gradients in the NTK minibatches")
    return gram


@register(
    "ntk_trace",
    space=SPACE,
    direction="lower",
    needs={"minibatch_grads"},
    description=(
        "TE-NAS NTK: sqrt(trace(G G^T)/m), G = loss gradients of m = 10 "
        "minibatches; lower: measured tau +0.28 (341 logs, small model)"
    ),
)
def ntk_trace(probe) -> float:
    gram = _gram(probe)
    return _finite(math.sqrt(float(gram.trace()) / gram.shape[0]), "ntk_trace")


@register(
    "ntk_cond",
    space=SPACE,
    direction="lower",
    needs={"minibatch_grads"},
    description=(
        "TE-NAS NTK condition number: largest/smallest eigenvalue of G G^T "
        "(m = 10); lower is better"
    ),
)
def ntk_cond(probe) -> Measured:
    eig = torch.linalg.eigvalsh(_gram(probe).cpu())
    low, high = float(eig[0]), float(eig[-1])
    if low <= 0 or high <= 0:
        raise MetricFailure(
            f"the NTK Gram matrix is singular (eigenvalues {low:.3g} .. {high:.3g})"
        )
    return Measured(_finite(high / low, "ntk_cond"), {"ntk_min_eigenvalue": low})
