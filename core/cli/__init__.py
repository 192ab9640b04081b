"""`python -m core ...`: the same computations as the app, from a terminal, one module per command group.

Long steps show tqdm bars fed by the one progress protocol; every error is one line on stderr and a
non-zero exit, never a traceback. Every command builds the same `Settings` the app does.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import numpy as np

import core.pipelines.results  # noqa: F401  (registers the 'scale:' source: a Ray result folder opens as a dataset)
from core.cli import data, experiments, report, scale, semantic
from core.cli.common import TqdmProgress
from core.data import cache
from core.data.datasets import DatasetError
from core.data.shards import ScaleError
from core.pipelines.report import ReportError

GROUPS = (data, semantic, experiments, report, scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Redundancy Explorer from the command line")
    parser.add_argument("--cache-dir", help=f"cache folder (default ${cache.ENV_VAR} or ~/.cache/redundancy-explorer)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ[cache.ENV_VAR] = args.cache_dir
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    np.set_printoptions(suppress=True)
    try:
        return int(args.fn(args, TqdmProgress()))
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, PermissionError, ScaleError,
            ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written is kept", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser"]
