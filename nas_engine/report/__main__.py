"""``python -m nas_engine.report OUT``: see ``--help``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
