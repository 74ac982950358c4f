"""Jacobian metrics for NAS-Bench-NLP cells: jacob_cov, jacob_cosine and the noised variants
(definitions: shared/docs/metrics.md).

All read the Jacobian of the summed decoder outputs w.r.t. the input embeddings, (T, B, E),
as B rows of T*E values (one row per sequence). jacob_cov and jacob_cosine share one
Jacobian; each noise level computes one noised Jacobian shared by its cov and cosine twins.
"""

from __future__ import annotations

from functools import partial

import torch

from nas_engine.metrics.eig import eig_score
from nas_engine.metrics.registry import Measured, MetricFailure, register

SPACE = "rnn"

NOISE_EXPONENT = 1.0 / 20.0  # jacob_cosine: abs(S_ij) ** (1/20)


def jacobian_rows(jacobian: torch.Tensor, what: str = "Jacobian") -> torch.Tensor:
    """(T, B, E) -> (B, T*E) float64, one row per sequence; non-finite values fail."""
    rows = jacobian.transpose(0, 1).reshape(jacobian.shape[1], -1).to(torch.float64)
    if not torch.isfinite(rows).all():
        raise MetricFailure(f"non-finite values in the {what}")
    return rows


def cov_score(jacobian: torch.Tensor, what: str = "Jacobian") -> tuple[float, int]:
    """eig_score of the Jacobian rows, and the number of constant rows."""
    return eig_score(jacobian_rows(jacobian, what))


def cosine_score(jacobian: torch.Tensor, what: str = "Jacobian") -> float:
    """1 - sum_ij abs(S_ij)^(1/20) / (2 (B^2 - B)), S = cosine similarity of the rows minus
    the identity (its diagonal is exactly zero). A zero row has no direction: a failure."""
    rows = jacobian_rows(jacobian, what)
    batch = rows.shape[0]
    if batch < 2:
        raise MetricFailure(f"jacob_cosine needs >= 2 sequences, got {batch}")
    norms = rows.norm(dim=1)
    if (norms == 0).any():
        raise MetricFailure(f"{int((norms == 0).sum())} {what} rows are zero (no direction)")
    unit = rows / norms[:, None]
    sim = (unit @ unit.T).fill_diagonal_(0.0)  # S = C - I, without rounding on the diagonal
    return float(1.0 - sim.abs().pow(NOISE_EXPONENT).sum() / (2 * (batch * batch - batch)))


@register(
    "jacob_cov",
    space=SPACE,
    direction="higher",
    needs={"jacobian"},
    description="eig score of the correlation between sequences' input Jacobians (B rows of T*E)",
)
def jacob_cov(probe) -> Measured:
    score, constant = cov_score(probe.jacobian())
    return Measured(score, {"jacob_cov_constant_rows": constant})


@register(
    "jacob_cosine",
    space=SPACE,
    direction="higher",
    needs={"jacobian"},
    description="1 - mean abs cosine similarity^(1/20) between sequences' input Jacobians (/2)",
)
def jacob_cosine(probe) -> float:
    return cosine_score(probe.jacobian())


def jacob_noise(probe, level: str, cosine: bool) -> float:
    """1 - abs(score(clean Jacobian) - score(Jacobian on the noised embeddings))."""
    clean = _score(probe.jacobian(), "Jacobian", cosine)
    noised = _score(probe.jacobian(level), f"{level}-noise Jacobian", cosine)
    return 1.0 - abs(clean - noised)


def _score(jacobian: torch.Tensor, what: str, cosine: bool) -> float:
    return cosine_score(jacobian, what) if cosine else cov_score(jacobian, what)[0]


_SCALE = {"small": "0.1", "large": "10", "huge": "100"}
# Directions from measurement (metrics.md: "see paper"; the paper's tau is +0.26 / +0.27 for
# large / large cosine, the reference re-run on the benchmark's model gives -0.11..+0.09):
# on 341 NAS-Bench-NLP logs at full size, seed 0, jacob_noise_large has tau -0.09 with test
# loss (higher is better) and jacob_noise_large_cosine +0.09 (lower is better); at small
# sizes every cov variant is negative and every cosine variant positive.
_DIRECTION = {False: ("higher", "-0.09"), True: ("lower", "+0.09")}
for _level, _a in _SCALE.items():
    for _cosine in (False, True):
        _twin = "jacob_cosine" if _cosine else "jacob_cov"
        _direction, _tau = _DIRECTION[_cosine]
        register(
            f"jacob_noise_{_level}" + ("_cosine" if _cosine else ""),
            space=SPACE,
            direction=_direction,
            needs={"jacobian", f"jacobian_noise:{_level}"},
            description=(
                f"1 - |{_twin}(e) - {_twin}(e + {_a}*var_B(e)*N(0,1))|; {_direction}: measured "
                f"tau {_tau} vs loss (large, 341 logs; paper +0.26)"
            ),
        )(partial(jacob_noise, level=_level, cosine=_cosine))
