"""``python -m nas_engine.benchmark``: see ``--help``."""

import sys

from .cli.benchmark import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main())
