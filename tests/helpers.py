"""Helpers shared by the test modules: reference-data paths and tiny inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nas_engine.corpus import Corpus, Vocabulary
from nas_engine.scoring import ScoringSetup

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
PTB_DIR = DATA_DIR / "ptb"
LOGS_ZIP = DATA_DIR / "nasbench_nlp_wt2" / "logs.zip"
EXAMPLES_JSON = DATA_DIR / "nasbench_nlp_wt2" / "recepies_example.json"


def require(path: Path) -> Path:
    """Skip the calling test, with the reason, when reference data is absent."""
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (expected ../shared/data beside the repo)")
    return path


def read_logs() -> list[tuple[str, dict]]:
    """(file name, parsed JSON) of every NAS-Bench-NLP log in logs.zip, sorted by name."""
    with zipfile.ZipFile(require(LOGS_ZIP)) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".json"))
        return [(n, json.loads(zf.read(n))) for n in names]


def token_corpus(vocab_size: int = 50, n_tokens: int = 2000, seed: int = 0) -> Corpus:
    """A small in-memory corpus of uniformly random token ids (all splits the same stream)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (n_tokens,), generator=gen)
    vocab = Vocabulary()
    for i in range(vocab_size):
        vocab.add(f"t{i}")
    return Corpus("random test tokens", vocab, {"train": ids, "valid": ids, "test": ids})


def nbbert_entry(index: int, hidden: int, layers: list[tuple], glue: float) -> dict:
    """A NAS-Bench-BERT benchmark entry, as the benchmark's JSON holds it; ``layers`` are
    (operation, parameter, heads, feed-forward depth), each feed-forward layer 32 wide."""
    encoder_layers = [
        {
            "operation_type": op,
            "operation_parameter": param,
            "num_operation_heads": heads,
            "feed_forward_dimension": 32,
            "num_feed_forward": depth,
        }
        for op, param, heads, depth in layers
    ]
    overrides = {"hidden_size": hidden, "nas_config": {"encoder_layers": encoder_layers}}
    return {
        "id": index,
        "completed": True,
        "scores": {"glue": glue},
        "hparams": {"model_hparam_overrides": overrides},
    }


def tiny_setup(**changes) -> ScoringSetup:
    """A three-layer RNN scoring setup small enough for any test (fields as ``changes``)."""
    tiny = ScoringSetup(
        embedding_size=12, hidden_size=16, num_layers=3, batch_size=6, bptt=9, seed=1
    )
    return dataclasses.replace(tiny, **changes)


def run_module(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` from the repository root, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


# Operators whose CUDA kernels make the host wait for the device: a value read back (item,
# bool, float), an output whose size depends on the data (nonzero, unique, a boolean mask),
# or a comparison returned to Python.
HOST_SYNC_OPERATORS = frozenset(
    {
        "_local_scalar_dense",
        "is_nonzero",
        "equal",
        "nonzero",
        "argwhere",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "unique_dim_consecutive",
        "repeat_interleave",
        "bincount",
    }
)


class HostSyncWatch(TorchDispatchMode):
    """Records every dispatched operator that would synchronise the host with a CUDA device
    (see HOST_SYNC_OPERATORS; also indexing with a boolean mask, which runs ``nonzero``), so
    that a CPU test can check that a loop would run ahead of a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_SYNC_OPERATORS:
            self.syncs.append(name)
        elif name in {"index", "index_put", "index_put_", "_index_put_impl_"}:
            indices = args[1] if len(args) > 1 else ()
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self.syncs.append(f"{name} with a boolean mask")
        return func(*args, **(kwargs or {}))


@contextmanager
def cuda_sync_detector(mode: str) -> Iterator[None]:
    """torch's synchronisation detector in ``mode`` ("warn", "error") while the block runs,
    as it was after (CUDA only)."""
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


def cuda_syncs_forbidden():
    """The detector raising on a synchronisation while the block runs."""
    return cuda_sync_detector("error")


@contextmanager
def cuda_syncs_counted() -> Iterator[list[str]]:
    """The detector's messages while the block runs, one per synchronisation."""
    caught: list[str] = []
    with cuda_sync_detector("warn"), warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield caught
    caught.extend(str(r.message) for r in records if "synchroniz" in str(r.message))
