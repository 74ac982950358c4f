"""The eigenvalue score of a correlation matrix (Mellor et al., used by hidden_cov)."""

from __future__ import annotations

import scipy.linalg
import scipy.linalg.blas
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
    # A row-major copy of our own whatever the input's layout (hidden_cov passes a transposed
    # view): the row reductions and syrk read contiguous memory, and centring and scaling
    # work in place in it, without a further 8 * n * N bytes each.
    x = rows.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    if x.ndim != 2 or x.shape[1] < 2:
        raise MetricFailure(f"eig_score needs a 2-D matrix with >= 2 samples, got {tuple(x.shape)}")
    mean = x.mean(dim=1, keepdim=True)
    # A row mean is finite exactly when the row is: an inf or NaN propagates, and finite
    # values cannot overflow a float64 sum here. One pass fewer than isfinite(x).all().
    if not torch.isfinite(mean).all():
        raise MetricFailure(f"non-finite values in {what}")
    scale = x.abs().amax(dim=1).clamp_min(1.0) * (x.shape[1] ** 0.5)
    centred = x.sub_(mean)
    spread = centred.norm(dim=1)
    constant = spread <= CONSTANT_REL_TOL * scale
    n_constant = int(constant.sum())
    if n_constant:
        centred, spread = centred[~constant], spread[~constant]
    z = centred.div_(spread[:, None])
    eig = _correlation_eigvalsh(z) if z.shape[0] else z.new_zeros(0)
    # Eigenvalues of a correlation matrix are >= 0; rounding can push them just below.
    eig = torch.cat([eig.clamp_min(0.0), eig.new_zeros(n_constant)])
    score = -(torch.log(eig + k) + 1.0 / (eig + k)).sum()
    return float(score), n_constant


def _correlation_eigvalsh(z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of z z^T, ascending. On the CPU the Gram matrix is one symmetric rank-k
    update (BLAS syrk: its upper triangle only, half a general multiply's work) and LAPACK's
    divide-and-conquer driver reads that triangle (about twice as fast as torch's default for
    a 600 x 600 matrix); on a GPU torch keeps the data on the device."""
    if z.device.type == "cpu":
        # z.T of a row-major z is column-major: syrk reads it in place, without a copy.
        gram = scipy.linalg.blas.dsyrk(1.0, z.detach().numpy().T, trans=1)
        return torch.from_numpy(scipy.linalg.eigvalsh(gram, lower=False, driver="evd"))
    return torch.linalg.eigvalsh(z @ z.T)
