"""nas-engine: training-free neural architecture search for language models."""

from __future__ import annotations

from typing import Any

from .config import SearchConfig
from .engine import run_search
from .errors import ConfigError
from .result import Result
from .runs import Run, load_run

__version__ = "0.1.0"


def search(
    space: str = "rnn", fitness: str | None = None, budget: int = 100, **options: Any
) -> Run:
    """Run a search; return it as a :class:`Run` (its ``results`` in evaluation order, also
    the run's items; ``best``, ``top(k)``, ``answer``, ``to_dataframe()``).

    ``fitness`` None: the space's default (rnn: hidden_cov; bert: head_confidence).
    ``options`` are the other fields of :class:`SearchConfig` (strategy, seed, out, corpus,
    hidden_size, plugins, ...). Results are also written to ``out`` as by the command line.
    """
    config = SearchConfig(space=space, fitness=fitness, budget=budget, **options)
    outcome = run_search(config)
    return Run(outcome.out, config, outcome.results, outcome.summary, config.parsed_fitness)


__all__ = ["ConfigError", "Result", "Run", "SearchConfig", "load_run", "search"]
