"""Does a short CPU training run rank NAS-Bench-NLP cells? The trained proxy against the logs.

    python experiments/proxy_tau.py [--n 30] [--steps 100] [--size 32] [--corpus ptb|embedded]

Draws N OK logs (seeded), trains each cell with the NAS-Bench-NLP recipe for S steps at a
small size (E = H = size, three layers, batch 20, bptt 35) on PTB (no train split here: the
first 90% of valid, validated on its last 10%) or the embedded corpus, and reports the Kendall
tau between the proxy's validation loss and the log's final WikiText-2 test loss, next to the
tau of hidden_cov at the same size on the same cells, with the seconds each costs. Prints and
saves JSON to experiments/out/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from nas_engine.benchmarks.nbnlp import read_logs
from nas_engine.corpus import embedded_corpus, load_corpus
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes
from search_spaces.rnn.training import TrainingRecipe, prepare_data, train_architecture

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--corpus", choices=("ptb", "embedded"), default="ptb")
    p.add_argument("--seed", type=int, default=0, help="which logs are drawn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "experiments" / "out" / "proxy_tau.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    logs = [log for log in read_logs(DATA / "nasbench_nlp_wt2" / "logs.zip") if log.ok]
    chosen = np.random.default_rng(args.seed).choice(len(logs), size=args.n, replace=False)
    logs = [logs[i] for i in sorted(chosen)]
    if args.corpus == "ptb":
        corpus = load_corpus(DATA / "ptb", "valid")
        recipe = TrainingRecipe(steps=args.steps, batch_size=20, bptt=35, train_split="valid")
    else:
        corpus = embedded_corpus()
        recipe = TrainingRecipe(steps=args.steps, batch_size=20, bptt=35)
    recipe = TrainingRecipe(**{**recipe.to_dict(), "test_split": None})
    data = prepare_data(corpus, recipe)
    sizes = ModelSizes(embedding_size=args.size, hidden_size=args.size, num_layers=3)
    scorer = Scorer(
        ScoringSetup(
            metrics=("hidden_cov",),
            embedding_size=args.size,
            hidden_size=args.size,
            num_layers=3,
            batch_size=20,
            bptt=35,
        ),
        corpus,
    )
    rows = []
    for i, log in enumerate(logs):
        arch = json.loads(log.recipe_json)
        out = train_architecture(arch, sizes, data, recipe)
        began = time.perf_counter()
        scored = scorer.score(Candidate(log.name, arch))
        rows.append(
            {
                "log": log.name,
                "final_test_loss": log.final_test_loss,
                "epoch1_val_loss": log.val_losses[0],
                "proxy_valid_loss": out.valid_loss,
                "proxy_status": out.status,
                "proxy_seconds": out.seconds,
                "hidden_cov": scored.metrics.get("hidden_cov"),
                "hidden_cov_seconds": time.perf_counter() - began,
            }
        )
        print(
            f"{i + 1:>3}/{len(logs)} {log.name}: proxy {out.valid_loss} ({out.seconds:.1f} s), "
            f"final test {log.final_test_loss:.3f}",
            flush=True,
        )

    def tau(key: str) -> dict:
        pairs = [(r[key], r["final_test_loss"]) for r in rows if r[key] is not None]
        x, y = zip(*pairs, strict=True)
        return {"tau": float(stats.kendalltau(x, y).statistic), "n": len(pairs)}

    summary = {
        "proxy_valid_loss": {**tau("proxy_valid_loss"), "median_seconds": _median(rows, "proxy")},
        "hidden_cov": {**tau("hidden_cov"), "median_seconds": _median(rows, "hidden_cov")},
        "epoch1_val_loss (the logs, full size, WikiText-2)": tau("epoch1_val_loss"),
    }
    for name, s in summary.items():
        print(f"{name:<50} tau {s['tau']:+.3f} (n {s['n']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"settings": vars(args), "recipe": recipe.to_dict(), "summary": summary, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.out}")


def _median(rows: list[dict], prefix: str) -> float:
    return float(np.median([r[f"{prefix}_seconds"] for r in rows]))


if __name__ == "__main__":
    main()
