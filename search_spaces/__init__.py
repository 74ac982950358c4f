"""Search spaces known to nas-engine, by name."""

from __future__ import annotations

from .base import SearchSpace


def space_names() -> list[str]:
    return ["rnn"]


def get_space(name: str) -> SearchSpace:
    if name == "rnn":
        from .rnn import RNNSpace

        return RNNSpace()
    raise KeyError(f"unknown space {name!r} (known: {', '.join(space_names())})")


__all__ = ["SearchSpace", "get_space", "space_names"]
