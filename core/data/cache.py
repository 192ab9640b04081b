"""The on-disk cache: the source of truth shared by the app's tabs, the CLI and the tests.

Keys are content fingerprints plus parameters plus FORMAT_VERSION, so a changed dataset, a
changed parameter or a changed file format can never read back an old entry. Writes go to a
unique temporary name in the same folder and are moved into place with os.replace, so an
interrupted run leaves only a `*.tmp*` file that is never read. Entries are `.npz` (zip with a
CRC per member) or JSON: no pickle. A corrupt entry is logged, deleted and recomputed.
A file lock per key makes a second process wait for the first and then read its result
instead of computing the same thing twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from filelock import FileLock, Timeout
from numpy.typing import NDArray

FORMAT_VERSION = 1
ENV_VAR = "REDEX_CACHE_DIR"

log = logging.getLogger("redex.cache")

Arrays = dict[str, NDArray[Any]]
T = TypeVar("T")


class CacheStats:
    """Process-wide counters, so tests and the app footer can tell a hit from a recomputation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def snapshot(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}


stats = CacheStats()


def cache_dir() -> Path:
    """The cache folder: $REDEX_CACHE_DIR, else ~/.cache/redundancy-explorer/v{FORMAT_VERSION}."""
    env = os.environ.get(ENV_VAR)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "redundancy-explorer"
    path = root / f"v{FORMAT_VERSION}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def make_key(kind: str, config: Any, *fingerprints: str) -> str:
    """A cache key: `kind-<sha256 of sorted JSON of config, fingerprints and FORMAT_VERSION>`.

    Every field of a dataclass config takes part, so a new field can never be forgotten.
    """
    payload = json.dumps(
        {"kind": kind, "config": _plain(config), "inputs": list(fingerprints), "format": FORMAT_VERSION},
        sort_keys=True,
        default=str,
    )
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:32]}"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_npz(path: Path, arrays: Mapping[str, NDArray[Any]]) -> None:
    """Write arrays atomically: a temporary file in the same folder, fsync, then os.replace."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(path: Path) -> Arrays:
    """Read every member now (so zip CRCs are checked) and refuse pickled objects."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_json(path: Path, value: Any) -> None:
    tmp = _tmp_name(path)
    try:
        tmp.write_text(json.dumps(_plain(value), indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError)


def _load_or_drop(path: Path, reader: Callable[[Path], T]) -> T | None:
    if not path.exists():
        return None
    try:
        return reader(path)
    except _READ_ERRORS as exc:
        stats.count("corrupt")
        log.warning("cache entry %s is unreadable (%s: %s); recomputing", path.name, type(exc).__name__, exc)
        _remove(path)
        return None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ComputeGate(Protocol):
    """Who may compute now: a background job waits for the machine's CPU before a cache miss computes."""

    def enter(self) -> None:
        """Block until this thread may compute (idempotent)."""

    def leave(self) -> bool:
        """Let others compute while this thread waits on another's result; whether it held the CPU."""


_gate = threading.local()


@contextmanager
def compute_gate(gate: ComputeGate | None) -> Iterator[None]:
    """Every cache miss computed in this thread (and only this one) first passes `gate`."""
    before = getattr(_gate, "value", None)
    _gate.value = gate
    try:
        yield
    finally:
        _gate.value = before


def _lock(path: Path) -> FileLock:
    """The key's file lock; while it waits on another's computation the thread's gate lets others compute."""
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        gate = getattr(_gate, "value", None)
        held = gate.leave() if gate is not None else False
        lock.acquire()
        if held and gate is not None:
            gate.enter()
    return lock


def _cached(path: Path, compute: Callable[[], T], reader: Callable[[Path], T], writer: Callable[[Path, T], None]) -> T:
    found = _load_or_drop(path, reader)
    if found is not None:
        stats.count("hits")
        log.debug("cache hit %s", path.name)
        return found
    lock = _lock(path)
    try:
        found = _load_or_drop(path, reader)  # another process may have finished it while we waited
        if found is not None:
            stats.count("hits")
            return found
        gate = getattr(_gate, "value", None)
        if gate is not None:
            gate.enter()
        stats.count("misses")
        log.debug("cache miss %s", path.name)
        value = compute()
        writer(path, value)
        return value
    finally:
        lock.release()


def cached_arrays(key: str, compute: Callable[[], Mapping[str, NDArray[Any]]]) -> Arrays:
    """Return the arrays stored under `key`, computing and storing them on a miss."""
    path = cache_dir() / f"{key}.npz"

    def produce() -> Arrays:
        return {k: np.asarray(v) for k, v in compute().items()}

    return _cached(path, produce, read_npz, write_npz)


def cached_json(key: str, compute: Callable[[], Any]) -> Any:
    """Return the JSON value stored under `key`, computing and storing it on a miss."""
    path = cache_dir() / f"{key}.json"
    return _cached(path, lambda: _plain(compute()), lambda p: json.loads(p.read_text()), write_json)


def peek_json(key: str) -> Any:
    """The JSON stored under `key`, or None when absent or unreadable (never computes)."""
    return _load_or_drop(cache_dir() / f"{key}.json", lambda p: json.loads(p.read_text()))


def peek_arrays(key: str) -> Arrays | None:
    """The arrays stored under `key`, or None when absent or unreadable (never computes)."""
    return _load_or_drop(cache_dir() / f"{key}.npz", read_npz)


def cached_dir(key: str, build: Callable[[Path], None], validate: Callable[[Path], T]) -> T:
    """A cached folder: `build` fills a temporary folder, which is renamed into place whole.

    `validate` reads the finished folder and raises one of the read errors if it is damaged;
    used for big arrays that are memory-mapped rather than loaded.
    """
    path = cache_dir() / key

    def produce() -> T:
        tmp = _tmp_name(path)
        tmp.mkdir()
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            _remove(tmp)
        return validate(path)

    return _cached(path, produce, validate, lambda p, v: None)
