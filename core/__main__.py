"""Entry point for `python -m core`."""

import sys

from core.cli import main

if __name__ == "__main__":  # decode workers are spawned and re-import this module: no side effects then
    sys.exit(main())
