"""Ensemble fitness against a benchmark's test loss, on a split of its table: what
experiments/fitness_search.py, ensemble_selection.py and regret_simulation.py share.

An ensemble is scored by the engine's rule (the weighted mean of each direction-applied
metric's mid-rank percentile) and judged by its Kendall tau with minus the test loss; a
recipe is chosen on one half of the table (:func:`split_halves`) and reported on the other.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The selection half and the held-out half of ``n`` table rows: a seed-``seed``
    permutation, first half and the rest (ensemble_selection.py's and fitness_search.py's
    split)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def percentile(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile, NaN kept NaN (the engine's rule drops a result with a missing
    component; here the rows with any NaN component are dropped before the tau)."""
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    out[finite] = stats.rankdata(values[finite]) / finite.sum()
    return out


def ensemble_tau(
    signed: dict[str, np.ndarray],
    weights: dict[str, int],
    target: np.ndarray,
    rows: np.ndarray,
    failed_last: bool = False,
) -> tuple[float, int]:
    """Kendall tau between the ensemble fitness over ``rows`` (percentiles taken among those
    rows, as the engine ranks within its reference population) and minus the test loss. A
    row with a failed component is dropped (ensemble_selection.py's rule), or with
    ``failed_last`` ranked below every scored row (a search never picks a failed result)."""
    cols = np.stack([signed[m][rows] for m in weights])
    keep = np.isfinite(cols).all(axis=0)
    if keep.sum() < 3:
        return math.nan, int(keep.sum())
    total = sum(w * percentile(cols[i][keep]) for i, w in enumerate(weights.values()))
    fitness = total / sum(weights.values())
    if failed_last:
        ranked = np.full(len(rows), -1.0)
        ranked[keep] = fitness
        return float(stats.kendalltau(ranked, -target[rows]).statistic), len(rows)
    tau = stats.kendalltau(fitness, -target[rows][keep]).statistic
    return float(tau), int(keep.sum())
