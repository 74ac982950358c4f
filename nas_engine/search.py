"""``python -m nas_engine.search``: see ``--help``."""

import sys

from .cli.search import search_main

if __name__ == "__main__":
    sys.exit(search_main())
