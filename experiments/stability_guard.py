"""The health rule and the stability guard on the NAS-Bench-NLP WikiText-2 logs.

    python experiments/stability_guard.py            # about 3 minutes on a 2-core CPU

Every log (341 trained to the end, 4 "loss is nan!") is scored as a search scores it
(``hidden_cov`` at the log's own sizes, the benchmark's input: the first 70 steps of PTB test in
50 columns, seed 0) with the health rule on. It prints and saves
(``experiments/out/stability_guard.{json,md}``):

- the confusion table of the guard at the default threshold and at others: flagged or not,
  against the log's outcome (trained, or NaN), with the trained logs' median final test loss
  on each side;
- how many logs the degenerate-cell rule fails;
- the rule's cost against a ``hidden_cov`` score: the whole score of each of the first
  ``--timed`` trained logs with the rule (the verdict, and the stress sequences riding in the
  forward) and without it, interleaved (median of the per-architecture ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nas_engine.benchmarks.nbnlp import read_logs
from nas_engine.corpus import load_corpus
from nas_engine.health import DEFAULT_STABILITY_THRESHOLD, STABILITY
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
THRESHOLDS = (0.0, 0.5, DEFAULT_STABILITY_THRESHOLD, 2.0, 5.0)


def setup_for(log, health: bool) -> ScoringSetup:
    return ScoringSetup(
        metrics=("hidden_cov",),
        embedding_size=log.embedding_size,
        hidden_size=log.hidden_size,
        num_layers=log.num_layers,
        health_check=health,
        required_metrics=("hidden_cov",),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", default=str(DATA / "nasbench_nlp_wt2" / "logs.zip"))
    p.add_argument("--corpus", default=str(DATA / "ptb"))
    p.add_argument("--timed", type=int, default=40, help="trained logs whose costs are timed")
    p.add_argument("--out", default="experiments/out/stability_guard")
    args = p.parse_args()
    logs = read_logs(args.logs)
    corpus = load_corpus(args.corpus, "test")
    scorers: dict[ScoringSetup, Scorer] = {}

    def scorer(log, health: bool) -> Scorer:
        setup = setup_for(log, health)
        if setup not in scorers:
            scorers[setup] = Scorer(setup, corpus)
        return scorers[setup]

    rows = []
    for log in logs:
        recipe = json.loads(log.recipe_json)
        evaluation = scorer(log, True).score(Candidate(log.name, recipe))
        rows.append(
            {
                "log": log.name,
                "trained": log.ok,
                "status": log.status,
                "final_test_loss": log.final_test_loss if log.ok else None,
                "scored": evaluation.status,
                "error": evaluation.error,
                "stress_growth": evaluation.details.get(STABILITY),
            }
        )
    costs = time_costs([log for log in logs if log.ok][: args.timed], scorer)
    report = {
        "settings": {
            "logs": len(logs),
            "corpus": corpus.description,
            "sizes": "each log's own (E, H, layers); B=50, T=70, seed 0",
            "metric": "hidden_cov",
        },
        "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU "
        f"({platform.processor() or 'unknown'}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "degenerate": [r for r in rows if r["scored"] == "failed"],
        "confusion": [confusion(rows, t) for t in THRESHOLDS],
        "cost": costs,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def confusion(rows: list[dict], threshold: float) -> dict:
    scored = [r for r in rows if r["stress_growth"] is not None]

    def flagged(r: dict) -> bool:
        return r["stress_growth"] > threshold

    def loss(part: list[dict]) -> float | None:
        values = [r["final_test_loss"] for r in part if r["trained"]]
        return round(statistics.median(values), 4) if values else None

    flag = [r for r in scored if flagged(r)]
    keep = [r for r in scored if not flagged(r)]
    return {
        "threshold": threshold,
        "flagged_nan": sum(not r["trained"] for r in flag),
        "flagged_trained": sum(r["trained"] for r in flag),
        "kept_nan": sum(not r["trained"] for r in keep),
        "kept_trained": sum(r["trained"] for r in keep),
        "median_test_loss_flagged": loss(flag),
        "median_test_loss_kept": loss(keep),
    }


def time_costs(logs, scorer, repeats: int = 5) -> dict:
    """Per architecture: the whole hidden_cov score with the rule (its verdict, and the stress
    sequences riding in the forward) and without, ``repeats`` times each, interleaved; the
    extra seconds over the plain score's (the medians of each), then the median over the
    architectures."""
    ratios, health_s, plain_s = [], [], []
    for log in logs:
        candidate = Candidate(log.name, json.loads(log.recipe_json))
        with_rule, without = scorer(log, True), scorer(log, False)
        with_rule.score(candidate)  # warm: the first score of a size builds its input
        without.score(candidate)
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(2 * repeats):
            health = i % 2 == (len(ratios) % 2)  # alternate which goes first
            start = time.perf_counter()
            (with_rule if health else without).score(candidate)
            times[health].append(time.perf_counter() - start)
        t_health, t_plain = statistics.median(times[True]), statistics.median(times[False])
        ratios.append((t_health - t_plain) / t_plain)
        health_s.append(t_health)
        plain_s.append(t_plain)
    return {
        "architectures": len(logs),
        "repeats": repeats,
        "median_score_seconds_with_rule": round(statistics.median(health_s), 6),
        "median_score_seconds_without": round(statistics.median(plain_s), 6),
        "median_extra_ratio": round(statistics.median(ratios), 5),
        "mean_extra_ratio": round(statistics.fmean(ratios), 5),
    }


def markdown(report: dict) -> str:
    lines = [
        "| threshold | flagged: NaN | flagged: trained | kept: NaN | kept: trained | "
        "median test loss, flagged | median test loss, kept |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in report["confusion"]:
        lines.append(
            f"| {c['threshold']:g} | {c['flagged_nan']} | {c['flagged_trained']} | "
            f"{c['kept_nan']} | {c['kept_trained']} | {c['median_test_loss_flagged']} | "
            f"{c['median_test_loss_kept']} |"
        )
    cost = report["cost"]
    degenerate = report["degenerate"]
    lines += [
        "",
        f"Degenerate (failed by the health rule): {len(degenerate)} of "
        f"{report['settings']['logs']} logs"
        + (
            ": " + "; ".join(f"{d['log']} ({d['status']}): {d['error']}" for d in degenerate)
            if degenerate
            else ""
        )
        + ".",
        f"Cost: a hidden_cov score takes {cost['median_score_seconds_with_rule'] * 1e3:.1f} ms "
        f"with the health rule and {cost['median_score_seconds_without'] * 1e3:.1f} ms without "
        f"(medians); the rule adds {cost['median_extra_ratio'] * 100:+.2f}% "
        f"(median over {cost['architectures']} architectures of the per-architecture ratio of "
        f"medians of {cost['repeats']} interleaved scores; mean "
        f"{cost['mean_extra_ratio'] * 100:+.2f}%).",
        f"Settings: {report['settings']}. Hardware: {report['hardware']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
