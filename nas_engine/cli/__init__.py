"""The command lines: one module per command, sharing ``options``."""

from .benchmark import benchmark_main
from .search import search_main
from .train import train_main

__all__ = ["benchmark_main", "search_main", "train_main"]
