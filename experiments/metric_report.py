"""The reproduction report: every RNN metric against trained loss on NAS-Bench-NLP.

    python experiments/metric_report.py [--metrics all] [--sizes default|fast] [--limit N]
        [--ablations batches,seeds,corpus] [--repeats 10] [--device cpu|cuda]

For each OK WikiText-2 log, each metric is scored (seed 0, the first batch of the PTB test
text) and correlated with the final test loss: Kendall tau and Spearman rho with n and
failures, seconds per architecture per metric, and the whole suite's seconds per architecture
(all metrics on one probe, sharing passes). Ablations, each as mean and standard deviation of
Kendall tau over ``--repeats`` runs:

- batches: the input is the first (T x B) batch of the text starting at token i * T * B;
- seeds: the initialisation seed is i;
- corpus: PTB test text against the embedded synthetic corpus (one run each).

Each ablation run's scores are kept in OUT/runs/<run>.csv, written every ``CHUNK`` logs.
``--resume`` reuses them: a stopped run goes on where it stopped, and a larger ``--limit``
scores only the logs that are new (it refuses runs made with other settings).

Writes OUT/metric_report.json, OUT/metric_report.md and OUT/scatter_grid.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas_engine.benchmarks.correlate import correlations
from nas_engine.benchmarks.nbnlp import BenchmarkSettings, read_logs, score_logs
from nas_engine.corpus import Corpus, embedded_corpus, load_corpus
from nas_engine.metrics import metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZES = {
    "default": {"embedding_size": None, "hidden_size": None, "batch_size": 50, "bptt": 70},
    "fast": {"embedding_size": 48, "hidden_size": 64, "batch_size": 25, "bptt": 35},
}


def shifted(corpus: Corpus, split: str, offset: int) -> Corpus:
    """The same corpus with ``split`` starting ``offset`` tokens later."""
    splits = dict(corpus.splits)
    splits[split] = corpus.splits[split][offset:]
    return Corpus(f"{corpus.description} from token {offset}", corpus.vocab, splits)


def score_run(store: RunStore, run: str, logs, corpus: Corpus, settings: BenchmarkSettings) -> None:
    """Score one ablation run into its CSV (a worker's job with ``--jobs``)."""
    store.scores(run, logs, corpus, settings)


def suite_seconds(logs, corpus: Corpus, settings: BenchmarkSettings, n: int) -> float | None:
    """Median seconds to score all metrics on one probe (shared passes), over n logs."""
    ok = [log for log in logs if log.ok][:n]
    if not ok:
        return None
    setup = settings.setup_for(ok[0], settings.metrics)
    scorer = Scorer(setup, corpus)
    seconds = []
    for log in ok:
        start = time.perf_counter()
        scorer.score(Candidate("", json.loads(log.recipe_json)))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


CHUNK = 20  # logs scored between two writes of a run's scores


class RunStore:
    """The per-log scores of each ablation run, one CSV per run under ``folder``."""

    def __init__(self, folder: Path, settings: BenchmarkSettings, resume: bool) -> None:
        self.folder = folder
        stamp = json.dumps({k: v for k, v in settings.__dict__.items()}, default=str)
        stamp_path = folder / "settings.json"
        if resume and stamp_path.exists() and stamp_path.read_text() != stamp:
            raise SystemExit(
                f"error: {folder} holds runs made with other settings "
                f"({stamp_path.read_text()}); use another --out or drop --resume"
            )
        if not resume:
            for old in folder.glob("*.csv"):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        stamp_path.write_text(stamp)

    def scores(self, run: str, logs, corpus: Corpus, settings: BenchmarkSettings) -> pd.DataFrame:
        """The run's scores for the OK ``logs``, scoring only those not yet on disk."""
        path = self.folder / f"{run}.csv"
        done = pd.read_csv(path) if path.exists() else pd.DataFrame({"log": []})
        have = set(done["log"])
        todo = [log for log in logs if log.ok and log.name not in have]
        # The metrics share one probe: only the values are needed here, and they are the same.
        together = replace(settings, together=True)
        for start in range(0, len(todo), CHUNK):
            fresh = score_logs(todo[start : start + CHUNK], corpus, together)
            # Together, every metric's seconds are the probe's: keep them once.
            fresh = fresh[
                ["log", "test_loss", *settings.metrics, *(f"{m}_error" for m in settings.metrics)]
            ].assign(seconds=fresh[f"{settings.metrics[0]}_seconds"])
            done = pd.concat([done, fresh], ignore_index=True) if len(done) else fresh
            done.to_csv(path, index=False)
        wanted = {log.name for log in logs if log.ok}
        return done[done["log"].isin(wanted)].reset_index(drop=True)

    def taus(
        self, run: str, logs, corpus: Corpus, settings: BenchmarkSettings
    ) -> dict[str, float | None]:
        corr = correlations(self.scores(run, logs, corpus, settings), settings.metrics)
        return {m: c["kendall_tau"] for m, c in corr.items()}


def mean_std(values: list[float | None]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(finite) if finite else None,
        "std": statistics.stdev(finite) if len(finite) > 1 else None,
        "runs": len(finite),
    }


def scatter_grid(scores, corr: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(corr)
    cols = 4
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = scores[name].to_numpy(dtype=float)
        finite = np.isfinite(values)
        ax.scatter(values[finite], scores["test_loss"][finite], s=5, alpha=0.5)
        if finite.any() and np.nanmax(np.abs(values[finite])) > 1e4:
            ax.set_xscale("symlog")
        tau = corr[name]["kendall_tau"]
        ax.set_title(f"{name}  tau={tau:+.3f}" if tau is not None else name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.supylabel("final WikiText-2 test loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default=str(SHARED / "nasbench_nlp_wt2" / "logs.zip"))
    parser.add_argument("--ptb", default=str(SHARED / "ptb"))
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--sizes", choices=tuple(SIZES), default="default")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--ablations", default="batches,seeds,corpus")
    parser.add_argument("--ablation-metrics", default=None, help="default: the same metrics")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--suite-n", type=int, default=40, help="logs timed for the suite")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--ablations-only",
        action="store_true",
        help="skip the main table, its scatter grid and the suite timing (for an ablation run)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes scoring ablation runs side by side"
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse the ablation scores already in OUT/runs"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "metric_report"))
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    unknown = set(filter(None, args.ablations.split(","))) - {"batches", "seeds", "corpus"}
    if unknown:
        parser.error(f"unknown ablations {sorted(unknown)}: choose from batches, seeds, corpus")
    for path in (args.logs, args.ptb):
        if not Path(path).exists():
            print(f"error: {path} not found (the shared reference data)", file=sys.stderr)
            return 2

    metrics = tuple(metric_names("rnn") if args.metrics == "all" else args.metrics.split(","))
    logs = read_logs(args.logs)[: args.limit]
    ptb = load_corpus(args.ptb, "test")
    settings = BenchmarkSettings(metrics=metrics, device=args.device, **SIZES[args.sizes])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    report: dict = {
        "logs_ok": sum(1 for log in logs if log.ok),
        "sizes": args.sizes,
        "settings": {k: v for k, v in settings.__dict__.items()},
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "correlations": {},
        "suite_seconds_per_arch": None,
        "ablations": {},
    }
    if not args.ablations_only:
        scores = score_logs(logs, ptb, settings)
        scores.to_csv(out / "scores.csv", index=False)
        report["logs_ok"] = int(len(scores))
        report["correlations"] = corr = correlations(scores, metrics)
        scatter_grid(scores, corr, out / "scatter_grid.png")
        report["suite_seconds_per_arch"] = suite_seconds(logs, ptb, settings, args.suite_n)
        print(f"{'metric':<26}{'tau':>8}{'rho':>8}{'n':>5}{'fail':>5}{'s/arch':>8}")
        for m, c in corr.items():
            tau = "nan" if c["kendall_tau"] is None else f"{c['kendall_tau']:+.3f}"
            rho = "nan" if c["spearman_rho"] is None else f"{c['spearman_rho']:+.3f}"
            print(
                f"{m:<26}{tau:>8}{rho:>8}{c['n']:>5}{c['failed']:>5}{c['seconds_per_arch']:>8.3f}"
            )
        print(f"whole suite: {report['suite_seconds_per_arch']:.3f} s/arch")

    ablation_metrics = tuple(args.ablation_metrics.split(",")) if args.ablation_metrics else metrics
    ab_settings = replace(settings, metrics=ablation_metrics)
    wanted = [a for a in args.ablations.split(",") if a]

    def save() -> None:  # after every run, so a long ablation loses nothing when stopped
        (out / "metric_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

    # Batch 0, seed 0 and the PTB side of the corpus ablation are one and the same run.
    # Batches and seeds alternate, so a report stopped early still has both, with fewer repeats.
    step = ab_settings.batch_size * ab_settings.bptt
    # No ablation asked for (the main table alone): nothing planned, the runs on disk left alone.
    planned: dict[str, tuple[Corpus, BenchmarkSettings]] = (
        {"first": (ptb, ab_settings)} if wanted else {}
    )
    for i in range(1, args.repeats):
        if "batches" in wanted:
            planned[f"batches_{i}"] = (shifted(ptb, "test", i * step), ab_settings)
        if "seeds" in wanted:
            planned[f"seeds_{i}"] = (ptb, replace(ab_settings, seed=i))
    if "corpus" in wanted:
        planned["embedded"] = (embedded_corpus(), ab_settings)
    store = RunStore(out / "runs", ab_settings, args.resume) if planned else None

    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else nullcontext() as pool:
        # Submitted in the order the report reads them, so the first results come first.
        pending = {
            run: pool.submit(score_run, store, run, logs, *planned[run])
            for run in (planned if pool is not None else ())
        }
        run_taus: dict[str, dict[str, float | None]] = {}

        def taus_of(run: str) -> dict[str, float | None]:
            if run not in run_taus:
                if run in pending:
                    pending[run].result()
                run_taus[run] = store.taus(run, logs, *planned[run])
            return run_taus[run]

        for i in range(args.repeats):
            for kind in ("batches", "seeds"):
                if kind not in wanted:
                    continue
                done = [taus_of(f"{kind}_{j}" if j else "first") for j in range(i + 1)]
                report["ablations"][kind] = {
                    m: {**mean_std([r[m] for r in done]), "taus": [r[m] for r in done]}
                    for m in ablation_metrics
                }
                save()
                print(f"{kind} {i + 1}/{args.repeats} done", flush=True)
        if "corpus" in wanted:
            report["ablations"]["corpus"] = {
                "ptb_test": taus_of("first"),
                "embedded": taus_of("embedded"),
            }
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    save()
    (out / "metric_report.md").write_text(markdown(report))
    print(f"wrote {out / 'metric_report.json'}, .md and scatter_grid.png")
    return 0


def _fmt(v: float | None, sign: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.3f}" if sign else f"{v:.3f}"


def markdown(report: dict) -> str:
    lines = [
        f"Sizes: {report['sizes']}; {report['logs_ok']} OK logs; device {report['device']}; "
        f"whole suite {_fmt(report['suite_seconds_per_arch'], False)} s/arch.",
        "",
        "| metric | Kendall tau | Spearman rho | n | failed | s/arch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m, c in report["correlations"].items():
        lines.append(
            f"| {m} | {_fmt(c['kendall_tau'])} | {_fmt(c['spearman_rho'])} | {c['n']} | "
            f"{c['failed']} | {_fmt(c['seconds_per_arch'], False)} |"
        )
    ab = report["ablations"]
    if "batches" in ab or "seeds" in ab:
        lines += ["", "| metric | tau over batches (mean ± sd) | tau over seeds (mean ± sd) |"]
        lines.append("| --- | --- | --- |")
        names = list(ab.get("batches") or ab.get("seeds"))
        for m in names:
            cells = []
            for kind in ("batches", "seeds"):
                e = ab.get(kind, {}).get(m)
                cells.append(f"{_fmt(e['mean'])} ± {_fmt(e['std'], False)}" if e else "n/a")
            lines.append(f"| {m} | {cells[0]} | {cells[1]} |")
    if "corpus" in ab:
        lines += ["", "| metric | tau, PTB text | tau, embedded synthetic |", "| --- | --- | --- |"]
        for m, v in ab["corpus"]["ptb_test"].items():
            lines.append(f"| {m} | {_fmt(v)} | {_fmt(ab['corpus']['embedded'][m])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
