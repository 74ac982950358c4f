"""Search spaces known to nas-engine, by name."""

from __future__ import annotations

from .base import SearchSpace


def space_names() -> list[str]:
    return ["rnn", "bert"]


def get_space(name: str, restriction: str | None = None) -> SearchSpace:
    """The space ``name``; ``restriction`` (bert only) narrows what it samples and mutates
    (see ``search_spaces.bert.restriction``)."""
    if restriction and name != "bert":
        raise ValueError(f"space {name!r} takes no restriction (only bert does)")
    if name == "rnn":
        from .rnn import RNNSpace

        return RNNSpace()
    if name == "bert":
        from .bert import BertSpace

        return BertSpace(restriction)
    raise KeyError(f"unknown space {name!r} (known: {', '.join(space_names())})")


__all__ = ["SearchSpace", "get_space", "space_names"]
