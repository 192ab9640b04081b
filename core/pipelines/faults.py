"""Fault injection for the tests of the Ray path, kept out of every computation's own module.

REDEX_TEST_KILL=STEP:SHARD makes the worker that reaches that point die once (os._exit), as a
lost machine would; the tests then check that Ray's retry gives the undisturbed result.
"""

from __future__ import annotations

import os
from pathlib import Path


def kill_point(step: str, index: int, out: Path) -> None:
    """Fault injection for the tests: REDEX_TEST_KILL=STEP:SHARD makes this worker die once, mid-job."""
    if os.environ.get("REDEX_TEST_KILL") == f"{step}:{index}":
        marker = out / f"killed-{step}-{index}"
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
