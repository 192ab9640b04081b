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


class Stages:
    """The successive phases of one job on one scale: phase k of `plan` covers its weight's share of the bar, so a
    job reports one progress (and one time left) from start to end instead of a bar per phase restarting at zero.

    `plan` lists (phase name, weight) in the order they run (weights from measured times); a phase not in the
    plan keeps the bar where it is and shows its own message. A phase that does not run is skipped over.
    """

    def __init__(self, on_progress: ProgressFn, plan: tuple[tuple[str, float], ...], name: str) -> None:
        self.on_progress, self.name = on_progress, name
        total = sum(w for _, w in plan) or 1.0
        self.start: dict[str, float] = {}
        self.weight: dict[str, float] = {}
        acc = 0.0
        for phase, w in plan:
            self.start[phase], self.weight[phase] = acc / total, w / total
            acc += w
        self.at = 0.0

    def __call__(self, p: Progress) -> None:
        if p.phase in self.start:
            self.at = max(self.at, self.start[p.phase] + self.weight[p.phase] * p.fraction)
        counted = f" {p.done:,}/{p.total:,}" if p.total else ""
        self.on_progress(Progress(self.name, round(1000 * self.at), 1000, f"{p.phase}{counted} {p.message}".strip()))
