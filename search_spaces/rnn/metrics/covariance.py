"""Training-free metrics for NAS-Bench-NLP cells (definitions: shared/docs/metrics.md)."""

from __future__ import annotations

from functools import partial

import torch

from nas_engine.metrics.eig import eig_score
from nas_engine.metrics.registry import Direction, Measured, MetricFailure, register

SPACE = "rnn"


def hidden_cov(probe, layer: int = 1) -> Measured:
    states = probe.entering_states(layer)  # (T, B, H)
    rows = states.reshape(-1, states.shape[-1]).t()  # (H, T*B): one row per unit
    score, constant = eig_score(rows, what=f"the hidden state entering layer {layer}")
    return Measured(score, {f"hidden_cov_l{layer}_constant_units": constant})


def _register_per_layer(name: str, fn, direction: Direction, description: str) -> None:
    """``name_l1..l3``: ``fn`` at each layer, reading the states entering that layer's cell
    (``description`` is formatted with the layer)."""
    for layer in (1, 2, 3):
        register(
            f"{name}_l{layer}",
            space=SPACE,
            direction=direction,
            needs={f"entering_states:{layer}"},
            description=description.format(layer=layer),
        )(partial(fn, layer=layer))


_register_per_layer(
    "hidden_cov",
    hidden_cov,
    "higher",
    "Serianni & Kalita's hidden covariance at layer {layer}: eig score of the correlation "
    "between hidden units over all (sequence, step) states entering the cell",
)


def hidden_drift(probe, layer: int = 1) -> float:
    """How far the state entering layer ``layer``'s cell moves per step, relative to its size:
    mean |h_t - h_(t-1)| over t = 2..T-1 / mean |h_t| over t = 1..T-1 (units, sequences). The
    zero initial state (t = 0) is left out: it is the same for every cell and would count the
    state's size, not its movement."""
    states = probe.entering_states(layer)  # (T, B, H)
    if states.shape[0] < 3:
        raise MetricFailure(f"hidden_drift needs >= 3 steps, got {states.shape[0]}")
    if not states.isfinite().all():
        raise MetricFailure(f"non-finite hidden state entering layer {layer}")
    h = states[1:].to(torch.float64)
    size = float(h.abs().mean())
    if size == 0.0:
        raise MetricFailure(f"every state entering layer {layer} is zero (no relative drift)")
    return float((h[1:] - h[:-1]).abs().mean()) / size


_register_per_layer(
    "hidden_drift",
    hidden_drift,
    "lower",
    "mean |h_t - h_t-1| / mean |h_t| of the states entering layer {layer} (t >= 1); lower: a "
    "slowly moving state, as a complement to hidden_cov (alone it tracks hidden_cov and ranks "
    "the other way); see experiments/fitness_search.py",
)

register(
    "hidden_cov",
    space=SPACE,
    direction="higher",
    needs={"entering_states:1"},
    description="hidden covariance at layer 1 (the paper's default; same as hidden_cov_l1)",
)(partial(hidden_cov, layer=1))


@register(
    "params",
    space=SPACE,
    direction="higher",
    needs={"param_count"},
    description="number of trainable parameters (a baseline; larger counts as better)",
)
def params(probe) -> float:
    return float(probe.param_count)
