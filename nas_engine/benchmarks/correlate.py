"""What both benchmarks share: each metric's correlation with the trained target, its
scatter plots, and the printed summary."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def correlations(scores: pd.DataFrame, metrics: tuple[str, ...], target: str = "test_loss") -> dict:
    """Kendall tau and Spearman rho of each metric (sign as defined) with ``target``; a
    metric here is any column of ``scores``, a fitness spec's included (see :mod:`.specs`)."""
    out = {}
    for metric in metrics:
        values = scores[metric].to_numpy(dtype=float)
        finite = np.isfinite(values)
        x, y = values[finite], scores[target].to_numpy(dtype=float)[finite]
        tau = stats.kendalltau(x, y).statistic if len(x) > 1 else math.nan
        rho = stats.spearmanr(x, y).statistic if len(x) > 1 else math.nan
        seconds_column = f"{metric}_seconds"
        seconds = scores[seconds_column].to_numpy(dtype=float) if seconds_column in scores else []
        out[metric] = {
            "kendall_tau": None if math.isnan(tau) else float(tau),
            "spearman_rho": None if math.isnan(rho) else float(rho),
            "n": int(finite.sum()),
            "failed": int((~finite).sum()),
            "seconds_per_arch": float(statistics.median(seconds)) if len(seconds) else None,
        }
    return out


def plot_name(column: str) -> str:
    """A column's name as a file name: a metric's name as is; a fitness spec's ``:`` and
    ``+`` (and anything else outside letters, digits, ``_``, ``.`` and ``-``) as ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", column)


def scatter_plots(
    scores: pd.DataFrame, corr: dict, out_dir: Path, target: str = "test_loss"
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, c in corr.items():
        values = scores[metric].to_numpy(dtype=float)
        finite = np.isfinite(values)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(values[finite], scores[target][finite], s=8, alpha=0.6)
        if finite.any() and np.nanmax(np.abs(values[finite])) > 1e4:
            ax.set_xscale("symlog")
        ax.set_xlabel(metric)
        ax.set_ylabel(f"final {target.replace('_', ' ')}")
        tau = c["kendall_tau"]
        ax.set_title(
            f"{metric}: tau = {tau:.3f} (n = {c['n']}, failed {c['failed']})"
            if tau is not None
            else metric
        )
        fig.tight_layout()
        path = out_dir / f"scatter_{plot_name(metric)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def print_correlations(corr: dict, out: Path, plots: int) -> None:
    """The benchmark table (metric, n, failed, tau, rho, seconds) and where the files went."""
    table = pd.DataFrame(
        [
            {
                "metric": m,
                "n": c["n"],
                "failed": c["failed"],
                "kendall_tau": c["kendall_tau"],
                "spearman_rho": c["spearman_rho"],
                "seconds_per_arch": c["seconds_per_arch"],
            }
            for m, c in corr.items()
        ]
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out / 'correlations.json'}, {out / 'scores.csv'} and {plots} plots")
