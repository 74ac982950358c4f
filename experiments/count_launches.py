"""Device operations per `hidden_cov` score, counted without a GPU.

    python experiments/count_launches.py --n 40 --json experiments/out/count_launches.json
    python experiments/count_launches.py --n 40 --fast \\
        --json experiments/out/count_launches_fast.json

On a GPU a score at these sizes is bound by launches: each operation is one or a few small
kernels, and launching one from Python costs a few microseconds of host time, about what the
kernel itself takes. How many a score launches is a property of the code, not of the GPU, so
it can be counted here: the engine's model of each architecture (the first N "OK" logs of
NAS-Bench-NLP, as bench_scoring.py takes them) is built from a seed's shared embedding and
weight stream on torch's "meta" device, which runs every operation's dispatch and shape logic
but no arithmetic, and takes the path a GPU takes (no distinct-token gather); a dispatch mode
counts each operation the forward of the states entering layer 1 dispatches. Views and
allocations launch nothing and are not counted; every other operation is counted as one launch
(a few launch two or more kernels, so this is a lower bound). The forward is counted twice:
plain, and with one step recorded as a CUDA graph and replayed for the others (``--cuda-graphs``;
the eager first step counted, the recording not, each replay one launch). ``eig_score`` is
counted once on CPU tensors of the score's shape through its device path (``in_torch``),
which has no branch on the data except the rare eigenvalue fallback.

Prints and saves, per architecture and as medians: operations per step (the plain loop's, and
the fixed loop's that graphs record), launches per score
plain and with graphs, and the launch time they imply at 4 and 8 us a launch (an estimate, not
a measurement; run bench_scoring.py --device cuda for that). The meta device gives no timing:
many of its shape functions are Python, so a forward there takes longer than on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nas_engine.analysis.bench import load_recipes
from nas_engine.config import FAST_SIZES
from nas_engine.metrics.eig import eig_score
from search_spaces.rnn import ModelSizes, Recipe
from search_spaces.rnn.model import SharedEmbedding

DEFAULT_LOGS = Path(__file__).resolve().parents[2] / "shared/data/nasbench_nlp_wt2/logs.zip"
# Operations that only describe memory: no kernel runs for them.
NO_LAUNCH = frozenset(
    {
        "empty",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "unsafe_split",
        "unsafe_split_with_sizes",
        "unsafe_chunk",
        "lift_fresh",
    }
)
LAUNCH_US = (4.0, 8.0)


class LaunchCount(TorchDispatchMode):
    """Counts dispatched operations that launch device work, by name; ``paused`` stops it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.paused = False

    @property
    def launches(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused and not func.is_view and name not in NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def graph_repeater(count: LaunchCount, per_step: list[int]):
    """A step repeater that counts as StepGraphs launches: the first step eagerly, then (for
    more than two steps) one launch per replay; the steps themselves still all run."""

    def repeat(advance, times: int) -> None:
        before = count.launches
        advance()
        per_step.append(count.launches - before)
        if times <= 2:
            for _ in range(times - 1):
                advance()
            return
        count.paused = True
        for _ in range(times - 1):
            advance()
        count.paused = False
        count.ops["graph replay"] += times - 1

    return repeat


def count_architecture(
    shared: SharedEmbedding, recipe: Recipe, sizes: ModelSizes, tokens: torch.Tensor
) -> dict:
    with torch.no_grad():
        with LaunchCount() as build:
            model = shared.build(recipe, sizes, "meta", build_layers=1)
        with LaunchCount() as plain:
            model.entering_states(tokens, 1)
        longer_tokens = torch.cat([tokens, tokens[:1]])
        with LaunchCount() as longer:  # one step more: the plain loop's operations per step
            model.entering_states(longer_tokens, 1)
        per_step: list[int] = []
        with LaunchCount() as graphs:
            model.entering_states(tokens, 1, graph_repeater(graphs, per_step))
    steps = tokens.shape[0] - 1  # layer 1 is the top layer run: its last step is not needed
    return {
        "build_launches": build.launches,
        "forward_launches": plain.launches,
        "forward_ops_per_step": longer.launches - plain.launches,
        # The fixed loop's step reads and writes through the step index: more operations,
        # all in the one graph.
        "forward_fixed_ops_per_step": per_step[0],
        "forward_graphs_launches_outside_steps": graphs.launches - per_step[0] - (steps - 1),
        "forward_graphs_launches": graphs.launches,
        "ops": dict(plain.ops.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--fast", action="store_true", help="the fast mode's sizes")
    parser.add_argument("--logs", type=Path, default=DEFAULT_LOGS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.fast:
        e, h, b, t = (
            FAST_SIZES.embedding_size,
            FAST_SIZES.hidden_size,
            FAST_SIZES.batch_size,
            FAST_SIZES.bptt,
        )
    else:
        e, h, b, t = 400, 600, 50, 70
    sizes = ModelSizes(vocab_size=10000, embedding_size=e, hidden_size=h, num_layers=3)
    shared = SharedEmbedding.draw(0, sizes, "meta")
    tokens = torch.zeros(t, b, dtype=torch.long, device="meta")
    rows = []
    for name, recipe in load_recipes(args.logs, args.n):
        row = {"log": name, **count_architecture(shared, Recipe.from_dict(recipe), sizes, tokens)}
        rows.append(row)
        print(
            f"{name:>24}  build {row['build_launches']:4d}  forward {row['forward_launches']:5d}"
            f"  per step {row['forward_ops_per_step']:3d} (fixed loop "
            f"{row['forward_fixed_ops_per_step']:3d})  with graphs "
            f"{row['forward_graphs_launches']:4d}"
        )
    states = torch.randn(t * b, h)  # hidden_cov's rows: the transpose of (T*B, H)
    with LaunchCount() as metric:
        eig_score(states.t(), in_torch=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {
        "sizes": {"embedding": e, "hidden": h, "batch": b, "bptt": t},
        "n": len(rows),
        "median_build_launches": median("build_launches"),
        "median_forward_launches": median("forward_launches"),
        "median_forward_ops_per_step": median("forward_ops_per_step"),
        "median_forward_fixed_ops_per_step": median("forward_fixed_ops_per_step"),
        "median_forward_graphs_launches": median("forward_graphs_launches"),
        "metric_launches": metric.launches,
        "metric_ops": dict(metric.ops.most_common()),
    }
    plain_total = summary["median_build_launches"] + summary["median_forward_launches"]
    graphs_total = summary["median_build_launches"] + summary["median_forward_graphs_launches"]
    summary["median_score_launches"] = plain_total + metric.launches
    summary["median_score_launches_graphs"] = graphs_total + metric.launches
    for us in LAUNCH_US:
        for key in ("median_score_launches", "median_score_launches_graphs"):
            ms = summary[key] * us / 1000
            summary[f"{key}_ms_at_{us:g}us"] = round(ms, 2)
            summary[f"{key}_archs_per_s_at_{us:g}us"] = round(1000 / ms, 1)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
