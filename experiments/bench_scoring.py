"""Architectures scored per second: the engine against the straightforward way, in one run.

    python experiments/bench_scoring.py --space rnn --metric hidden_cov --n 40 --device cpu \\
        --json experiments/out/bench_scoring_cpu.json

On the same architectures (the "OK" recipes of the NAS-Bench-NLP logs, first N in sorted file
name order), at the benchmark's sizes (E=400, H=600, 3 layers, B=50, T=70; ``--fast`` for the
engine's fast mode sizes), PTB test input, seed 0:

- engine: ``BatchedScorer.score`` of one candidate (model build, forward, metric), the scorer
  (corpus, input batch, the seed's shared embedding) made once before the timing, as a search
  does;
- baseline (``hidden_cov`` only), the paper's way: the same model built (seed 0), autograd on,
  the cell graph interpreted node by node for every step of all 3 layers, the decoder run,
  then ``np.corrcoef`` and the general ``np.linalg.eig`` on the host
  (``nas_engine.analysis.bench``, as in bench_hidden_cov.py).

Engine and baseline alternate architecture by architecture after one untimed warm-up of each,
so load from other work on the machine falls on both alike; run it 2-3 times. numpy's and
scipy's BLAS run at one thread for the whole run (``--blas-threads``): torch's threads do the
parallel work, and OpenBLAS threads left spinning after the baseline's numpy calls otherwise
slow the engine's next score (the engine keeps them at one thread inside its scores; the
baseline was as fast either way, 0.84 vs 0.85 s on a 2-core Xeon). Other metrics
(``--metric all``: the whole training-free RNN suite, or a comma list) time the engine only
(the baseline fields are null). ``--batch K`` then scores all N again through
``score_batch``, K at a time (on CUDA their forwards overlap on streams), and reports
``engine_batched_archs_per_s`` and the largest difference to the one-at-a-time scores.
``--workers W`` times W spawned processes (each its own scorer on the device) scoring the N
architectures between them, as a search's Ray workers do: ``engine_workers_archs_per_s``.
``--cuda-graphs`` (CUDA) times a second scorer that records each recurrence's step as a CUDA
graph (``search_spaces/rnn/graphs.py``), one at a time and with ``--batch`` in batches:
``engine_graphs_archs_per_s`` and the largest difference to the plain engine's scores; the
``--workers`` processes then use it too, and ``--cell-batch`` times both of its ways once more
with the graphs.
``--cell-batch K`` times the first layer's forward (entering states) of the N architectures one
cell at a time against K cells at a time (``search_spaces/rnn/batch.py``), and then the whole
scores of all N once more through ``score_batch`` K at a time by a scorer that runs each
batch's first layers as one CellBatch (``ScoringSetup.cell_batch``; with ``--cuda-graphs`` a
second one replaying each CellBatch step as a CUDA graph): ``engine_cell_batch_archs_per_s``
and ``cell_batch_scoring`` with the largest difference to the one-at-a-time scores; the
``--workers`` processes then score that way too, in batches of K.
``--step-products`` scores the N architectures twice more, alternating, with every step
multiply on torch's ``mm``/``addmm`` and with oneDNN's on packed weights where the engine
uses them (float32 CPU, autograd off, at least ``PACKED_MIN_WORK`` multiply-adds per merged
multiply: the default sizes, not the fast mode's): ``step_products`` with ``packed_speedup``
and the largest difference between the two ways' scores.
``--forward`` also times the first layer's forward alone,
compiled against the interpreted path (the graph walked at every step), on the same
architectures.

``--space bert`` times the engine's BERT scoring (``--metric all``: the BERT suite, on one
probe) of the first N NAS-Bench-BERT configurations, B = 16 sequences of 64 PTB test tokens, as
the nbbert benchmark scores them; it has no baseline.

Prints the per-architecture table and a summary, and saves JSON with ``engine_archs_per_s``,
``baseline_archs_per_s``, ``speedup`` (their ratio), ``device``, ``n`` and the details.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import queue
import statistics
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from nas_engine.analysis.bench import (
    agreement,
    baseline_run,
    cpu_name,
    finite_or_null,
    load_recipes,
    sync,
)
from nas_engine.benchmarks.nbbert import BenchmarkError, BertBenchmarkSettings, read_benchmark
from nas_engine.config import FAST_SIZES, SearchConfig
from nas_engine.corpus import first_batch, load_corpus
from nas_engine.metrics import get_metric, metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import ScoringSetup
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, compiled
from search_spaces.rnn.batch import CellBatch
from search_spaces.rnn.batched import BatchedScorer
from search_spaces.rnn.graphs import StepGraphs

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared/data"
SEED = 0


def engine_run(
    scorer: BatchedScorer, key: str, recipe: dict, clock=time.perf_counter
) -> tuple[float, dict, str | None]:
    """(seconds, metrics, error) of one ``score`` call."""
    sync(scorer.device)
    t0 = clock()
    ev = scorer.score(Candidate(key, recipe))
    sync(scorer.device)
    return clock() - t0, dict(ev.metrics), ev.error


def step_products_run(
    scorer: BatchedScorer, archs: list[tuple[str, dict]], keys: list[str], clock
) -> dict:
    """The engine's scores of the N architectures once more with every step multiply on
    torch's mm/addmm (its BLAS) and once with the oneDNN products on packed weights where
    the engine uses them (``search_spaces/rnn/compiled.py``, ``PACKED_MIN_WORK``),
    alternating which goes first architecture by architecture: their speed ratio measured
    in one run, and the largest difference between their scores."""
    ways = {"mm": math.inf, "packed": compiled.PACKED_MIN_WORK}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    scores: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for i, ((_, recipe), key) in enumerate(zip(archs, keys, strict=True)):
            for way in list(ways)[:: 1 if i % 2 == 0 else -1]:
                compiled.PACKED_MIN_WORK = ways[way]
                sec, metrics, _ = engine_run(scorer, key, recipe, clock)
                seconds[way].append(sec)
                scores[way].append(metrics.get(scorer.metrics[0].name, math.nan))
    finally:
        compiled.PACKED_MIN_WORK = ways["packed"]
    return {
        "packed_products_work": compiled.packed_products_work(),
        "packed_min_work": ways["packed"],
        **{f"{way}_archs_per_s": len(secs) / sum(secs) for way, secs in seconds.items()},
        **{
            f"{way}_seconds_per_arch_median": statistics.median(secs)
            for way, secs in seconds.items()
        },
        "packed_speedup": sum(seconds["mm"]) / sum(seconds["packed"]),
        "max_rel_diff": agreement(scores["mm"], scores["packed"])[0],
    }


def batched_run(
    scorer: BatchedScorer, archs: list[tuple[str, dict]], keys: list[str], size: int
) -> dict:
    """All architectures once more through ``score_batch``, ``size`` at a time (one untimed
    warm-up batch first): throughput, and agreement with the one-at-a-time scores."""
    candidates = [Candidate(key, recipe) for key, (_, recipe) in zip(keys, archs, strict=True)]
    scorer.score_batch(candidates[:size])  # warm-up: streams, kernels, allocator
    sync(scorer.device)
    start = time.perf_counter()
    evaluations = []
    for i in range(0, len(candidates), size):
        evaluations += scorer.score_batch(candidates[i : i + size])
    sync(scorer.device)
    seconds = time.perf_counter() - start
    return {
        "batch_size": size,
        "seconds": seconds,
        "archs_per_s": len(candidates) / seconds,
        "failed": sum(ev.status != "ok" for ev in evaluations),
        "metrics": [dict(ev.metrics) for ev in evaluations],
    }


def cell_batch_scoring_run(
    setup: ScoringSetup,
    corpus,
    archs: list[tuple[str, dict]],
    keys: list[str],
    one_at_a_time: list[dict],
    size: int,
    graphs: bool,
) -> dict:
    """All architectures' whole scores once more through ``score_batch``, ``size`` at a time,
    by a scorer that runs each batch's first layers as one CellBatch (and, with ``graphs``,
    a second one that replays its step as a CUDA graph), each with its largest difference to
    the plain engine's one-at-a-time scores; or why the metrics cannot be scored so."""
    names = sorted({m for row in one_at_a_time for m in row})
    plain = [row.get(m, math.nan) for row in one_at_a_time for m in names]
    out: dict = {"batch_size": size}
    ways = [("plain", dataclasses.replace(setup, cell_batch=True))]
    if graphs:
        ways.append(("graphs", dataclasses.replace(setup, cell_batch=True, cuda_graphs=True)))
    for name, way in ways:
        try:
            scorer = BatchedScorer(way, corpus)
        except ValueError as exc:  # metrics that read more than the first layer
            return {"refused": str(exc)}
        run = batched_run(scorer, archs, keys, size)
        rows = [row.get(m, math.nan) for row in run.pop("metrics") for m in names]
        run["max_rel_diff_to_one_at_a_time"] = agreement(plain, rows)[0]
        run["cell_batch_failure"] = scorer.cell_batch_failure
        if graphs and name == "graphs":
            run["graphs_recorded"] = scorer.prober.step_graphs.recorded
            run["recording_failure"] = scorer.prober.step_graphs.failure
        out[name] = run
    return out


def graphs_run(
    setup: ScoringSetup,
    corpus,
    archs: list[tuple[str, dict]],
    keys: list[str],
    one_at_a_time: list[dict],
    batch: int,
) -> dict:
    """All architectures once more with a second scorer that records each recurrence's step
    as a CUDA graph and replays it (``ScoringSetup.cuda_graphs``): one at a time, and with
    ``batch`` > 0 through ``score_batch`` as well; each with its largest difference to the
    plain engine's one-at-a-time scores ``one_at_a_time``."""
    scorer = BatchedScorer(dataclasses.replace(setup, cuda_graphs=True), corpus)
    engine_run(scorer, keys[0], archs[0][1])  # warm-up, not timed
    seconds, metrics, errors = [], [], []
    for key, (_, recipe) in zip(keys, archs, strict=True):
        sec, values, error = engine_run(scorer, key, recipe)
        seconds.append(sec)
        metrics.append(values)
        errors.append(error)
    names = sorted({m for row in one_at_a_time for m in row})

    def max_rel_diff(rows: list[dict]) -> float:
        plain = [row.get(m, math.nan) for row in one_at_a_time for m in names]
        return agreement(plain, [row.get(m, math.nan) for row in rows for m in names])[0]

    result = {
        "archs_per_s": len(seconds) / sum(seconds),
        "seconds_per_arch_median": statistics.median(seconds),
        "max_rel_diff_to_one_at_a_time": max_rel_diff(metrics),
        "failed": sum(e is not None for e in errors),
        # What went wrong, if anything did, for a run on a machine one cannot look at again.
        "first_error": next((e for e in errors if e is not None), None),
    }
    if batch > 0:
        batched = batched_run(scorer, archs, keys, batch)
        result["batched_archs_per_s"] = batched["archs_per_s"]
        result["batched_max_rel_diff_to_one_at_a_time"] = max_rel_diff(batched["metrics"])
    result["graphs_recorded"] = scorer.prober.step_graphs.recorded
    result["recording_failure"] = scorer.prober.step_graphs.failure
    return result


def cell_batch_run(
    scorer: BatchedScorer,
    archs: list[tuple[str, dict]],
    size: int,
    hidden: int,
    graphs: bool = False,
) -> dict:
    """The first layer's entering states of every architecture (models built before the
    timing, from the scorer's shared embedding and weight stream, on its device), one cell
    at a time (``entering_states``) and ``size`` cells at a time (:class:`CellBatch`), each
    timed after one untimed pass; the plan a CellBatch makes is timed with it. ``graphs``
    (CUDA): both once more with each step recorded as a CUDA graph and replayed."""
    prober = scorer.prober
    models = [
        prober.shared.build(Recipe.from_dict(r), prober.sizes, scorer.device, 1) for _, r in archs
    ]
    tokens = prober.tokens
    with torch.no_grad():
        embedded = models[0].encoder(tokens)

        def one_by_one() -> list[torch.Tensor]:
            return [m.entering_states(tokens, 1)[0] for m in models]

        def batched(repeat=None) -> list[torch.Tensor]:
            out = []
            for i in range(0, len(models), size):
                cells = [m.layers[0] for m in models[i : i + size]]
                out += list(CellBatch(cells).entering_states(embedded, repeat))
            return out

        ways = [("one_by_one", one_by_one), ("cell_batch", batched)]
        if graphs:
            step_graphs = StepGraphs(scorer.device)
            ways += [
                (
                    "one_by_one_graphs",
                    lambda: [m.entering_states(tokens, 1, step_graphs)[0] for m in models],
                ),
                ("cell_batch_graphs", lambda: batched(step_graphs)),
            ]
        seconds = {}
        results = {}
        for name, fn in ways:
            fn()  # warm-up
            sync(scorer.device)
            start = time.perf_counter()
            results[name] = fn()
            sync(scorer.device)
            seconds[name] = time.perf_counter() - start

    def max_rel_diff(name: str) -> float:
        return max(
            float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            for a, b in zip(results[name], results["one_by_one"], strict=True)
        )

    n = len(models)
    out = {
        "cells_per_batch": size,
        "hidden": hidden,
        "one_by_one_ms_per_arch": 1e3 * seconds["one_by_one"] / n,
        "cell_batch_ms_per_arch": 1e3 * seconds["cell_batch"] / n,
        "ratio": seconds["one_by_one"] / seconds["cell_batch"],
        "max_rel_diff": max_rel_diff("cell_batch"),
    }
    if graphs:
        for name in ("one_by_one_graphs", "cell_batch_graphs"):
            out[f"{name}_ms_per_arch"] = 1e3 * seconds[name] / n
            out[f"{name}_max_rel_diff"] = max_rel_diff(name)
        out["recording_failure"] = step_graphs.failure
    return out


def _worker(
    setup: ScoringSetup,
    corpus_dir: Path,
    jobs: list[tuple[str, dict]],
    threads: int | None,
    batch: int,
    barrier,
    results,
) -> None:
    """One worker process of :func:`workers_run` (top level, so that spawn can pickle it)."""
    if threads is not None:
        torch.set_num_threads(threads)
    with threadpool_limits(limits=1, user_api="blas"):
        scorer = BatchedScorer(setup, load_corpus(corpus_dir, "test"))
        candidates = [Candidate(key, recipe) for key, recipe in jobs]
        scorer.score(candidates[0])  # warm-up, not timed
        sync(scorer.device)
        barrier.wait()
        start = time.monotonic()
        evaluations = []
        step = max(batch, 1)
        for i in range(0, len(candidates), step):
            chunk = candidates[i : i + step]
            evaluations += scorer.score_batch(chunk) if batch > 0 else [scorer.score(chunk[0])]
        sync(scorer.device)
        end = time.monotonic()
    results.put((start, end, len(evaluations), sum(ev.status != "ok" for ev in evaluations)))


def workers_run(
    setup: ScoringSetup,
    args: argparse.Namespace,
    archs: list[tuple[str, dict]],
    keys: list[str],
    batch: int,
) -> dict:
    """The N architectures split round-robin over ``args.workers`` spawned processes that
    start together (after each one's untimed warm-up): architectures per second from the
    first start to the last end (time.monotonic is one clock for all processes)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    jobs = [(key, recipe) for key, (_, recipe) in zip(keys, archs, strict=True)]
    count = min(args.workers, len(jobs))
    barrier, results = context.Barrier(count), context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(setup, args.corpus, jobs[w::count], args.threads, batch, barrier, results),
        )
        for w in range(count)
    ]
    for process in processes:
        process.start()
    outcomes = []
    while len(outcomes) < count:
        try:
            outcomes.append(results.get(timeout=1.0))
        except queue.Empty:
            # A worker that died holds the others at the barrier: stop them all.
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                for process in processes:
                    process.terminate()
                sys.exit(f"error: a worker process exited with code {dead[0]}")
    for process in processes:
        process.join()
    seconds = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    scored = sum(o[2] for o in outcomes)
    return {
        "workers": count,
        "threads_per_worker": args.threads,
        "cuda_graphs": setup.cuda_graphs,
        "cell_batch": setup.cell_batch,
        "batch_size": batch,
        "seconds": seconds,
        "archs_per_s": scored / seconds,
        "failed": sum(o[3] for o in outcomes),
    }


def run_context(clock: str, load_before: float, device: torch.device, blas: int) -> dict:
    """What a timing depends on besides the code: clock, threads, load, versions, hardware."""
    return {
        "clock": clock,
        "torch_threads": torch.get_num_threads(),
        "blas_threads": blas or "default",
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "torch_version": torch.__version__,
        # Whether the CPU step multiplies can run on oneDNN (where large enough: see
        # --step-products).
        "packed_step_products": device.type == "cpu" and compiled.packed_products_work(),
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def forward_pair(
    recipe: dict, sizes: ModelSizes, tokens: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Seconds of the first layer's forward (entering states recorded, no autograd):
    (compiled program, interpreted path), on the same embedded input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = RNNLanguageModel(Recipe.from_dict(recipe), sizes, "cpu", build_layers=1)
    model = model.to(device).eval()
    cell = model.layers[0]
    with torch.no_grad():
        e = model.encoder(tokens)
        cell(e[:2], record_entering=True)  # generate the step code outside the timing
        sync(device)
        t0 = time.perf_counter()
        cell(e, record_entering=True)
        sync(device)
        t1 = time.perf_counter()
        cell.forward_interpreted(e, record_entering=True)
        sync(device)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", choices=("rnn", "bert"), default="rnn")
    parser.add_argument(
        "--metric", default="hidden_cov", help="a metric, a comma list, or 'all' (the suite)"
    )
    parser.add_argument("--n", type=int, default=40, help="architectures (0: all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fast", action="store_true", help="the fast mode's sizes")
    parser.add_argument("--forward", action="store_true", help="also time compiled vs interpreted")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="also time score_batch over all N architectures in batches of this size "
        "(engine only; on CUDA their forwards overlap on streams): engine_batched_archs_per_s",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--step-products",
        action="store_true",
        help="also time the engine's scores with every step multiply on torch's mm/addmm "
        "against oneDNN's on packed weights where the engine uses them (the CPU at large "
        "sizes), alternating: step_products in the JSON",
    )
    parser.add_argument(
        "--cell-batch",
        type=int,
        default=0,
        help="also time the first layer's entering states of the N architectures, one cell at "
        "a time against CellBatch (K cells run together): cell_batch in the JSON; then their "
        "whole scores K at a time with each batch's first layers as one CellBatch: "
        "engine_cell_batch_archs_per_s (and the --workers use it)",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="also time a scorer that records each recurrence's step as a CUDA graph and "
        "replays it, one at a time and (with --batch) in batches: engine_graphs_archs_per_s, "
        "graphs in the JSON; with --workers the worker processes use it too",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also time W worker processes (spawned; each its own scorer on --device, "
        "--threads torch threads, --batch as above) scoring the N architectures between "
        "them, as a search's Ray workers do: engine_workers_archs_per_s",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="threads of numpy's and scipy's BLAS for the whole run, baseline included (0: "
        "their default). Default 1: OpenBLAS threads left spinning after the baseline's numpy "
        "calls otherwise take the cores from the engine's next score (the engine limits them "
        "inside its own scores; the baseline is as fast either way)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed seconds; cpu: this process's CPU seconds (all threads), steadier "
        "on a machine shared with other work (use it with --threads 1)",
    )
    parser.add_argument("--corpus", type=Path, default=SHARED_DATA / "ptb")
    parser.add_argument("--logs", type=Path, default=SHARED_DATA / "nasbench_nlp_wt2/logs.zip")
    parser.add_argument(
        "--bert-benchmark",
        type=Path,
        default=SHARED_DATA / "nasbench_bert/benchmark_dev.json",
        help="NAS-Bench-BERT entries (--space bert)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "experiments/out/bench_scoring.json")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.blas_threads:
        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.cuda_graphs and (args.space != "rnn" or args.device != "cuda"):
        sys.exit("error: --cuda-graphs records the RNN cells' steps: --space rnn --device cuda")
    if args.space == "bert":
        bert_main(args)
        return
    if not (args.corpus / "test.txt").is_file():
        sys.exit(f"error: PTB corpus not found at {args.corpus} (need test.txt; pass --corpus)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available")
    if args.metric == "all":  # the training-free suite: not the trained proxy
        metrics = tuple(n for n in metric_names("rnn") if "training" not in get_metric(n).needs)
    else:
        metrics = tuple(args.metric.split(","))
    with_baseline = metrics == ("hidden_cov",)
    device = torch.device(args.device)
    archs = load_recipes(args.logs, args.n)
    if not archs:
        sys.exit("error: no architectures to measure")
    # The engine's own sizes: a search's defaults (the benchmark's), or the fast mode's.
    sizes = FAST_SIZES if args.fast else SearchConfig()
    sizes_used = {
        "embedding": sizes.embedding_size,
        "hidden": sizes.hidden_size,
        "layers": SearchConfig().layers,
        "batch": sizes.batch_size,
        "bptt": sizes.bptt,
    }

    # Setup outside the timing: corpus, vocabulary, input batch, the engine's scorer.
    corpus = load_corpus(args.corpus, "test")
    setup = ScoringSetup(
        metrics=metrics,
        embedding_size=sizes_used["embedding"],
        hidden_size=sizes_used["hidden"],
        num_layers=sizes_used["layers"],
        batch_size=sizes_used["batch"],
        bptt=sizes_used["bptt"],
        corpus=str(args.corpus),
        seed=SEED,
        device=args.device,
    )
    scorer = BatchedScorer(setup, corpus)
    sizes = ModelSizes(
        len(corpus.vocab), sizes_used["embedding"], sizes_used["hidden"], sizes_used["layers"]
    )
    tokens = first_batch(corpus.split("test"), sizes_used["batch"], sizes_used["bptt"]).to(device)
    keys = [Recipe.from_dict(r).key for _, r in archs]
    load_before = os.getloadavg()[0]  # other work on the machine skews the timings

    engine_run(scorer, keys[0], archs[0][1])  # warm-up, not timed
    if with_baseline:
        baseline_run(archs[0][1], sizes, tokens, device)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"{len(archs)} architectures, metrics {','.join(metrics)}, device {device}, "
        f"{torch.get_num_threads()} threads, sizes {sizes_used}"
    )
    per_arch = []
    for i, ((name, recipe), key) in enumerate(zip(archs, keys, strict=True)):
        e_sec, e_metrics, e_error = engine_run(scorer, key, recipe, clock)
        row = {"file": name, "key": key, "engine_seconds": e_sec, "engine_error": e_error}
        row["engine_metrics"] = e_metrics
        line = f"{i:>3} {name[16:40]:<24} engine {e_sec:7.3f} s"
        if with_baseline:
            start = clock()
            parts, b_score = baseline_run(recipe, sizes, tokens, device)
            parts["total"] = clock() - start  # the parts are wall seconds
            row["baseline_seconds"] = parts
            row["baseline_score"] = b_score
            line += f"  baseline {parts['total']:7.3f} s"
            line += f"  scores {e_metrics.get('hidden_cov', math.nan):11.2f} {b_score:11.2f}"
        if args.forward:
            compiled, interpreted = forward_pair(recipe, sizes, tokens, device)
            row["forward_seconds"] = {"compiled": compiled, "interpreted": interpreted}
            line += f"  fwd {compiled:.4f} / {interpreted:.4f}"
        per_arch.append(row)
        print(line, flush=True)

    step_products = step_products_run(scorer, archs, keys, clock) if args.step_products else None
    batched = batched_run(scorer, archs, keys, args.batch) if args.batch > 0 else None
    cell_batch = None
    if args.cell_batch > 0:
        cell_batch = cell_batch_run(
            scorer, archs, args.cell_batch, sizes_used["hidden"], graphs=args.cuda_graphs
        )
    engine_rows = [row["engine_metrics"] for row in per_arch]
    cell_batch_scoring = None
    if args.cell_batch > 0:
        cell_batch_scoring = cell_batch_scoring_run(
            setup, corpus, archs, keys, engine_rows, args.cell_batch, args.cuda_graphs
        )
    graphs = None
    if args.cuda_graphs:
        graphs = graphs_run(setup, corpus, archs, keys, engine_rows, args.batch)
    in_workers = None
    if args.workers > 0:
        worker_setup = dataclasses.replace(setup, cuda_graphs=args.cuda_graphs)
        worker_batch = args.batch
        if cell_batch_scoring is not None and "refused" not in cell_batch_scoring:
            worker_setup = dataclasses.replace(worker_setup, cell_batch=True)
            worker_batch = args.cell_batch
        in_workers = workers_run(worker_setup, args, archs, keys, worker_batch)

    e_secs = [a["engine_seconds"] for a in per_arch]
    result: dict = {
        "engine_archs_per_s": len(e_secs) / sum(e_secs),
        "baseline_archs_per_s": None,
        "speedup": None,
        "device": str(device),
        "n": len(per_arch),
        "space": args.space,
        "metrics": list(metrics),
        "engine_seconds_per_arch_median": statistics.median(e_secs),
        "engine_failed": sum(a["engine_error"] is not None for a in per_arch),
    }
    if with_baseline:
        b_secs = [a["baseline_seconds"]["total"] for a in per_arch]
        e_scores = [a["engine_metrics"].get("hidden_cov", math.nan) for a in per_arch]
        b_scores = [a["baseline_score"] for a in per_arch]
        max_rel, tau, compared = agreement(e_scores, b_scores)
        result.update(
            {
                "baseline_archs_per_s": len(b_secs) / sum(b_secs),
                "speedup": sum(b_secs) / sum(e_secs),
                "speedup_median": statistics.median(b_secs) / statistics.median(e_secs),
                "baseline_seconds_per_arch_median": statistics.median(b_secs),
                "baseline_parts_median": {
                    part: statistics.median(a["baseline_seconds"][part] for a in per_arch)
                    for part in ("build", "forward", "scoring")
                },
                "baseline_nan": sum(not math.isfinite(s) for s in b_scores),
                "scores_compared": compared,
                "scores_max_rel_diff": max_rel,
                "scores_kendall_tau": tau,
            }
        )
    if step_products is not None:
        result["step_products"] = step_products
    if batched is not None:
        result["batched"] = batched
        result["engine_batched_archs_per_s"] = batched["archs_per_s"]
        one = [row["engine_metrics"].get(m, math.nan) for row in per_arch for m in metrics]
        many = [ev.get(m, math.nan) for ev in batched["metrics"] for m in metrics]
        batched["max_rel_diff_to_one_at_a_time"] = agreement(one, many)[0]
    if cell_batch is not None:
        result["cell_batch"] = cell_batch
    if cell_batch_scoring is not None:
        result["cell_batch_scoring"] = cell_batch_scoring
        if "plain" in cell_batch_scoring:
            result["engine_cell_batch_archs_per_s"] = cell_batch_scoring["plain"]["archs_per_s"]
        if "graphs" in cell_batch_scoring:
            result["engine_cell_batch_graphs_archs_per_s"] = cell_batch_scoring["graphs"][
                "archs_per_s"
            ]
    if graphs is not None:
        result["graphs"] = graphs
        result["engine_graphs_archs_per_s"] = graphs["archs_per_s"]
    if in_workers is not None:
        result["workers"] = in_workers
        result["engine_workers_archs_per_s"] = in_workers["archs_per_s"]
    if args.forward:
        comp = [a["forward_seconds"]["compiled"] for a in per_arch]
        interp = [a["forward_seconds"]["interpreted"] for a in per_arch]
        result["forward_layer1_median"] = {
            "compiled": statistics.median(comp),
            "interpreted": statistics.median(interp),
            "ratio": sum(interp) / sum(comp),
        }
    result.update(
        {
            **run_context(args.clock, load_before, device, args.blas_threads),
            "sizes": {**sizes_used, "vocab": len(corpus.vocab)},
            "fast": args.fast,
            "corpus": str(args.corpus),
            "per_arch": per_arch,
        }
    )
    result = finite_or_null(result)
    summary = {k: v for k, v in result.items() if k != "per_arch"}
    print(json.dumps(summary, indent=2, allow_nan=False))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.json}")


def bert_main(args: argparse.Namespace) -> None:
    """--space bert: the engine's BERT scoring of the first N NAS-Bench-BERT configurations
    (the nbbert benchmark's input: B = 16 sequences of 64 PTB test tokens, seed 0), all
    metrics on one probe as a search scores them. No baseline: the paper's BERT code is not
    reproduced here, so only the engine's rate is recorded."""
    if not (args.corpus / "test.txt").is_file():
        sys.exit(f"error: PTB corpus not found at {args.corpus} (need test.txt; pass --corpus)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available")
    try:
        entries = read_benchmark(args.bert_benchmark)
    except BenchmarkError as exc:
        sys.exit(f"error: {exc}")
    entries = entries[: args.n] if args.n else entries
    bert_metrics = metric_names("bert")
    metrics = tuple(bert_metrics) if args.metric == "all" else tuple(args.metric.split(","))
    unknown = [m for m in metrics if m not in bert_metrics]
    if unknown:
        sys.exit(
            f"error: not BERT metrics: {', '.join(unknown)} (known: {', '.join(bert_metrics)})"
        )
    settings = BertBenchmarkSettings(metrics=metrics, seed=SEED, device=args.device)
    corpus = load_corpus(args.corpus, "test")
    scorer = BatchedScorer(settings.setup(metrics), corpus)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    load_before = os.getloadavg()[0]
    first = entries[0].config
    engine_run(scorer, first.key, first.to_dict())  # warm-up, not timed
    print(
        f"{len(entries)} BERT configurations, metrics {','.join(metrics)}, device "
        f"{args.device}, {torch.get_num_threads()} threads"
    )
    per_arch = []
    for i, entry in enumerate(entries):
        seconds, values, error = engine_run(scorer, entry.config.key, entry.config.to_dict(), clock)
        per_arch.append(
            {"id": entry.id, "engine_seconds": seconds, "engine_error": error, "metrics": values}
        )
        print(f"{i:>3} id {entry.id:<6} engine {seconds:7.3f} s", flush=True)
    secs = [a["engine_seconds"] for a in per_arch]
    result = finite_or_null(
        {
            "engine_archs_per_s": len(secs) / sum(secs),
            "baseline_archs_per_s": None,
            "speedup": None,
            "device": args.device,
            "n": len(per_arch),
            "space": "bert",
            "metrics": list(metrics),
            "engine_seconds_per_arch_median": statistics.median(secs),
            "engine_failed": sum(a["engine_error"] is not None for a in per_arch),
            "input": {"batch": settings.batch_size, "length": settings.length},
            **run_context(args.clock, load_before, torch.device(args.device), args.blas_threads),
            "per_arch": per_arch,
        }
    )
    print(json.dumps({k: v for k, v in result.items() if k != "per_arch"}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
