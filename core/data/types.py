"""Shared type aliases and the one progress protocol used by the CLI (tqdm) and the app (st.progress)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Images = NDArray[np.uint8]  # (N, H, W, C) uint8, C = 1 (gray) or 3 (RGB)
Labels = NDArray[np.int64]  # (N,) class index
Codes = NDArray[np.uint8]  # (N, bits // 8) bit-packed hashes, imagehash's bit order


@dataclass(frozen=True)
class Progress:
    """One progress report: `done` of `total` units of `phase` (total 0 means unknown)."""

    phase: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


ProgressFn = Callable[[Progress], None]


def report(on_progress: ProgressFn | None, phase: str, done: int, total: int, message: str = "") -> None:
    """Call `on_progress` if one was given; keeps call sites one line long."""
    if on_progress is not None:
        on_progress(Progress(phase, done, total, message))


class Cancelled(Exception):
    """Raised inside a long computation when its stop event is set."""
