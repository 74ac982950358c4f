"""The one parameter count every space and report uses."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """The trainable parameters of ``model`` (a 'meta' model counts as well as a real one)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
