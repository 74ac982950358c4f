"""Plugins: user modules that register metrics (``nas_engine.metrics.register``) or spaces
(``nas_engine.spaces.register_space``) when imported. The driver imports them before it
checks the configuration, and every process that scores (a Ray worker too) imports them
before it builds its scorer."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError


def load_plugins(modules: Sequence[str], paths: Sequence[str] = ()) -> tuple[str, ...]:
    """Import each module of ``modules`` (after putting ``paths`` on the import path, where a
    worker process lacks them); return the folders they were found in, for the workers.

    Raises :class:`ConfigError` naming a module that cannot be imported, with the reason."""
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    found: list[str] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import error of the user's module is bad input
            raise ConfigError(
                f"--plugin {name}: cannot import it ({type(exc).__name__}: {exc})"
            ) from None
        found.append(_import_root(name, getattr(module, "__file__", None)))
    return tuple(dict.fromkeys(p for p in found if p))


def _import_root(name: str, file: str | None) -> str:
    """The folder on the import path that module ``name`` (at ``file``) was found in."""
    if file is None:
        return ""
    root = Path(file).resolve().parent
    depth = name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    return str(root)
