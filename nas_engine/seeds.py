"""Seeds derived from a run's seed, one per purpose."""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose's random draws, fixed by the run's seed and the purpose: two
    purposes never share a stream, and adding a purpose changes no other's draws."""
    digest = hashlib.sha256(f"nas-engine:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator seeded for ``purpose`` (never torch's global generator)."""
    return torch.Generator(device="cpu").manual_seed(derived_seed(seed, purpose))
