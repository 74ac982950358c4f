"""The eigenvalue score of a correlation matrix (Mellor et al., used by hidden_cov)."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack
import torch

from .registry import MetricFailure

EIG_K = 1e-5
# A row whose spread is below this fraction of its magnitude is constant up to rounding.
CONSTANT_REL_TOL = 1e-10


def eig_score(rows: torch.Tensor, k: float = EIG_K, what: str = "the matrix") -> tuple[float, int]:
    """``-sum_i [log(l_i + k) + 1/(l_i + k)]`` over the eigenvalues l of the Pearson
    correlation matrix of ``rows`` (n rows of samples); returns (score, constant rows).

    Zero-variance rule: a row with no variance has no defined correlation. It carries no
    information, so it counts as a zero eigenvalue, the most redundant a unit can be: the
    correlation is taken over the other rows and one eigenvalue 0 is added per constant
    row. The score therefore only falls as units go dead, a dead unit can never raise it,
    and it is finite even when every unit is constant. Non-finite input is a failure (its
    message names ``what``).
    """
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise MetricFailure(
            f"eig_score needs a 2-D matrix with >= 2 samples, got {tuple(rows.shape)}"
        )
    # A float64 copy of our own, laid out as the input is stored: hidden_cov passes the
    # transpose of a contiguous (samples, units) block, and copying that into row-major
    # (units, samples) order is a strided transpose that cost more than the eigen-solver
    # (39 ms of a 0.2 s score at the benchmark's sizes on one Xeon core).
    by_column = not rows.is_contiguous() and rows.t().is_contiguous()
    x = (rows.t() if by_column else rows).to(
        torch.float64, memory_format=torch.contiguous_format, copy=True
    )
    axis = 0 if by_column else 1  # the samples' axis of x
    samples = x.shape[axis]
    mean = x.mean(dim=axis, keepdim=True)
    # A mean is finite exactly when its row is: an inf or NaN propagates, and finite
    # values cannot overflow a float64 sum here. One pass fewer than isfinite(x).all().
    if not torch.isfinite(mean).all():
        raise MetricFailure(f"non-finite values in {what}")
    # Centre in place, then one Gram matrix of the centred rows: its diagonal holds each
    # row's squared spread, so the correlation is the Gram matrix scaled by the spreads,
    # without further passes over x (reductions along the first axis are slow in torch).
    gram = _centred_gram(x.sub_(mean), by_column)
    mean = mean.flatten()
    spread_sq = gram.diagonal().clone()
    spread = spread_sq.sqrt()
    magnitude = (spread_sq / samples + mean * mean).sqrt()  # the row's root mean square
    constant = spread <= CONSTANT_REL_TOL * magnitude.clamp_min(1.0) * samples**0.5
    n_constant = int(constant.sum())
    if n_constant:
        keep = ~constant
        gram, spread = gram[keep][:, keep], spread[keep]
    dead = -n_constant * (math.log(k) + 1.0 / k)  # each constant row: one eigenvalue 0
    if not gram.shape[0]:
        return dead, n_constant
    correlation = gram.div_(spread[:, None]).div_(spread[None, :])
    return _log_barrier(correlation, k) + dead, n_constant


def _log_barrier(correlation: torch.Tensor, k: float) -> float:
    """``-sum_i [log(l_i + k) + 1/(l_i + k)]`` over the eigenvalues l of the symmetric
    ``correlation`` (its upper triangle given; overwritten), that is ``-(log det A + trace
    A^-1)`` for A = correlation + k I. From A's Cholesky factor U (A = U^T U): log det A =
    2 sum log diag(U), and trace A^-1 = ||U^-1||_F^2. The two triangular steps take half the
    symmetric eigen-solver's time at 600 x 600 on one Xeon core (11 vs 24 ms) and agree with it
    to about 1e-12 relative. Rounding leaves A indefinite only if an eigenvalue of the
    correlation rounds below -k; then the eigenvalues are taken, clamped at 0 as a
    correlation's are."""
    a = correlation
    a.diagonal().add_(k)
    if a.device.type == "cpu":
        upper, info = scipy.linalg.lapack.dpotrf(a.numpy(), lower=0, clean=1)
        if info == 0:
            inverse, info = scipy.linalg.lapack.dtrtri(upper, lower=0)
            if info == 0:
                log_det = 2.0 * float(np.log(upper.diagonal()).sum())
                return -(log_det + float(np.square(inverse).sum()))
    else:
        upper, info = torch.linalg.cholesky_ex(a, upper=True)
        if int(info) == 0:
            eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
            inverse = torch.linalg.solve_triangular(upper, eye, upper=True)
            log_det = 2.0 * upper.diagonal().log().sum()
            return float(-(log_det + inverse.square().sum()))
    a.diagonal().sub_(k)
    eig = _eigvalsh_upper(a).clamp_min(0.0)
    return float(-(torch.log(eig + k) + 1.0 / (eig + k)).sum())


def _centred_gram(x: torch.Tensor, by_column: bool) -> torch.Tensor:
    """The Gram matrix of x's rows (x x^T) or, with ``by_column``, of its columns (x^T x);
    on the CPU only its upper triangle is filled. There it is one symmetric rank-k update
    (BLAS syrk: half a general multiply's work, reading x in place in either layout); on a
    GPU torch keeps the data on the device."""
    if x.device.type == "cpu":
        # The transpose of a row-major array is column-major, which syrk reads in place:
        # trans=0 gives a a^T of a = x.T (that is x^T x), trans=1 gives a^T a (x x^T).
        a = x.detach().numpy().T
        return torch.from_numpy(scipy.linalg.blas.dsyrk(1.0, a, trans=0 if by_column else 1))
    return x.T @ x if by_column else x @ x.T


def _eigvalsh_upper(matrix: torch.Tensor) -> torch.Tensor:
    """Eigenvalues, ascending, of the symmetric matrix whose upper triangle is given. On the
    CPU LAPACK's divide-and-conquer driver (about twice as fast as torch's default for a
    600 x 600 matrix)."""
    if matrix.device.type == "cpu":
        values = scipy.linalg.eigvalsh(matrix.numpy(), lower=False, driver="evd")
        return torch.from_numpy(values)
    return torch.linalg.eigvalsh(matrix, UPLO="U")
