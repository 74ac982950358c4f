"""``python -m nas_engine.train``: see ``--help``."""

import sys

from .cli.train import train_main

if __name__ == "__main__":
    sys.exit(train_main())
