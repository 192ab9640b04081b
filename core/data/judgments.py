"""A person's judgments of candidate pairs: saved as they are made, atomically, one file per dataset.

The four labels are the ones people who clean datasets use: the same photo; a near-duplicate (the
same scene, edited: re-cropped, recoloured, re-encoded); similar but a different photo; different.
The first two mean "duplicate". Judgments are the user's work, not a cache: they live in
$REDEX_JUDGMENTS_DIR (default ~/.local/share/redundancy-explorer/judgments), one JSON file per
dataset fingerprint, rewritten whole through a temporary file, fsync and os.replace under a lock,
so a kill at any moment leaves the previous file or the new one, never half of one. Images are
never touched. A file that does not parse is refused with its path, never silently replaced.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

LABELS: tuple[str, ...] = ("same", "near", "similar", "different")
LABEL_TEXT = {"same": "Same photo", "near": "Near-duplicate (same scene, edited)",
              "similar": "Similar but different", "different": "Different"}
DUPLICATE_LABELS = frozenset({"same", "near"})
ENV_VAR = "REDEX_JUDGMENTS_DIR"
FORMAT_VERSION = 1


class JudgmentsError(RuntimeError):
    """The judgments file cannot be read; the message names it and says what to do."""


@dataclass(frozen=True)
class Judgment:
    a: int  # dataset index of the query (the test image, for leakage)
    b: int  # dataset index of its match
    label: str
    scope: str
    at: float  # seconds since the epoch

    @property
    def is_duplicate(self) -> bool:
        return self.label in DUPLICATE_LABELS


def pair_key(a: int, b: int) -> tuple[int, int]:
    """A pair's identity, whichever way round it was shown."""
    return (a, b) if a <= b else (b, a)


def judgments_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "redundancy-explorer" / "judgments"


class JudgmentStore:
    """The judgments of one dataset (by fingerprint). Every call reads the file, so tabs, the CLI and
    a restarted server all see the same judgments."""

    def __init__(self, fingerprint: str, folder: Path | None = None) -> None:
        self.fingerprint = fingerprint
        self.path = (folder or judgments_dir()) / f"{fingerprint}.json"

    @classmethod
    def from_file(cls, path: str | Path) -> JudgmentStore:
        p = Path(path)
        store = cls(p.stem, p.parent)
        store.path = p
        return store

    def load(self) -> dict[tuple[int, int], Judgment]:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT_VERSION}")
            items = [Judgment(int(r["a"]), int(r["b"]), str(r["label"]), str(r["scope"]), float(r["at"]))
                     for r in doc["judgments"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise JudgmentsError(f"cannot read the judgments in {self.path} ({exc}); it was left as it is: "
                                 "move it aside to start afresh") from exc
        if any(j.label not in LABELS for j in items):
            raise JudgmentsError(f"{self.path} holds a label outside {', '.join(LABELS)}; it was left as it is")
        return {pair_key(j.a, j.b): j for j in items}

    def judge(self, a: int, b: int, label: str, scope: str) -> Judgment:
        """Record (or change) the judgment of pair (a, b); saved before this returns."""
        if label not in LABELS:
            raise ValueError(f"unknown judgment {label!r}: must be one of {', '.join(LABELS)}")
        j = Judgment(int(a), int(b), label, scope, time.time())
        with self._lock():
            current = self.load()
            current[pair_key(j.a, j.b)] = j
            self._write(current.values())
        return j

    def forget(self, a: int, b: int) -> None:
        """Take back the judgment of pair (a, b), if there is one."""
        with self._lock():
            current = self.load()
            if current.pop(pair_key(int(a), int(b)), None) is not None:
                self._write(current.values())

    def _lock(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock")

    def _write(self, items: Iterable[Judgment]) -> None:
        rows = sorted(items, key=lambda j: j.at)
        doc = {"format": FORMAT_VERSION, "dataset": self.fingerprint,
               "judgments": [{"a": j.a, "b": j.b, "label": j.label, "scope": j.scope, "at": j.at} for j in rows]}
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
