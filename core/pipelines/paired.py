"""Paired differences between experiment arms, seed by seed, with a 95% interval and a plain verdict.

Arms that share a seed share the network's initial weights and every image's augmentation
(core.features.training draws both from the seed alone), so `a - b` read seed by seed removes most of
the seed-to-seed noise that an unpaired comparison of means would carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over the seeds both arms ran, with its two-sided 95% t interval (in accuracy units)."""

    a: str
    b: str
    fraction: float
    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def shown(self) -> bool:
        """True when the interval excludes 0: the sign of the difference is supported by these seeds."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def sentence(self) -> str:
        """The difference in words, in points, e.g. 'semantic beats random at keep 0.70 by 0.80 points (...)'."""
        keep = f"at keep {self.fraction:.2f}"
        if self.n < 2:
            return f"{self.a} − {self.b} {keep}: {100 * self.mean:+.2f} points from one seed; no interval yet."
        interval = f"95% interval {100 * self.low:+.2f} to {100 * self.high:+.2f}, {self.n} paired seeds"
        if not self.shown:
            return (f"{self.a} − {self.b} {keep}: {100 * self.mean:+.2f} points ({interval}): no difference is shown "
                    f"at this number of seeds.")
        verb = "beats" if self.mean > 0 else "trails"
        return f"{self.a} {verb} {self.b} {keep} by {abs(100 * self.mean):.2f} points ({interval})."


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], *, names: tuple[str, str],
                      fraction: float) -> PairedDifference | None:
    """The paired difference over the seeds present in both `a` and `b` (seed -> accuracy); None if none is."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    d = np.array([a[s] - b[s] for s in seeds], np.float64)
    n, mean = len(d), float(d.mean())
    if n < 2:
        return PairedDifference(names[0], names[1], fraction, n, mean, float("nan"), float("nan"), float("nan"))
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return PairedDifference(names[0], names[1], fraction, n, mean, sd, mean - half, mean + half)


def by_seed(results: Iterable[tuple[str, float, int, float]], method: str, fraction: float) -> dict[int, float]:
    """seed -> accuracy of one arm, from (method, fraction, seed, accuracy) rows."""
    return {seed: acc for m, f, seed, acc in results if m == method and abs(f - fraction) < 1e-9}
