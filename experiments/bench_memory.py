"""Memory while scoring many architectures: does the resident set grow per architecture?

    python experiments/bench_memory.py --n 1000 --metric hidden_cov [--fast] [--device cpu|cuda]
        [--cell-batch K] [--json experiments/out/bench_memory.json]

Scores N distinct architectures sampled from the RNN space (seed 0) with one
:class:`~search_spaces.rnn.batched.BatchedScorer`, as a search worker does, and reads the process's
resident set size (``/proc/self/statm``) after every architecture. Reports the RSS after the
first, 10th, 100th, ... architecture, the peak (``ru_maxrss``), and the growth per architecture
as the least-squares slope of RSS after the first tenth of the run and over its second half
(the allocator keeps its high-water mark, so a one-time step when a larger cell than any before
comes along shows in the first slope, not in the second): a leak (a cache keyed by
architecture, a hook left behind, a graph kept alive) shows as a steady positive slope. On
CUDA the allocator's peak and current bytes are recorded too. ``--cell-batch K`` scores the
architectures K at a time with each batch's first layers run as one CellBatch
(``ScoringSetup.cell_batch``); the RSS is then read after each batch. Prints a summary and
saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nas_engine.analysis.bench import cpu_name
from nas_engine.config import FAST_SIZES
from nas_engine.corpus import load_corpus
from nas_engine.metrics import metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import ScoringSetup
from search_spaces.rnn import RNNSpace
from search_spaces.rnn.batched import BatchedScorer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared/data"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def distinct_architectures(n: int, seed: int) -> list:
    space, rng = RNNSpace(), np.random.default_rng(seed)
    archs, keys = [], set()
    while len(archs) < n:
        arch = space.sample(rng)
        if arch.key not in keys:
            keys.add(arch.key)
            archs.append(arch)
    return archs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--metric", default="hidden_cov", help="a metric, a comma list, or all")
    parser.add_argument("--fast", action="store_true", help="the fast mode's sizes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--cell-batch",
        type=int,
        default=0,
        metavar="K",
        help="score K at a time, each batch's first layers as one CellBatch (0: one at a time)",
    )
    parser.add_argument("--corpus", type=Path, default=SHARED_DATA / "ptb")
    parser.add_argument("--json", type=Path, default=REPO / "experiments/out/bench_memory.json")
    args = parser.parse_args()
    if args.n < 20:
        print("error: --n must be at least 20 (the slope needs a second half)", file=sys.stderr)
        return 2
    if not args.corpus.exists():
        print(f"error: {args.corpus} not found (the shared reference data)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = (
        tuple(m for m in metric_names("rnn") if m != "trained_loss")
        if args.metric == "all"
        else tuple(args.metric.split(","))
    )
    sizes = (
        {
            "embedding_size": FAST_SIZES.embedding_size,
            "hidden_size": FAST_SIZES.hidden_size,
            "batch_size": FAST_SIZES.batch_size,
            "bptt": FAST_SIZES.bptt,
        }
        if args.fast
        else {}
    )
    cell_batch = args.cell_batch > 0
    setup = ScoringSetup(
        metrics=metrics, device=args.device, seed=0, cell_batch=cell_batch, **sizes
    )
    corpus = load_corpus(args.corpus, "test")
    archs = distinct_architectures(args.n + 1, seed=0)
    cuda = args.device == "cuda"

    baseline_rss = rss_mib()
    scorer = BatchedScorer(setup, corpus)
    scorer.score(Candidate("", archs[0]))  # warm-up: kernels, allocator pools, lazy imports
    if cell_batch:
        scorer.score_batch([Candidate("", a) for a in archs[: args.cell_batch]])
    after_warmup = rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    rss, failed = [], 0
    start = time.perf_counter()
    step = max(args.cell_batch, 1)
    for i in range(1, len(archs), step):
        batch = [Candidate("", arch) for arch in archs[i : i + step]]
        evaluations = scorer.score_batch(batch) if cell_batch else [scorer.score(batch[0])]
        failed += sum(ev.status != "ok" for ev in evaluations)
        rss += [rss_mib()] * len(batch)
    seconds = time.perf_counter() - start

    series = np.array(rss)
    # Allocation sizes differ from cell to cell, so the RSS moves up and down by tens of MiB;
    # a leak is a trend under that: the slope over all architectures after the first tenth,
    # and the medians and maxima of each tenth of the run.
    tenth = len(series) // 10
    slope = float(np.polyfit(np.arange(tenth, len(series)), series[tenth:], 1)[0])
    half = len(series) // 2
    slope_half = float(np.polyfit(np.arange(half, len(series)), series[half:], 1)[0])
    deciles = [
        {
            "archs": [i * tenth + 1, (i + 1) * tenth],
            "median_mib": round(float(np.median(chunk)), 1),
            "max_mib": round(float(chunk.max()), 1),
        }
        for i, chunk in enumerate(np.split(series[: 10 * tenth], 10))
    ]
    result = {
        "n": args.n,
        "metrics": list(metrics),
        "sizes": setup.__dict__ | {"fast": args.fast},
        "cell_batch": args.cell_batch,
        "device": args.device,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "failed": failed,
        "seconds": round(seconds, 1),
        "rss_mib_before_scorer": round(baseline_rss, 1),
        "rss_mib_after_warmup": round(after_warmup, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "growth_kib_per_arch": round(slope * 1024, 3),
        "growth_kib_per_arch_second_half": round(slope_half * 1024, 3),
        "deciles": deciles,
        "rss_mib": [round(float(v), 1) for v in series],
    }
    if cuda:
        result["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["cuda_allocated_mib_after"] = round(torch.cuda.memory_allocated() / 2**20, 1)
    print(f"RSS after warm-up {after_warmup:.0f} MiB, peak {result['peak_rss_mib']:.0f} MiB")
    for d in deciles:
        print(
            f"  archs {d['archs'][0]:>5}-{d['archs'][1]:<5} median {d['median_mib']:7.1f} MiB"
            f"  max {d['max_mib']:7.1f} MiB"
        )
    print(
        f"growth after the first tenth: {result['growth_kib_per_arch']:+.3f} KiB/arch, over "
        f"the second half: {result['growth_kib_per_arch_second_half']:+.3f} KiB/arch"
        f" ({args.n} archs, {failed} failed, {seconds:.0f} s)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
