"""The benchmark command: ``python -m nas_engine.benchmark nbnlp|nbbert``."""

from __future__ import annotations

import argparse
import sys

from ..benchmarks.nbbert import run_nbbert
from ..benchmarks.nbnlp_command import run_nbnlp
from ..config import ConfigError
from .options import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    OneLineParser,
    add_model_options,
    positive_int,
)


def benchmark_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m nas_engine.benchmark",
        description="Score benchmark architectures and correlate each metric with trained results.",
    )
    sub = p.add_subparsers(dest="benchmark", required=True)
    nb = sub.add_parser(
        "nbnlp",
        help="NAS-Bench-NLP logs: correlate metrics with the final test loss",
        description="Score every OK architecture of NAS-Bench-NLP training logs and correlate "
        "each metric with the final test loss (last element of test_losses).",
    )
    nb.add_argument(
        "--logs",
        required=True,
        metavar="PATH",
        help="a zip of logs or a folder of the benchmark's JSON files",
    )
    _add_benchmark_input_options(nb, "first batch is")
    nb.add_argument(
        "--metrics",
        default="hidden_cov,params",
        help="comma-separated metrics or fitness specs (METRIC[:W]+METRIC..., scored as "
        "--fitness ranks them; each a column and a correlation) (default: %(default)s); 'all' "
        "for every RNN metric",
    )
    nb.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="only the first N logs (sorted by file name)",
    )
    nb.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: runs/nbnlp-TIME)"
    )
    nb.add_argument(
        "--seed", type=int, default=0, help="network initialisation seed (default: %(default)s)"
    )
    nb.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    nb.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_options(nb, defaults_from_logs=True)
    add_nbbert_parser(sub)
    return p


def _add_benchmark_input_options(nb: argparse.ArgumentParser, what: str) -> None:
    nb.add_argument(
        "--corpus",
        default=None,
        metavar="PATH",
        help="text scored as input (folder or file); default: the embedded synthetic corpus",
    )
    nb.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default="test",
        help=f"corpus split whose {what} scored (default: %(default)s)",
    )
    nb.add_argument(
        "--together",
        action="store_true",
        help="score all metrics in one probe (shared passes; seconds are for the whole set)",
    )


def add_nbbert_parser(sub: argparse._SubParsersAction) -> None:
    nb = sub.add_parser(
        "nbbert",
        help="NAS-Bench-BERT: correlate metrics with the GLUE score",
        description="Score every entry of a NAS-Bench-BERT JSON file (a list of entries with "
        "hparams.model_hparam_overrides and scores.glue) and correlate each metric with GLUE.",
    )
    nb.add_argument(
        "--benchmark",
        required=True,
        dest="benchmark_file",  # "benchmark" names the subcommand
        metavar="PATH",
        help="the benchmark's JSON",
    )
    _add_benchmark_input_options(nb, "first tokens are")
    nb.add_argument(
        "--metrics",
        default="head_confidence,params,nonembedding_params",
        help="comma-separated metrics or fitness specs (METRIC[:W]+METRIC..., scored as "
        "--fitness ranks them; each a column and a correlation) (default: %(default)s); 'all' "
        "for every BERT metric",
    )
    nb.add_argument(
        "--restrict",
        default=None,
        metavar="SPEC",
        help="score only the entries inside this restriction (as search --restrict)",
    )
    nb.add_argument(
        "--network",
        choices=("as-trained", "literal", "paper-notebook"),
        default="as-trained",
        help="the networks scored: as-trained (those whose GLUE scores are recorded), "
        "paper-notebook (those the paper computed its metrics on) or literal (the space as "
        "labelled) (default: %(default)s; docs/bert.md)",
    )
    nb.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="only the first N entries"
    )
    nb.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: runs/nbbert-TIME)"
    )
    nb.add_argument(
        "--seed", type=int, default=0, help="network initialisation seed (default: %(default)s)"
    )
    nb.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    nb.add_argument("--no-progress", action="store_true", help="no progress bar")
    nb.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="sequences in the scoring batch (default: %(default)s)",
    )
    nb.add_argument(
        "--bptt",
        type=positive_int,
        default=64,
        help="tokens per sequence, also the position-embedding rows (default: %(default)s)",
    )


def benchmark_main(argv: list[str] | None = None) -> int:
    args = benchmark_parser().parse_args(argv)

    try:
        return run_nbbert(args) if args.benchmark == "nbbert" else run_nbnlp(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
