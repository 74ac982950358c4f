"""Search spaces by name: the built-in ones are imported the first time they are asked for,
others register themselves (a plugin module's import, see :mod:`nas_engine.plugins`)."""

from __future__ import annotations

import importlib

from .base import SearchSpace

# The built-in spaces' packages: imported by name, so that the engine imports no space package
# (each imports the engine's interfaces instead).
BUILTIN_SPACES = {"rnn": "search_spaces.rnn", "bert": "search_spaces.bert"}

_SPACES: dict[str, type[SearchSpace]] = {}  # filled by register_space, at import of a space


def register_space(space: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``space`` known under ``space.name``."""
    name = getattr(space, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{space.__name__} has no name")
    known = _SPACES.get(name)
    if known is not None and known is not space:
        if (known.__module__, known.__qualname__) != (space.__module__, space.__qualname__):
            raise ValueError(f"space {name!r} is registered twice")
    _SPACES[name] = space
    return space


def load_space(name: str) -> type[SearchSpace]:
    """The class of space ``name``; KeyError naming the known spaces."""
    if name not in _SPACES and name in BUILTIN_SPACES:
        importlib.import_module(BUILTIN_SPACES[name])
    if name not in _SPACES:
        raise KeyError(f"unknown space {name!r} (known: {', '.join(space_names())})")
    return _SPACES[name]


def get_space(name: str, restriction: str | None = None) -> SearchSpace:
    """The space ``name``; ``restriction`` narrows what it samples and mutates, where the
    space takes one (bert: ``search_spaces.bert.restriction``)."""
    space = load_space(name)
    if restriction:
        if not space.restrictable:
            takes = [n for n in space_names() if load_space(n).restrictable]
            raise ValueError(
                f"space {name!r} takes no restriction (only {', '.join(takes) or 'none'} does)"
            )
        return space(restriction)
    return space()


def space_names() -> list[str]:
    """The built-in spaces, then any registered by plugins."""
    return list(dict.fromkeys([*BUILTIN_SPACES, *_SPACES]))


def load_all_spaces() -> None:
    """Import every built-in space (and so register its metrics): for listings."""
    for name in BUILTIN_SPACES:
        load_space(name)
