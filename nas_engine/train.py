"""``python -m nas_engine.train``: see ``--help``."""

import sys

from .train_cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
