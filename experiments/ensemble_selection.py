"""Choose an ensemble fitness on half of the NAS-Bench-NLP logs, report it on the other half.

    python experiments/ensemble_selection.py [--scores PATH/scores.csv]

Reads a ``scores.csv`` written by ``python -m nas_engine.benchmark nbnlp --metrics all`` and
tries every ensemble of 1 to 3 metrics with weights 1 or 2, combined by the engine's ensemble
rule (weighted mean of each direction-applied metric's mid-rank percentile; a missing component
drops the architecture). The recipe with the best Kendall tau (fitness vs. minus the final test
loss) on a random half of the logs (seed 0) is reported on the other half next to
``hidden_cov`` alone. Writes experiments/out/ensemble_selection.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nas_engine.analysis import ensembles
from nas_engine.metrics import get_metric, metric_names

OUT = Path(__file__).parent / "out"


def ensemble_tau(frame: pd.DataFrame, weights: dict[str, float]) -> tuple[float, int]:
    """Kendall tau between the ensemble fitness and minus the test loss (higher is better);
    rows with a missing component are dropped (ensembles.ensemble_tau on a frame)."""
    signed = {m: get_metric(m).sign * frame[m].to_numpy(dtype=float) for m in weights}
    target = frame["test_loss"].to_numpy(dtype=float)
    return ensembles.ensemble_tau(signed, weights, target, np.arange(len(frame)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", default=str(OUT / "nbnlp_all_metrics_fast" / "scores.csv"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not Path(args.scores).exists():
        print(f"error: {args.scores} not found; run the nbnlp benchmark first", file=sys.stderr)
        return 2
    scores = pd.read_csv(args.scores)
    known = set(metric_names("rnn")) - {"hidden_cov_l1"}  # hidden_cov_l1 = hidden_cov
    metrics = [c for c in scores.columns if c in known]
    choose_rows, report_rows = ensembles.split_halves(len(scores), args.seed)
    choose, report = scores.iloc[choose_rows], scores.iloc[report_rows]

    candidates = []
    for k in (1, 2, 3):
        for names in itertools.combinations(metrics, k):
            for ws in itertools.product((1.0, 2.0), repeat=k):
                if k > 1 and min(ws) == 2.0:
                    continue  # same as all ones
                weights = dict(zip(names, ws, strict=True))
                tau, n = ensemble_tau(choose, weights)
                if np.isfinite(tau):
                    candidates.append((tau, n, weights))
    candidates.sort(key=lambda c: -c[0])
    best_tau, best_n, best = candidates[0]
    spec = "+".join(f"{m}:{w:g}" if w != 1 else m for m, w in best.items())
    held_tau, held_n = ensemble_tau(report, best)
    base_choose, _ = ensemble_tau(choose, {"hidden_cov": 1.0})
    base_held, base_n = ensemble_tau(report, {"hidden_cov": 1.0})
    result = {
        "scores": args.scores,
        "split_seed": args.seed,
        "tried": len(candidates),
        "best_recipe": spec,
        "selection_half": {"tau": best_tau, "n": best_n, "hidden_cov_tau": base_choose},
        "held_out_half": {
            "tau": held_tau,
            "n": held_n,
            "hidden_cov_tau": base_held,
            "hidden_cov_n": base_n,
        },
        "top10_on_selection_half": [
            {"weights": w, "tau": t, "n": n} for t, n, w in candidates[:10]
        ],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ensemble_selection.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"tried {len(candidates)} recipes; best on the selection half: {spec}")
    print(
        f"  selection half: tau {best_tau:+.3f} (n {best_n}); hidden_cov alone {base_choose:+.3f}"
    )
    print(f"  held-out half:  tau {held_tau:+.3f} (n {held_n}); hidden_cov alone {base_held:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
