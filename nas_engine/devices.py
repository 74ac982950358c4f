"""The one device resolver: what ``--device`` means everywhere."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """cpu, cuda, cuda:N or auto (cuda where available); a CUDA device that is absent raises
    ValueError, which each command reports as bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device
