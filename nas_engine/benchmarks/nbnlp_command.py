"""The ``nbnlp`` benchmark command: score logs, print the table, write the files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from ..config import ConfigError
from ..corpus import CorpusError, embedded_corpus, first_batch, load_corpus
from ..devices import resolve_device
from .correlate import correlations, print_correlations, scatter_plots
from .nbnlp import BenchmarkSettings, LogsError, read_logs, score_logs
from .specs import add_spec_columns, parse_metric_columns


def run_nbnlp(args: argparse.Namespace) -> int:
    chosen = parse_metric_columns(args.metrics, "rnn")
    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        logs = read_logs(args.logs)
    except LogsError as exc:
        raise ConfigError(str(exc)) from None
    if args.limit is not None:
        logs = logs[: args.limit]
    try:
        corpus = load_corpus(args.corpus, args.split) if args.corpus else embedded_corpus()
        first_batch(corpus.split(args.split), args.batch_size, args.bptt)
    except CorpusError as exc:
        raise ConfigError(str(exc)) from None
    out = Path(args.out or f"runs/nbnlp-{datetime.now():%Y%m%d-%H%M%S}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a folder")
    if out.exists() and (out / "correlations.json").exists():
        raise ConfigError(f"--out {str(out)!r} already holds benchmark results; choose a new --out")
    if not any(log.ok for log in logs):
        raise ConfigError(
            f"{str(args.logs)!r} holds no usable log (status OK with a finite final test loss)"
        )
    try:  # before the work, so that a folder that cannot be made is said at once
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r} cannot be created: {exc.strerror or exc}") from None

    settings = BenchmarkSettings(
        metrics=chosen.metrics,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        batch_size=args.batch_size,
        bptt=args.bptt,
        init_gain=args.init_gain,
        split=args.split,
        seed=args.seed,
        device=args.device,
        together=args.together,
    )
    ok = [log for log in logs if log.ok]
    print(f"corpus: {corpus.description}", file=sys.stderr)
    print(
        f"logs: {len(logs)} read, {len(ok)} OK, {len(logs) - len(ok)} skipped (status not OK)",
        file=sys.stderr,
    )
    started = time.perf_counter()
    with tqdm(total=len(ok), unit="arch", disable=args.no_progress, file=sys.stderr) as bar:
        scores = score_logs(logs, corpus, settings, on_progress=lambda: bar.update(1))
    scores = add_spec_columns(scores, chosen, together=settings.together)
    corr = correlations(scores, chosen.columns)

    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    (out / "correlations.json").write_text(json.dumps(corr, indent=2) + "\n")
    meta = {
        "logs": str(args.logs),
        "logs_read": len(logs),
        "logs_ok": len(ok),
        "corpus": corpus.description,
        "settings": settings.__dict__,
        "columns": list(chosen.columns),
        "specs": chosen.describe(),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    plots = scatter_plots(scores, corr, out)
    print_correlations(corr, out, len(plots))
    return 0
