"""nas-engine: training-free neural architecture search for language models."""

from __future__ import annotations

from typing import Any

from .config import SearchConfig
from .engine import run_search
from .errors import ConfigError
from .result import Result

__version__ = "0.1.0"


def search(
    space: str = "rnn", fitness: str = "hidden_cov", budget: int = 100, **options: Any
) -> list[Result]:
    """Run a search and return its result records (in evaluation order).

    ``options`` are the other fields of :class:`SearchConfig` (strategy, seed, out, corpus,
    hidden_size, ...). Results are also written to ``out`` as by the command line.
    """
    config = SearchConfig(space=space, fitness=fitness, budget=budget, **options)
    return run_search(config).results


__all__ = ["ConfigError", "Result", "SearchConfig", "search"]
