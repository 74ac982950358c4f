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
# Multiply-adds (samples x units^2) from which the host Gram matrix is worth splitting over
# torch's threads (_centred_gram). Below, the three multiplies cost more than they share: at
# the fast sizes (875 x 64) 412 us against 180 us for syrk on one thread, on a 2-core EPYC;
# the two were about even from 5e7 to 3e8, and the split won at the default sizes (1.3e9).
BLOCKED_GRAM_MIN_WORK = 3e8
# A row whose spread is below this fraction of its magnitude is constant up to rounding.
CONSTANT_REL_TOL = 1e-10


def eig_score(
    rows: torch.Tensor, k: float = EIG_K, what: str = "the matrix", *, in_torch: bool | None = None
) -> tuple[float, int]:
    """``-sum_i [log(l_i + k) + 1/(l_i + k)]`` over the eigenvalues l of the Pearson
    correlation matrix of ``rows`` (n rows of samples); returns (score, constant rows).

    Zero-variance rule: a row with no variance has no defined correlation. It carries no
    information, so it counts as a zero eigenvalue, the most redundant a unit can be: the
    correlation is taken over the other rows and one eigenvalue 0 is added per constant
    row. The score therefore only falls as units go dead, a dead unit can never raise it,
    and it is finite even when every unit is constant. Non-finite input is a failure (its
    message names ``what``).

    On the CPU the Gram matrix and its factorisation run in host BLAS and LAPACK; elsewhere
    (``in_torch``, by default off the CPU) every step is a torch operation on the input's
    device and one value is read back at the end (:func:`_score_in_torch`). The two agree to
    rounding (the tests run both on the CPU).
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
    if in_torch is None:
        in_torch = x.device.type != "cpu"
    if in_torch:
        return _score_in_torch(x, by_column, k, what)
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
    spread, constant = _spreads(gram, mean.flatten(), samples)
    n_constant = int(constant.sum())
    if n_constant:
        keep = ~constant
        gram, spread = gram[keep][:, keep], spread[keep]
    dead = -n_constant * (math.log(k) + 1.0 / k)  # each constant row: one eigenvalue 0
    if not gram.shape[0]:
        return dead, n_constant
    correlation = gram.div_(spread[:, None]).div_(spread[None, :])
    return _log_barrier(correlation, k) + dead, n_constant


def _spreads(
    gram: torch.Tensor, mean: torch.Tensor, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's spread (the root of the centred Gram matrix's diagonal) and whether the
    row is constant: its spread below CONSTANT_REL_TOL of its magnitude, the root mean square
    from the spread and the mean, so that no reduction runs along the slow axis of x."""
    spread_sq = gram.diagonal()
    spread = spread_sq.sqrt()
    magnitude = (spread_sq / samples + mean * mean).sqrt()
    return spread, spread <= CONSTANT_REL_TOL * magnitude.clamp_min(1.0) * samples**0.5


def _log_barrier(correlation: torch.Tensor, k: float) -> float:
    """``-sum_i [log(l_i + k) + 1/(l_i + k)]`` over the eigenvalues l of the symmetric
    ``correlation`` (a CPU tensor, its upper triangle given; overwritten), that is
    ``-(log det A + trace A^-1)`` for A = correlation + k I. From A's Cholesky factor U
    (A = U^T U): log det A = 2 sum log diag(U), and trace A^-1 = ||U^-1||_F^2. The two
    triangular steps take half the symmetric eigen-solver's time at 600 x 600 on one Xeon core
    (11 vs 24 ms) and agree with it to about 1e-12 relative. Rounding leaves A indefinite only
    if an eigenvalue of the correlation rounds below -k; then the eigenvalues are taken,
    clamped at 0 as a correlation's are."""
    a = correlation
    a.diagonal().add_(k)
    upper, info = scipy.linalg.lapack.dpotrf(a.numpy(), lower=0, clean=1)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dtrtri(upper, lower=0)
        if info == 0:
            log_det = 2.0 * float(np.log(upper.diagonal()).sum())
            return -(log_det + float(np.square(inverse).sum()))
    a.diagonal().sub_(k)
    values = scipy.linalg.eigvalsh(a.numpy(), lower=False, driver="evd")
    return _clamped_barrier(torch.from_numpy(values), k)


def _clamped_barrier(eigenvalues: torch.Tensor, k: float) -> float:
    eig = eigenvalues.clamp_min(0.0)
    return float(-(torch.log(eig + k) + 1.0 / (eig + k)).sum())


def _score_in_torch(x: torch.Tensor, by_column: bool, k: float, what: str) -> tuple[float, int]:
    """:func:`eig_score` of x (float64, ours to overwrite) as torch operations on its device,
    with one read back to the host: on a GPU every check that read a value (finite input?
    how many constant rows? did the factorisation succeed?) would wait for the device, four
    waits a score. So no row is removed, which would need the count on the host: a constant
    row's row and column of the correlation are set to zero instead, which gives it an
    eigenvalue 0 and leaves the others those of the remaining rows, as the rule says."""
    axis = 0 if by_column else 1
    samples = x.shape[axis]
    mean = x.mean(dim=axis, keepdim=True)
    x.sub_(mean)
    gram = x.T @ x if by_column else x @ x.T
    spread, constant = _spreads(gram, mean.flatten(), samples)
    scale = torch.where(constant, 0.0, spread.reciprocal())
    correlation = gram.mul_(scale[:, None]).mul_(scale[None, :])
    barrier, info = _cholesky_barrier(correlation, k)
    checks = (barrier, constant.sum(), torch.isfinite(mean).all(), info)
    barrier, n_constant, finite, info = torch.stack([c.to(torch.float64) for c in checks]).tolist()
    if not finite:
        raise MetricFailure(f"non-finite values in {what}")
    if info:  # rounding made correlation + kI indefinite (rare): the clamped eigenvalues
        correlation.diagonal().sub_(k)
        barrier = _clamped_barrier(torch.linalg.eigvalsh(correlation), k)
    return barrier, int(n_constant)


def _cholesky_barrier(correlation: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``-(log det A + trace A^-1)`` for A = correlation + kI (k added to ``correlation`` in
    place) from A's Cholesky factor, as in :func:`_log_barrier`, and the factorisation's
    ``info`` (non-zero: A is not positive definite and the value means nothing); both 0-dim
    tensors on the device, nothing read back."""
    correlation.diagonal().add_(k)
    upper, info = torch.linalg.cholesky_ex(correlation, upper=True)
    eye = torch.eye(correlation.shape[0], dtype=correlation.dtype, device=correlation.device)
    inverse = torch.linalg.solve_triangular(upper, eye, upper=True)
    return -(2.0 * upper.diagonal().log().sum() + inverse.square().sum()), info


def _centred_gram(x: torch.Tensor, by_column: bool) -> torch.Tensor:
    """The upper triangle of the Gram matrix of x's rows (x x^T) or, with ``by_column``, of
    its columns (x^T x), for a CPU tensor (the lower triangle is not to be read).

    With one torch thread, one symmetric rank-k update (BLAS syrk: half a general multiply's
    work, reading x in place in either layout). With several, the upper blocks of a split
    into as many column blocks as threads + 1, each a torch multiply on torch's threads (the
    forward's, idle during the metric): the scorer keeps the host BLAS at one thread inside
    a score, as its threads keep spinning after a call and take the cores from the next
    forward. At the benchmark's sizes (3500 x 600) on a 2-core AMD EPYC: 27 ms with 3 blocks
    on 2 threads, against 49 ms for syrk on one and 38 ms for the full product on two; whole
    hidden_cov scores 2.4% faster (mean; 4.9% median; 16 cells, two interleaved rounds).
    Small matrices stay with syrk (see BLOCKED_GRAM_MIN_WORK)."""
    threads = torch.get_num_threads()
    samples, units = (x.shape[0], x.shape[1]) if by_column else (x.shape[1], x.shape[0])
    if threads == 1 or samples * units * units < BLOCKED_GRAM_MIN_WORK:
        # The transpose of a row-major array is column-major, which syrk reads in place:
        # trans=0 gives a a^T of a = x.T (that is x^T x), trans=1 gives a^T a (x x^T).
        a = x.detach().numpy().T
        return torch.from_numpy(scipy.linalg.blas.dsyrk(1.0, a, trans=0 if by_column else 1))
    cols = x if by_column else x.T  # the Gram matrix of cols' columns
    n = cols.shape[1]
    blocks = min(threads + 1, n)
    edges = [n * i // blocks for i in range(blocks + 1)]
    gram = cols.new_zeros(n, n)
    for lo, hi in zip(edges, edges[1:], strict=False):
        torch.mm(cols[:, lo:hi].T, cols[:, lo:], out=gram[lo:hi, lo:])
    return gram
