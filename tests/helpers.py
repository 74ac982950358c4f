"""Helpers shared by the test modules: reference-data paths and tiny inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from nas_engine.corpus import Corpus, Vocabulary

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
