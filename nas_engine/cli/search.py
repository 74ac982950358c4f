"""The search command: ``python -m nas_engine.search``.

Parsing turns argv into a typed config; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..config import FAST_SIZES, ConfigError, SearchConfig
from ..executors import EXECUTORS
from ..metrics import metric_names, metrics_of
from ..plugins import load_plugins
from ..spaces import load_space, space_names
from ..strategies import STRATEGIES
from .display import run_with_progress
from .options import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    OneLineParser,
    add_model_options,
    positive_float,
    positive_int,
)


def search_parser() -> argparse.ArgumentParser:
    d = SearchConfig()
    p = OneLineParser(
        prog="python -m nas_engine.search",
        description="Training-free neural architecture search: score architectures with a "
        "training-free metric and rank them.",
    )
    p.add_argument(
        "--space",
        default=d.space,
        help=f"search space: {', '.join(space_names())} (default: %(default)s)",
    )
    p.add_argument(
        "--network",
        default=None,
        help="the network family each architecture is built as, where the space has several "
        "(bert: as-trained, literal, paper-notebook; default: the space's, literal for bert; "
        "docs/bert.md)",
    )
    p.add_argument(
        "--restrict",
        default=None,
        metavar="SPEC",
        help="bert: sample and mutate only inside a restriction: FIELD=VALUE[|VALUE],... "
        "(e.g. hidden_size=256,num_layers=4), a .json/.toml file of allowed values per field, "
        "or a preset name (deep_wide); fields: hidden_size, num_layers, operation_type, "
        "operation_parameter, operation, num_operation_heads, feed_forward_dimension, "
        "num_feed_forward",
    )
    p.add_argument(
        "--fitness",
        default=None,
        help="metric to maximise, direction applied (default: the space's; rnn: hidden_cov, bert: "
        "head_confidence; see --list-metrics), "
        "or an ensemble METRIC[:WEIGHT]+METRIC... (e.g. hidden_cov:2+params): the weighted "
        "mean of each metric's rank percentile among the ok results (README: Ensemble fitness)",
    )
    p.add_argument(
        "--metrics",
        default="",
        help="extra metrics to record for every architecture, comma-separated, or 'all' for "
        "every training-free metric of the space (as in benchmark); one that fails is recorded "
        "as null with its reason, never failing the architecture",
    )
    p.add_argument(
        "--list-metrics", action="store_true", help="list the metrics with their direction and exit"
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="write no OUT/report.html and report.md at the end (python -m nas_engine.report "
        "OUT writes them later)",
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, here and in every worker: it registers metrics or spaces "
        "(repeatable; docs/extending.md)",
    )
    add_trust_options(p)
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="evolution (aging evolution, DEAP tournament selection), random, or nsga2 "
        "(multi-objective, with --objectives) (default: evolution; nsga2 with --objectives)",
    )
    p.add_argument(
        "--budget",
        type=positive_int,
        default=d.budget,
        help="architectures to evaluate (default: %(default)s)",
    )
    p.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="also stop proposing after this many seconds",
    )
    p.add_argument(
        "--population",
        type=positive_int,
        default=d.population,
        help="evolution: population size, also the number of initial random samples "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--tournament",
        type=positive_int,
        default=d.tournament,
        help="evolution: tournament size (default: %(default)s)",
    )
    p.add_argument(
        "--corpus",
        default=None,
        metavar="PATH",
        help="folder with train/valid/test.txt (or one text file); "
        "default: an embedded synthetic corpus",
    )
    p.add_argument(
        "--split",
        choices=("train", "valid", "test"),
        default=d.split,
        help="corpus split whose first batch is scored (default: %(default)s, as in the paper)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="results folder (default: runs/SPACE-FITNESS-STRATEGY-seedS-TIME)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed for the strategy and the network initialisation (default: %(default)s)",
    )
    p.add_argument("--device", default=d.device, help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument(
        "--top",
        type=positive_int,
        default=d.top_k,
        dest="top_k",
        metavar="K",
        help="architectures in the final table and summary (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_options(p)
    p.add_argument(
        "--fast",
        action="store_true",
        help=f"fast mode: E={FAST_SIZES.embedding_size}, H={FAST_SIZES.hidden_size}, "
        f"B={FAST_SIZES.batch_size}, T={FAST_SIZES.bptt} (about 1/40 of the default sizes' CPU "
        "time, ranking as well on NAS-Bench-NLP); a size option given explicitly still wins; "
        "on a CPU, add --worker-batch 16 --cell-batch for hidden_cov (about 1.2x faster)",
    )
    add_execution_options(p)
    add_proxy_options(p)
    return p


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    return values


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    d = SearchConfig()
    group = parser.add_argument_group(
        "trustworthy winners and multi-objective search (docs/trustworthy-winners.md)"
    )
    group.add_argument(
        "--stability-guard",
        action=argparse.BooleanOptionalAction,
        default=d.stability_guard,
        help="flag cells whose state runs away from a trained network's scale (the stress "
        "growth of each result's details exceeds --stability-threshold): they stay ok, flagged, "
        "and are kept out of the top, evolution's parents, the answer and the Pareto front "
        "(default: on)",
    )
    group.add_argument(
        "--stability-threshold",
        type=float,
        default=d.stability_threshold,
        metavar="X",
        help="the guard's limit on the stress growth, log10(largest state RMS / 10) over 10 "
        "steps of the first cell started from states of RMS 10 (default: %(default)s: a cell "
        "whose state grows tenfold is flagged)",
    )
    group.add_argument(
        "--answer-blend",
        type=float,
        default=d.answer_blend,
        metavar="W",
        help="with --confirm-top: the run's answer is the confirmed architecture with the best "
        "loss rank + W x fitness rank (default: %(default)s, the regret simulation's choice)",
    )
    group.add_argument(
        "--objectives",
        default=None,
        metavar="A,B[,C]",
        help="multi-objective search: NSGA-II (DEAP) over these 2 to 4 metrics, each with its "
        "direction or METRIC:min / METRIC:max (e.g. hidden_cov,params:min); writes the Pareto "
        "front, its hypervolume and pareto.png; replaces --fitness; --strategy random works too",
    )
    group.add_argument(
        "--reference-point",
        type=_float_list,
        default=None,
        metavar="V,V[,V]",
        help="the hypervolume's reference point, one value per objective in its own units "
        "(default: from the run's first --population ranked results)",
    )
    group.add_argument(
        "--max-params",
        type=positive_int,
        default=None,
        metavar="N",
        help="hard constraint: an architecture with more than N parameters fails",
    )


_FAST_FIELDS = ("embedding_size", "hidden_size", "batch_size", "bptt")


def _apply_fast(parser: argparse.ArgumentParser, args: argparse.Namespace, argv) -> None:
    """With ``--fast``, each size option not given on the command line takes the fast
    mode's value. argparse fills in a default only where the namespace has no value yet, so
    parsing again into a namespace holding a marker shows which options were given."""
    unset = object()
    given = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(_FAST_FIELDS, unset)))
    taken = load_space(args.space).size_defaults if args.space in space_names() else {}
    for name in _FAST_FIELDS:
        if getattr(given, name) is unset and (name in taken or name in ("batch_size", "bptt")):
            setattr(args, name, getattr(FAST_SIZES, name))


def add_proxy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trained proxy (--fitness trained_loss)")
    length = group.add_mutually_exclusive_group()
    length.add_argument(
        "--proxy-steps",
        type=positive_int,
        default=None,
        metavar="S",
        help="train each architecture S steps (batch x bptt of the scoring sizes) and score it "
        "by its validation loss (default: one epoch of the train split)",
    )
    length.add_argument(
        "--proxy-epochs",
        type=positive_float,
        default=None,
        metavar="E",
        help="instead of steps: E epochs of the train split",
    )
    group.add_argument(
        "--proxy-train-split",
        choices=("train", "valid"),
        default="train",
        help="split the proxy trains on (default: %(default)s); valid: its first 90%%, "
        "validated on the rest (for a corpus without train.txt, such as PTB here)",
    )


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution, resume and confirmation training")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="inprocess",
        help="inprocess (default) or ray: score on a pool of Ray workers",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="ray: join this cluster (default: start a local Ray instance sized to the machine)",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="ray: scoring workers (default: one per CPU, or as many as fit the GPUs)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=positive_float,
        default=0.0,
        metavar="F",
        help="ray: GPUs each worker requests; fractions share a GPU (0.25: four per GPU)",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="in-process scoring: torch threads (default: the cores other processes leave "
        "idle, at least 1, re-read every 5 s during the run; docs/performance.md)",
    )
    group.add_argument(
        "--worker-batch",
        type=positive_int,
        default=1,
        metavar="N",
        help="candidates scored per call (default 1): per Ray worker call, N in flight per "
        "worker, which shares Ray's cost per call when a score takes milliseconds (--fast); "
        "in-process and on Ray, a GPU overlaps a batch's forward passes on CUDA streams",
    )
    group.add_argument(
        "--cell-batch",
        action="store_true",
        help="rnn, with --worker-batch N: run the first layer of each batch's N cells together "
        "(search_spaces/rnn/batch.py), a few operations a step for all of them; for metrics "
        "that read only the first layer (hidden_cov); scores agree to float32 rounding",
    )
    group.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="rnn on CUDA: record each recurrence's step once as a CUDA graph and replay it "
        "(the same scores, a fraction of the kernel launches)",
    )
    group.add_argument(
        "--eval-timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="record an architecture as failed when scoring it takes more than S seconds",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out: nothing already scored is scored again",
    )
    group.add_argument(
        "--confirm-top",
        type=int,
        default=0,
        metavar="K",
        help="after the search, train the K best architectures (default: 0, none)",
    )
    group.add_argument(
        "--confirm-steps",
        type=positive_int,
        default=None,
        metavar="S",
        help="confirmation training: optimiser steps per architecture",
    )
    group.add_argument(
        "--confirm-epochs",
        type=positive_float,
        default=None,
        metavar="E",
        help="confirmation training: epochs over the train split (instead of steps)",
    )
    group.add_argument(
        "--confirm-corpus",
        default=None,
        metavar="PATH",
        help="corpus to train and evaluate on (default: the search's corpus)",
    )


def _list_metrics(space: str | None) -> str:
    lines = []
    for m in metrics_of(space):
        lines.append(f"{m.name:<16} {m.space:<5} {m.direction:<7} {m.description}")
    return "\n".join(lines)


def _extra_metrics(text: str, space: str) -> tuple[str, ...]:
    """``--metrics``: names, or ``all`` for every training-free metric of the space."""
    if text.strip() == "all":
        return tuple(metric_names(space)) if space in space_names() else ()
    return tuple(m.strip() for m in text.split(",") if m.strip())


def search_main(argv: list[str] | None = None) -> int:
    parser = search_parser()
    args = parser.parse_args(argv)
    try:  # before anything reads the spaces or metrics: a plugin may add to them
        load_plugins(args.plugin)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.fast:
        _apply_fast(parser, args, argv)
    if args.list_metrics:
        print(_list_metrics(None))
        return 0
    config = SearchConfig(
        space=args.space,
        restrict=args.restrict,
        fitness=args.fitness,
        strategy=args.strategy or ("nsga2" if args.objectives else SearchConfig().strategy),
        budget=args.budget,
        time_budget=args.time_budget,
        population=args.population,
        tournament=args.tournament,
        seed=args.seed,
        device=args.device,
        top_k=args.top_k,
        out=args.out,
        corpus=args.corpus,
        split=args.split,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        layers=args.layers,
        batch_size=args.batch_size,
        bptt=args.bptt,
        init_gain=args.init_gain,
        metrics=_extra_metrics(args.metrics, args.space),
        executor=args.executor,
        ray_address=args.ray_address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        eval_timeout=args.eval_timeout,
        worker_batch=args.worker_batch,
        cuda_graphs=args.cuda_graphs,
        cell_batch=args.cell_batch,
        resume=args.resume,
        confirm_top=args.confirm_top,
        confirm_steps=args.confirm_steps,
        confirm_epochs=args.confirm_epochs,
        confirm_corpus=args.confirm_corpus,
        proxy_steps=args.proxy_steps,
        proxy_epochs=args.proxy_epochs,
        proxy_train_split=args.proxy_train_split,
        stability_guard=args.stability_guard,
        stability_threshold=args.stability_threshold,
        answer_blend=args.answer_blend,
        objectives=tuple(o.strip() for o in (args.objectives or "").split(",") if o.strip()),
        reference_point=args.reference_point,
        max_params=args.max_params,
        plugins=tuple(args.plugin),
        network=args.network,
        report=not args.no_report,
        threads=args.threads,
    )
    if args.objectives is not None and args.fitness is not None:
        parser.error("--objectives replaces --fitness: give one of them")

    try:
        with _sigterm_as_interrupt():
            return run_with_progress(config, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated:
        print(
            "terminated: results so far are in the results folder (--resume continues)",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(
            "interrupted: results so far are in the results folder (--resume continues)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken like Ctrl-C: the run stops cleanly with its summary written."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and Ctrl-C stop the run cleanly, once: the first one raises (Terminated or
    KeyboardInterrupt) and both are ignored from then on, so that a second one cannot cut
    the summary short while it is written (SIGKILL still stops at once)."""

    stopping = []

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stopping.append(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        if not stopping:  # once stopping, a late second signal stays ignored until the exit
            for sig, handler in previous.items():
                signal.signal(sig, handler)
