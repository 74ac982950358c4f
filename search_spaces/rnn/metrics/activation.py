"""Forward-only activation metrics for NAS-Bench-NLP cells: activation_distance (NASWOT) and
the Zen-score (definitions: shared/docs/metrics.md)."""

from __future__ import annotations

import math

import torch

from nas_engine.metrics.registry import Measured, MetricFailure, register

SPACE = "rnn"


@register(
    "activation_distance",
    space=SPACE,
    direction="higher",
    needs={"activation_codes"},
    description=(
        "NASWOT: log|det K|, K counts sign agreements of all activation units between sequences"
    ),
)
def activation_distance(probe) -> Measured:
    ak = probe.activation_kernel()
    details = {"activation_distance_units": ak.units}
    if ak.nodes == 0:
        raise MetricFailure("kernel is singular: the cell has no activation node")
    # Singular by its rank (SVD, numerical tolerance), not by slogdet's sign: on an exactly
    # singular integer kernel, LU pivoting may leave a tiny non-zero pivot instead of a zero
    # (it varies with the LAPACK build), and log|det K| is then a large negative number.
    if int(torch.linalg.matrix_rank(ak.kernel)) < ak.kernel.shape[0]:
        raise MetricFailure(f"kernel is singular: {_singular_reason(ak.kernel, ak.units)}")
    sign, logdet = torch.linalg.slogdet(ak.kernel)
    if sign == 0 or not math.isfinite(float(logdet)):
        raise MetricFailure(f"kernel is singular: {_singular_reason(ak.kernel, ak.units)}")
    return Measured(float(logdet), details)


def _singular_reason(kernel: torch.Tensor, units: int) -> str:
    """'N identical codes' (sequences whose code equals another's: K_ij = N units), or the
    rank when no two codes are identical."""
    same = kernel == units
    same.fill_diagonal_(False)
    duplicated = int(same.any(dim=1).sum())
    if duplicated:
        return f"{duplicated} identical codes"
    rank = int(torch.linalg.matrix_rank(kernel))
    return f"rank {rank} of {kernel.shape[0]}"


@register(
    "zen",
    space=SPACE,
    direction="higher",
    needs={"zen_outputs"},
    description=(
        "Zen-score: log mean L1 gap of final outputs for Gaussian x vs x+0.1*eps; higher: "
        "measured tau -0.10 vs loss (341 logs)"
    ),
)
def zen(probe) -> float:
    clean, perturbed = probe.zen_outputs
    if not (torch.isfinite(clean).all() and torch.isfinite(perturbed).all()):
        raise MetricFailure("non-finite outputs for the Gaussian inputs")
    distance = (clean.double() - perturbed.double()).abs().sum(dim=1).mean()
    if distance <= 0:
        raise MetricFailure("the perturbation does not change the final outputs (log 0)")
    return math.log(float(distance))
