"""Helpers the ``hidden_cov`` benchmarks share (experiments/bench_hidden_cov.py,
bench_scoring.py, bench_memory.py, count_launches.py): the NAS-Bench-NLP recipes they measure,
the baseline ("the straightforward way", as the paper's code scores an architecture) they
time the engine against, and the reporting bits (the CPU's name, the agreement of two score
lists, strict-JSON values).

The baseline: build the model (seed 0, weights drawn on the CPU), autograd on, interpret the
cell graph node by node (``RecipeCell.step``) for every step of all layers, run the decoder,
then on the host ``np.corrcoef`` of the (H, B*T) matrix of states entering layer 1 and a
general eigen-solver ``np.linalg.eig`` (real parts). Build, forward and scoring are timed
separately.

Paths are the callers' to give: nothing here knows where the repository or its data lie.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel

EIG_K = 1e-5
SEED = 0


# ----------------------------------------------------------------------------- inputs
def load_recipes(logs: Path, n: int) -> list[tuple[str, dict]]:
    """(file name, recipe dict) of the first ``n`` "OK" logs in sorted name order (0: all).
    Exits with an error message when ``logs`` is not a file (these are scripts' inputs)."""
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
