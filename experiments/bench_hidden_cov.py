"""Seconds per architecture for the ``hidden_cov`` metric (layer 1): engine vs. baseline.

What it measures, on this machine, at the benchmark's default sizes (E=400, H=600, 3 layers,
B=50 columns, T=70 steps, vocabulary = the corpus vocabulary), over the SAME architectures
(the "OK" recipes of the NAS-Bench-NLP logs, first N in sorted file-name order):

- engine: one ``Scorer.score`` call (model build + forward + scoring), the Scorer (corpus
  load) created once outside the timing;
- baseline, "the straightforward way" as the paper's code does it: build the same model
  (seed 0), autograd on, interpret the cell graph node by node (``RecipeCell.step``) for every
  step of all 3 layers, run the decoder, then on the host ``np.corrcoef`` of the (H, B*T)
  matrix of states entering layer 1 and a general eigen-solver ``np.linalg.eig`` (real parts).
  Build, forward and scoring are timed separately.

Engine and baseline alternate per architecture, after one untimed warm-up of each. The two
scores are checked for agreement (max relative difference, Kendall tau); architectures where
the baseline gives NaN (a constant hidden unit makes ``np.corrcoef`` undefined, while the
engine counts it as a zero eigenvalue) are counted separately and left out of the check.

Run (from the repository root):

    python experiments/bench_hidden_cov.py --n 40          # first 40 architectures
    python experiments/bench_hidden_cov.py --n 0           # all of them
    python experiments/bench_hidden_cov.py --device cuda   # on a GPU

The figures are printed and saved as JSON (``--json``, default
experiments/out/bench_hidden_cov.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from nas_engine.corpus import first_batch, load_corpus
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared/data"
EIG_K = 1e-5
SEED = 0
EMBEDDING, HIDDEN, LAYERS, BATCH, BPTT = 400, 600, 3, 50, 70


# ----------------------------------------------------------------------------- inputs
def load_recipes(logs: Path, n: int) -> list[tuple[str, dict]]:
    """(file name, recipe dict) of the first ``n`` "OK" logs in sorted name order (0: all)."""
    if not logs.is_file():
        sys.exit(f"error: NAS-Bench-NLP logs not found at {logs} (pass --logs PATH)")
    out = []
    with zipfile.ZipFile(logs) as z:
        for name in sorted(f for f in z.namelist() if f.endswith(".json")):
            log = json.loads(z.read(name))
            if log.get("status") == "OK":
                out.append((name.rsplit("/", 1)[-1], json.loads(log["recepie"])))
    return out if n == 0 else out[:n]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- engine
def engine_run(scorer: Scorer, key: str, recipe: dict) -> tuple[float, float]:
    """(seconds, score) of one full ``Scorer.score`` call; score is NaN when it failed."""
    sync(scorer.device)
    t0 = time.perf_counter()
    ev = scorer.score(Candidate(key, recipe))
    sync(scorer.device)
    seconds = time.perf_counter() - t0
    return seconds, ev.metrics.get("hidden_cov", math.nan) if ev.status == "ok" else math.nan


# ----------------------------------------------------------------------------- baseline
def baseline_forward(model: RNNLanguageModel, tokens: torch.Tensor) -> torch.Tensor:
    """The paper's way: autograd on, every cell interpreted node by node, step by step,
    through all layers, then the decoder. Returns the states entering layer 1, (T, B, H)."""
    h = model.encoder(tokens)
    entering_l1 = []
    for layer, cell in enumerate(model.layers):
        state = cell.initial_state(tokens.shape[1], h)
        outputs = []
        for t in range(tokens.shape[0]):
            if layer == 0:
                entering_l1.append(state[0])
            state = cell.step(h[t], state)
            outputs.append(state[0])
        h = torch.stack(outputs)
    logits = model.decoder(h)  # the paper's forward produces the logits, so we pay for them
    del logits
    return torch.stack(entering_l1)


def baseline_score(states: torch.Tensor) -> float:
    """Host-side eig score: np.corrcoef + general np.linalg.eig (real parts); NaN if undefined."""
    rows = states.detach().cpu().numpy().reshape(-1, states.shape[-1]).T  # (H, B*T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant row: division by zero
        corr = np.corrcoef(rows)
    if not np.isfinite(corr).all():
        return math.nan
    eig = np.linalg.eig(corr)[0].real
    return float(-np.sum(np.log(eig + EIG_K) + 1.0 / (eig + EIG_K)))


def baseline_run(
    recipe: dict, sizes: ModelSizes, tokens: torch.Tensor, device: torch.device
) -> tuple[dict[str, float], float]:
    """({build, forward, scoring, total} seconds, score) of the straightforward way."""
    sync(device)
    t0 = time.perf_counter()
    # Weights drawn on the CPU generator, then moved, as the engine does: the same network
    # on every device (drawing on the GPU's generator would give a different one).
    torch.manual_seed(SEED)
    model = RNNLanguageModel(Recipe.from_dict(recipe), sizes, device="cpu").to(device).eval()
    sync(device)
    t1 = time.perf_counter()
    states = baseline_forward(model, tokens)
    sync(device)
    t2 = time.perf_counter()
    score = baseline_score(states)
    t3 = time.perf_counter()
    parts = {"build": t1 - t0, "forward": t2 - t1, "scoring": t3 - t2, "total": t3 - t0}
    return parts, score


# ----------------------------------------------------------------------------- report
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def agreement(engine: list[float], baseline: list[float]) -> tuple[float, float, int]:
    """(max relative difference, Kendall tau, pairs compared) over architectures where both
    scores are finite."""
    pairs = [(e, b) for e, b in zip(engine, baseline, strict=True) if math.isfinite(e + b)]
    if not pairs:
        return math.nan, math.nan, 0
    rel = max(abs(b - e) / max(abs(e), 1e-300) for e, b in pairs)
    if len(pairs) < 2:
        return float(rel), math.nan, 1
    tau = stats.kendalltau([e for e, _ in pairs], [b for _, b in pairs]).statistic
    return float(rel), float(tau), len(pairs)


def finite_or_null(value: object) -> object:
    """The value with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_null(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="architectures (0: all)")
    parser.add_argument("--corpus", type=Path, default=SHARED_DATA / "ptb")
    parser.add_argument("--logs", type=Path, default=SHARED_DATA / "nasbench_nlp_wt2/logs.zip")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, default=REPO / "experiments/out/bench_hidden_cov.json")
    args = parser.parse_args()

    if not (args.corpus / "test.txt").is_file() and not args.corpus.is_file():
        sys.exit(f"error: PTB corpus not found at {args.corpus} (need test.txt; pass --corpus)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available")
    device = torch.device(args.device)
    archs = load_recipes(args.logs, args.n)
    if not archs:
        sys.exit("error: no architectures to measure")

    # Setup outside the timing: corpus, vocabulary, input batch, the engine's Scorer.
    corpus = load_corpus(args.corpus, "test")
    setup = ScoringSetup(
        metrics=("hidden_cov",),
        embedding_size=EMBEDDING,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        batch_size=BATCH,
        bptt=BPTT,
        corpus=str(args.corpus),
        seed=SEED,
        device=args.device,
    )
    scorer = Scorer(setup, corpus)
    sizes = ModelSizes(len(corpus.vocab), EMBEDDING, HIDDEN, LAYERS)
    tokens = first_batch(corpus.split("test"), BATCH, BPTT).to(device)
    keys = [Recipe.from_dict(r).key for _, r in archs]

    load_before = os.getloadavg()[0]  # other work on the machine skews the timings

    # Warm-up of one architecture each (not timed).
    engine_run(scorer, keys[0], archs[0][1])
    baseline_run(archs[0][1], sizes, tokens, device)

    print(f"{len(archs)} architectures, device {device}, {torch.get_num_threads()} threads")
    print(f"{'#':>3} {'file':<44} {'engine s':>9} {'base s':>8} {'engine':>12} {'baseline':>12}")
    per_arch = []
    for i, ((name, recipe), key) in enumerate(zip(archs, keys, strict=True)):
        e_sec, e_score = engine_run(scorer, key, recipe)
        parts, b_score = baseline_run(recipe, sizes, tokens, device)
        per_arch.append(
            {
                "file": name,
                "key": key,
                "engine_seconds": e_sec,
                "baseline_seconds": parts,
                "engine_score": e_score,
                "baseline_score": b_score,
            }
        )
        print(
            f"{i:>3} {name[:44]:<44} {e_sec:>9.3f} {parts['total']:>8.3f} "
            f"{e_score:>12.2f} {b_score:>12.2f}"
        )

    e_secs = [a["engine_seconds"] for a in per_arch]
    b_secs = [a["baseline_seconds"]["total"] for a in per_arch]
    e_scores = [a["engine_score"] for a in per_arch]
    b_scores = [a["baseline_score"] for a in per_arch]
    max_rel, tau, compared = agreement(e_scores, b_scores)
    e_med, b_med = statistics.median(e_secs), statistics.median(b_secs)
    result = {
        "engine_seconds_per_arch_median": e_med,
        "engine_seconds_per_arch_mean": statistics.fmean(e_secs),
        "baseline_seconds_per_arch_median": b_med,
        "baseline_seconds_per_arch_mean": statistics.fmean(b_secs),
        "baseline_parts_median": {
            part: statistics.median(a["baseline_seconds"][part] for a in per_arch)
            for part in ("build", "forward", "scoring")
        },
        "speedup_median": b_med / e_med,
        "engine_archs_per_s": len(e_secs) / sum(e_secs),
        "baseline_archs_per_s": len(b_secs) / sum(b_secs),
        "n": len(per_arch),
        "engine_failed": sum(not math.isfinite(s) for s in e_scores),
        "baseline_nan": sum(not math.isfinite(s) for s in b_scores),
        "compared": compared,
        "max_rel_diff": max_rel,
        "kendall_tau_engine_vs_baseline": tau,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min_before": load_before,
        "torch_version": torch.__version__,
        "cpu": cpu_name(),
        "sizes": {
            "embedding": EMBEDDING,
            "hidden": HIDDEN,
            "layers": LAYERS,
            "batch": BATCH,
            "bptt": BPTT,
            "vocab": len(corpus.vocab),
        },
        "corpus": str(args.corpus),
        "per_arch": per_arch,
    }

    result = finite_or_null(result)
    summary = {k: v for k, v in result.items() if k != "per_arch"}
    print()
    print(f"engine   median {e_med:.3f} s/arch  mean {result['engine_seconds_per_arch_mean']:.3f}")
    print(
        f"baseline median {b_med:.3f} s/arch  mean {result['baseline_seconds_per_arch_mean']:.3f}"
        f"  (build {result['baseline_parts_median']['build']:.3f}, forward "
        f"{result['baseline_parts_median']['forward']:.3f}, scoring "
        f"{result['baseline_parts_median']['scoring']:.3f})"
    )
    print(f"speedup (median) {result['speedup_median']:.1f}x")
    print(
        f"agreement over {compared}: max rel diff {max_rel:.2e}, Kendall tau {tau:.4f}; "
        f"baseline NaN {result['baseline_nan']}, engine failed {result['engine_failed']}"
    )
    if (
        load_before > 0.5 * os.cpu_count()
        or max(statistics.fmean(e_secs) / e_med, statistics.fmean(b_secs) / b_med) > 1.5
    ):
        print("warning: timings look disturbed by other work on the machine; prefer medians")
    print(json.dumps(summary, indent=2, allow_nan=False))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
