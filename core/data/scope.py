"""Where a near-duplicate pair lies: one vocabulary for hashes, candidates, pages, the CLI and exports."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.typing import NDArray


class Scope(StrEnum):
    """A pair's scope. The values are the names the CLI, the cache and saved judgments use."""

    LEAKAGE = "leakage"  # a test image and a training image
    WITHIN = "within"  # two training images of one class
    CROSS = "cross"  # two training images of different classes (a label conflict)

    @property
    def label(self) -> str:
        """The scope for people, as every page and report names it."""
        return _LABELS[self]

    @property
    def code(self) -> int:
        """The scope as a small integer (arrays of pairs store it as int8)."""
        return _CODES[self]


_LABELS = {Scope.LEAKAGE: "Train/test leakage", Scope.WITHIN: "Within class",
           Scope.CROSS: "Across classes (label conflicts)"}
_CODES = {Scope.WITHIN: 0, Scope.CROSS: 1, Scope.LEAKAGE: 2}
SCOPES = (Scope.LEAKAGE, Scope.WITHIN, Scope.CROSS)
BY_CODE = {code: scope for scope, code in _CODES.items()}


def scope_codes(i: NDArray[np.int64], j: NDArray[np.int64], labels: NDArray[np.int64],
                split: NDArray[np.int8]) -> NDArray[np.int8]:
    """Each pair's Scope.code: different splits are leakage; same split and label, within; else across."""
    same_split = split[i] == split[j]
    same_label = labels[i] == labels[j]
    within, cross, leak = Scope.WITHIN.code, Scope.CROSS.code, Scope.LEAKAGE.code
    return np.where(~same_split, leak, np.where(same_label, within, cross)).astype(np.int8)


def parse(value: str) -> Scope:
    """A scope from its name; the former hash spellings (within-class, cross-class, train-test) still read."""
    former = {"within-class": Scope.WITHIN, "cross-class": Scope.CROSS, "train-test": Scope.LEAKAGE}
    if value in former:
        return former[value]
    try:
        return Scope(value)
    except ValueError:
        raise ValueError(f"unknown scope {value!r}: must be one of {', '.join(SCOPES)}") from None
