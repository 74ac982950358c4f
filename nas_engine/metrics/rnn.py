"""Training-free metrics for NAS-Bench-NLP cells (definitions: shared/docs/metrics.md)."""

from __future__ import annotations

from functools import partial

from .eig import eig_score
from .registry import Measured, MetricFailure, register


def hidden_cov(probe, layer: int = 1) -> Measured:
    states = probe.entering_states(layer)  # (T, B, H)
    if not states.isfinite().all():
        raise MetricFailure(f"non-finite hidden state entering layer {layer}")
    rows = states.reshape(-1, states.shape[-1]).t()  # (H, T*B): one row per unit
    score, constant = eig_score(rows)
    return Measured(score, {f"hidden_cov_l{layer}_constant_units": constant})


for _layer in (1, 2, 3):
    register(
        f"hidden_cov_l{_layer}",
        direction="higher",
        needs={f"entering_states:{_layer}"},
        description=(
            f"Serianni & Kalita's hidden covariance at layer {_layer}: eig score of the "
            "correlation between hidden units over all (sequence, step) states entering the cell"
        ),
    )(partial(hidden_cov, layer=_layer))

register(
    "hidden_cov",
    direction="higher",
    needs={"entering_states:1"},
    description="hidden covariance at layer 1 (the paper's default; same as hidden_cov_l1)",
)(partial(hidden_cov, layer=1))


@register(
    "params",
    direction="higher",
    needs={"param_count"},
    description="number of trainable parameters (a baseline; larger counts as better)",
)
def params(probe) -> float:
    return float(probe.param_count)
