"""NAS-Bench-BERT: reading the benchmark's JSON, scoring its entries, correlating with GLUE.

``python -m nas_engine.benchmark nbbert --benchmark PATH.json`` prints the same table and
writes the same files as ``nbnlp`` (``correlations.json``, ``scores.csv``, ``run.json``, one
scatter plot per metric), with ``scores.glue`` (higher is better) as the target: a metric
that predicts GLUE has a positive tau. ``--metrics`` takes fitness specs beside metric names
(``head_confidence:2+params``; :mod:`.specs`): each is a column and a correlation like a
metric.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from search_spaces.bert import BertConfig, BertConfigError, parse_restriction

from ..config import ConfigError
from ..corpus import Corpus, CorpusError, embedded_corpus, load_corpus
from ..devices import resolve_device
from ..result import Candidate
from ..scoring import Scorer, ScoringSetup
from .correlate import correlations, print_correlations, scatter_plots
from .specs import add_spec_columns, parse_metric_columns

TARGET = "glue"


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read; one line for the user."""


@dataclass(frozen=True)
class BenchmarkEntry:
    """One NAS-Bench-BERT entry: the configuration and its trained scores."""

    id: int
    config: BertConfig
    glue: float
    scores: dict
    time_to_train: float | None

    @classmethod
    def from_dict(cls, index: int, d: dict) -> BenchmarkEntry:
        where = (
            f"entry {index} (id {d.get('id', '?')})" if isinstance(d, dict) else f"entry {index}"
        )
        if not isinstance(d, dict):
            raise BenchmarkError(f"{where}: not a JSON object")
        try:
            overrides = d["hparams"]["model_hparam_overrides"]
            glue = float(d["scores"]["glue"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchmarkError(f"{where}: not a NAS-Bench-BERT entry (missing {exc})") from None
        try:
            config = BertConfig.from_dict(overrides)
        except BertConfigError as exc:
            raise BenchmarkError(f"{where}: {exc}") from None
        ttt = d.get("time_to_train")
        return cls(int(d.get("id", index)), config, glue, dict(d["scores"]), ttt)


def read_benchmark(path: str | Path) -> list[BenchmarkEntry]:
    """Every completed entry with a GLUE score (a JSON list, the benchmark's format)."""
    file = Path(path)
    if not file.is_file():
        raise BenchmarkError(f"benchmark file {str(file)!r} does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"cannot read {str(file)!r}: {exc}") from None
    if not isinstance(data, list):
        raise BenchmarkError(f"{str(file)!r} is not a JSON list of NAS-Bench-BERT entries")
    entries = [
        BenchmarkEntry.from_dict(i, d)
        for i, d in enumerate(data)
        if not (isinstance(d, dict) and d.get("completed") is False)
    ]
    entries = [e for e in entries if math.isfinite(e.glue)]
    if not entries:
        raise BenchmarkError(f"no completed NAS-Bench-BERT entry in {str(file)!r}")
    return entries


@dataclass(frozen=True)
class BertBenchmarkSettings:
    metrics: tuple[str, ...] = ("head_confidence", "params", "nonembedding_params")
    batch_size: int = 16
    length: int = 64
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    together: bool = False  # one probe for all metrics (shared passes) instead of one each
    # The networks scored: the ones whose GLUE scores the benchmark records, by default.
    network: str = "as-trained"

    def setup(self, metrics: tuple[str, ...]) -> ScoringSetup:
        return ScoringSetup(
            space="bert",
            metrics=metrics,
            network=self.network,
            batch_size=self.batch_size,
            bptt=self.length,
            split=self.split,
            seed=self.seed,
            device=self.device,
        )


def score_entries(
    entries: list[BenchmarkEntry],
    corpus: Corpus,
    settings: BertBenchmarkSettings,
    on_progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """One row per entry: GLUE, the configuration's family, and per metric its value (NaN when
    it failed), its error and its seconds. By default each metric is scored on its own, so its
    seconds are what it alone costs; ``together`` shares the passes and gives every metric the
    seconds of the whole set."""
    groups = [settings.metrics] if settings.together else [(m,) for m in settings.metrics]
    scorers = {g: Scorer(settings.setup(g), corpus) for g in groups}
    rows = []
    for entry in entries:
        row: dict = {
            "id": entry.id,
            "arch_id": entry.config.key,
            TARGET: entry.glue,
            "hidden_size": entry.config.hidden_size,
            "num_layers": entry.config.num_layers,
            "operations": "/".join(x.operation for x in entry.config.layers),
        }
        for group, scorer in scorers.items():
            evaluation = scorer.score(Candidate(entry.config.key, entry.config.to_dict()))
            for metric in group:
                row[metric] = evaluation.metrics.get(metric, math.nan)
                row[f"{metric}_error"] = evaluation.error or ""
                row[f"{metric}_seconds"] = evaluation.seconds
            row.update(evaluation.details)
        rows.append(row)
        if on_progress is not None:
            on_progress()
    return pd.DataFrame(rows)


def run_nbbert(args: argparse.Namespace) -> int:
    chosen = parse_metric_columns(args.metrics, "bert")
    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        restriction = parse_restriction(args.restrict)
    except ValueError as exc:
        raise ConfigError(f"--restrict: {exc}") from None
    out = Path(args.out or f"runs/nbbert-{datetime.now():%Y%m%d-%H%M%S}")
    if out.exists() and (out / "correlations.json").exists():
        raise ConfigError(f"--out {str(out)!r} already holds benchmark results; choose a new --out")
    try:
        entries = read_benchmark(args.benchmark_file)
    except BenchmarkError as exc:
        raise ConfigError(str(exc)) from None
    read = len(entries)
    if not restriction.is_whole_space:
        entries = [e for e in entries if restriction.contains(e.config)]
    if args.limit is not None:
        entries = entries[: args.limit]
    if not entries:
        raise ConfigError("no benchmark entry inside the restriction")
    try:
        corpus = load_corpus(args.corpus, args.split) if args.corpus else embedded_corpus()
        settings = BertBenchmarkSettings(
            metrics=chosen.metrics,
            batch_size=args.batch_size,
            length=args.bptt,
            split=args.split,
            seed=args.seed,
            device=args.device,
            together=args.together,
            network=args.network,
        )
        Scorer(settings.setup(()), corpus)  # the batch: a corpus too short fails here
    except CorpusError as exc:
        raise ConfigError(str(exc)) from None

    print(f"corpus: {corpus.description}", file=sys.stderr)
    print(
        f"entries: {read} read, {len(entries)} scored"
        + ("" if restriction.is_whole_space else f" (inside the restriction {args.restrict})"),
        file=sys.stderr,
    )
    started = time.perf_counter()
    with tqdm(total=len(entries), unit="arch", disable=args.no_progress, file=sys.stderr) as bar:
        scores = score_entries(entries, corpus, settings, on_progress=lambda: bar.update(1))
    scores = add_spec_columns(scores, chosen, together=settings.together)
    corr = correlations(scores, chosen.columns, target=TARGET)

    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    (out / "correlations.json").write_text(json.dumps(corr, indent=2) + "\n")
    meta = {
        "benchmark": str(args.benchmark_file),
        "entries_read": read,
        "entries_scored": len(entries),
        "restriction": None if restriction.is_whole_space else restriction.to_dict(),
        "corpus": corpus.description,
        "vocabulary": len(corpus.vocab),
        "settings": settings.__dict__,
        "columns": list(chosen.columns),
        "specs": chosen.describe(),
        "target": f"scores.{TARGET} (higher is better)",
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    plots = scatter_plots(scores, corr, out, target=TARGET)
    print_correlations(corr, out, len(plots))
    return 0
