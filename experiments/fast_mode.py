"""The fast mode's trade-off: seconds per architecture against ranking quality, over sizes.

    python experiments/fast_mode.py [--limit N] [--device cpu|cuda] [--settings NAME,...]

For every OK NAS-Bench-NLP WikiText-2 log (341) and each size setting (embedding E, hidden
H, batch rows B, steps T; 3 layers always), ``hidden_cov`` is scored by the engine
(:class:`~search_spaces.rnn.batched.BatchedScorer`, seed 0, the first batch of the PTB test
text) and correlated with the final test loss (Kendall tau, Spearman rho;
``nas_engine.benchmarks.nbnlp``). The settings are interleaved log by log, so load from other
work on the machine falls on all of
them alike; seconds per architecture are the medians of the engine's own per-candidate
seconds (model build, forward, metric).

With ``--seeds S`` every setting is scored with initialisation seeds 0..S-1 and tau is
reported as the mean and standard deviation over seeds (the seconds are seed 0's).

The rule's pick is the cheapest setting whose mean |tau| is within 0.01 of the best mean |tau|
of the run (and not below the default sizes' when they are in the run). ``--fast`` itself is
``nas_engine.config.FAST_SIZES``, marked in the output; the README says why it may differ
from the rule's pick (it applies to every metric, not only ``hidden_cov``).

On a shared machine the seconds can be measured apart from the taus: run once on all logs
(``--out-name fast_mode_taus``), then time a few logs when the machine is quiet, taking the
taus from the first run: ``--limit 40 --taus-from experiments/out/fast_mode_taus.json``.

Writes experiments/out/fast_mode.json and experiments/out/fast_mode.png (seconds per
architecture, log scale, against |tau|, one labelled point per setting). ``--threads 1 --clock
cpu`` counts CPU seconds of one thread instead of elapsed time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from nas_engine.benchmarks.correlate import correlations
from nas_engine.benchmarks.nbnlp import read_logs
from nas_engine.config import FAST_SIZES
from nas_engine.corpus import load_corpus
from nas_engine.result import Candidate
from nas_engine.scoring import ScoringSetup
from search_spaces.rnn.batched import BatchedScorer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
METRIC = "hidden_cov"
# name: (E, H, B, T)
SETTINGS: dict[str, tuple[int, int, int, int]] = {
    "default": (400, 600, 50, 70),
    "E96-H128-B25-T35": (96, 128, 25, 35),
    "E48-H64-B50-T70": (48, 64, 50, 70),
    "E48-H64-B25-T35": (48, 64, 25, 35),
    "E48-H64-B16-T20": (48, 64, 16, 20),
    "E32-H32-B25-T35": (32, 32, 25, 35),
    "E32-H32-B16-T20": (32, 32, 16, 20),
    "E16-H16-B8-T10": (16, 16, 8, 10),
}


def choose(results: dict[str, dict]) -> tuple[str, str]:
    """(setting name, the rule that chose it)."""
    ok = {k: v for k, v in results.items() if v["abs_tau"] is not None}
    bar = max(v["abs_tau"] for v in ok.values()) - 0.01
    rule = "cheapest with mean |tau| >= the best mean |tau| - 0.01"
    if "default" in ok:
        bar = max(bar, ok["default"]["abs_tau"])
        rule += ", and >= the default sizes' mean |tau|"
    fit = [k for k, v in ok.items() if v["abs_tau"] >= bar]
    return min(fit, key=lambda k: ok[k]["seconds_per_arch_median"]), rule


def plot(results: dict[str, dict], chosen: str, fast: str | None, path: Path, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, r in results.items():
        if r["abs_tau"] is None:
            continue
        colour = "tab:red" if name == fast else "tab:orange" if name == chosen else "tab:blue"
        ax.scatter(r["seconds_per_arch_median"], r["abs_tau"], color=colour, zorder=3)
        ax.annotate(
            name,
            (r["seconds_per_arch_median"], r["abs_tau"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 3),
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds per architecture ({where}; median)", fontsize=9)
    ax.set_ylabel(f"|Kendall tau| of {METRIC} with trained test loss")
    ax.set_title(
        f"{METRIC}: cost against ranking quality (red: --fast; orange: the rule's pick)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _where(run: dict) -> str:
    threads = run["torch_threads"]
    if run.get("clock") == "cpu":
        return f"{run['device']}, CPU seconds of {threads} thread{'s' * (threads > 1)}"
    return f"{run['device']}, {threads} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=SHARED / "nasbench_nlp_wt2" / "logs.zip")
    parser.add_argument("--corpus", type=Path, default=SHARED / "ptb")
    parser.add_argument("--limit", type=int, default=0, help="first N OK logs (0: all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma list of names")
    parser.add_argument("--seeds", type=int, default=1, help="initialisation seeds 0..S-1")
    parser.add_argument(
        "--replot", type=Path, default=None, help="only redraw the PNG of this earlier JSON"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="seconds as elapsed time or as this process's CPU time (steadier on a shared "
        "machine, with --threads 1)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "out")
    parser.add_argument("--out-name", default="fast_mode", help="stem of the JSON and PNG")
    parser.add_argument(
        "--taus-from", type=Path, default=None, help="take tau and rho from this earlier JSON"
    )
    parser.add_argument(
        "--default-from",
        type=Path,
        default=None,
        help="with --taus-from: the default sizes' tau from this reproduce_hidden_cov.py JSON "
        "(all logs, seed 0) when the earlier run did not score them",
    )
    args = parser.parse_args()

    if args.replot is not None:
        done = json.loads(args.replot.read_text())
        png = args.replot.with_suffix(".png")
        plot(done["settings"], done["rule_pick"], done["fast_setting"], png, _where(done))
        print(f"saved {png}")
        return
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown settings {unknown} (known: {', '.join(SETTINGS)})")
    if not (args.corpus / "test.txt").is_file():
        sys.exit(f"error: PTB corpus not found at {args.corpus}")
    logs = [log for log in read_logs(args.logs) if log.ok]
    logs = logs[: args.limit] if args.limit else logs
    corpus = load_corpus(args.corpus, "test")
    scorers = {}
    for name in names:
        e, h, b, t = SETTINGS[name]
        for seed in range(args.seeds):
            setup = ScoringSetup(
                metrics=(METRIC,),
                embedding_size=e,
                hidden_size=h,
                num_layers=3,
                batch_size=b,
                bptt=t,
                seed=seed,
                device=args.device,
            )
            scorers[name, seed] = BatchedScorer(setup, corpus)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    warm_up = Candidate("", json.loads(logs[0].recipe_json))
    for scorer in scorers.values():  # first-call costs (lazy imports, allocations) untimed
        scorer.score(warm_up)
    load_before = os.getloadavg()[0]
    rows: dict[tuple[str, int], list[dict]] = {key: [] for key in scorers}
    for i, log in enumerate(logs):
        candidate = Candidate("", json.loads(log.recipe_json))
        for key, scorer in scorers.items():
            start = clock()
            ev = scorer.score(candidate)
            seconds = clock() - start
            rows[key].append(
                {
                    "log": log.name,
                    "test_loss": log.final_test_loss,
                    METRIC: ev.metrics.get(METRIC, math.nan),
                    f"{METRIC}_seconds": seconds,
                }
            )
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(logs)} logs", flush=True)

    results = {}
    for name in names:
        per_seed = []
        for seed in range(args.seeds):
            frame = pd.DataFrame(rows[name, seed])
            per_seed.append(correlations(frame, (METRIC,))[METRIC])
        seconds = pd.DataFrame(rows[name, 0])[f"{METRIC}_seconds"].to_numpy(dtype=float)
        taus = [c["kendall_tau"] for c in per_seed]
        tau = None if None in taus else statistics.fmean(taus)
        e, h, b, t = SETTINGS[name]
        results[name] = {
            "embedding_size": e,
            "hidden_size": h,
            "batch_size": b,
            "bptt": t,
            "kendall_tau": tau,
            "kendall_tau_sd_over_seeds": (
                statistics.stdev(taus) if tau is not None and len(taus) > 1 else None
            ),
            "kendall_tau_per_seed": taus,
            "abs_tau": None if tau is None else abs(tau),
            "spearman_rho": statistics.fmean(c["spearman_rho"] for c in per_seed),
            "n": per_seed[0]["n"],
            "failed": max(c["failed"] for c in per_seed),
            "seconds_per_arch_median": float(statistics.median(seconds)),
            "seconds_per_arch_mean": float(statistics.fmean(seconds)),
        }
    if args.taus_from is not None:
        earlier = json.loads(args.taus_from.read_text())
        if "default" in results and "default" not in earlier["settings"]:
            if args.default_from is None:
                sys.exit("error: the earlier run has no default sizes: pass --default-from")
            ref = json.loads(args.default_from.read_text())
            ref = ref["inputs"]["ptb_test"]["correlations"][METRIC]
            tau = ref["kendall_tau"]
            earlier["settings"]["default"] = {
                "kendall_tau": tau,
                "kendall_tau_sd_over_seeds": None,
                "kendall_tau_per_seed": [tau],
                "abs_tau": abs(tau),
                "spearman_rho": ref["spearman_rho"],
                "n": ref["n"],
                "failed": ref["failed"],
            }
        for name, r in results.items():
            old = earlier["settings"][name]
            for field in (
                "kendall_tau",
                "kendall_tau_sd_over_seeds",
                "kendall_tau_per_seed",
                "abs_tau",
                "spearman_rho",
                "n",
                "failed",
            ):
                r[field] = old.get(field)  # a single-seed run has no spread
            r["taus_from"] = str(args.taus_from)
            r["timed_logs"] = len(logs)
    chosen, rule = choose(results)
    fast = next(
        (
            name
            for name, (e, h, b, t) in SETTINGS.items()
            if (e, h, b, t)
            == (
                FAST_SIZES.embedding_size,
                FAST_SIZES.hidden_size,
                FAST_SIZES.batch_size,
                FAST_SIZES.bptt,
            )
        ),
        None,
    )
    if "default" in results:
        base = results["default"]["seconds_per_arch_median"]
        for r in results.values():
            r["cost_vs_default"] = r["seconds_per_arch_median"] / base
    out = {
        "metric": METRIC,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "clock": args.clock,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "logs": len(logs),
        "seeds": args.seeds,
        "rule_pick": chosen,
        "rule": rule,
        "fast_setting": fast,
        "settings": results,
    }
    print(f"{'setting':<20} {'tau':>7} {'sd':>6} {'rho':>7} {'n':>4} {'fail':>4} {'s/arch':>8}")
    for name, r in results.items():
        mark = ("  <- --fast" if name == fast else "") + ("  <- rule" if name == chosen else "")
        sd = r["kendall_tau_sd_over_seeds"]
        print(
            f"{name:<20} {r['kendall_tau'] or math.nan:>7.3f} {sd or math.nan:>6.3f}"
            f" {r['spearman_rho'] or math.nan:>7.3f} {r['n']:>4} {r['failed']:>4}"
            f" {r['seconds_per_arch_median']:>8.4f}{mark}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"{args.out_name}.json", args.out / f"{args.out_name}.png"
    json_path.write_text(json.dumps(out, indent=2) + "\n")
    plot(results, chosen, fast, png_path, _where(out))
    print(f"saved {json_path} and {png_path}")


if __name__ == "__main__":
    main()
