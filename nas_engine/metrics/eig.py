"""The eigenvalue score of a correlation matrix (Mellor et al., used by hidden_cov)."""

from __future__ import annotations

import scipy.linalg
import torch

from .registry import MetricFailure

EIG_K = 1e-5
# A row whose spread is below this fraction of its magnitude is constant up to rounding.
CONSTANT_REL_TOL = 1e-10


def eig_score(rows: torch.Tensor, k: float = EIG_K) -> tuple[float, int]:
    """``-sum_i [log(l_i + k) + 1/(l_i + k)]`` over the eigenvalues l of the Pearson
    correlation matrix of ``rows`` (n rows of samples); returns (score, constant rows).

    Zero-variance rule: a row with no variance has no defined correlation. It carries no
    information, so it counts as a zero eigenvalue, the most redundant a unit can be: the
    correlation is taken over the other rows and one eigenvalue 0 is added per constant
    row. The score therefore only falls as units go dead, a dead unit can never raise it,
    and it is finite even when every unit is constant. Non-finite input is a failure.
    """
    x = rows.to(torch.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise MetricFailure(f"eig_score needs a 2-D matrix with >= 2 samples, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise MetricFailure("non-finite values in the matrix")
    centred = x - x.mean(dim=1, keepdim=True)
    spread = centred.norm(dim=1)
    scale = x.abs().amax(dim=1).clamp_min(1.0) * (x.shape[1] ** 0.5)
    constant = spread <= CONSTANT_REL_TOL * scale
    n_constant = int(constant.sum())
    if n_constant:
        centred, spread = centred[~constant], spread[~constant]
    z = centred / spread[:, None]
    eig = _eigvalsh(z @ z.T) if z.shape[0] else z.new_zeros(0)
    # Eigenvalues of a correlation matrix are >= 0; rounding can push them just below.
    eig = torch.cat([eig.clamp_min(0.0), eig.new_zeros(n_constant)])
    score = -(torch.log(eig + k) + 1.0 / (eig + k)).sum()
    return float(score), n_constant


def _eigvalsh(sym: torch.Tensor) -> torch.Tensor:
    # On the CPU LAPACK's divide-and-conquer driver is about twice as fast as torch's
    # default for a 600 x 600 matrix; on a GPU torch's solver keeps the data on the device.
    if sym.device.type == "cpu":
        return torch.from_numpy(scipy.linalg.eigvalsh(sym.numpy(), driver="evd"))
    return torch.linalg.eigvalsh(sym)
