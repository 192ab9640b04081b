"""What pages draw, loaded once per process and computed with a progress bar when not cached.

The disk cache in core is the source of truth (shared by tabs, the CLI and restarts); this
module only keeps the loaded objects in memory (a small LRU held by st.cache_resource), so a
rerun, a page switch or a second tab costs nothing. Computing happens in the script thread,
where the progress callback may draw.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core import cache
from core.datasets import Dataset, DatasetError, load_dataset
from core.duplicates import DuplicateIndex, build_index
from core.embedding import EmbedConfig, Embeddings, EmbeddingUnavailable, embed
from core.hashing import HashConfig
from core.jobs import JobRegistry
from core.projection import Projection, UmapConfig, cached_projection
from core.results import results_version
from core.semantic import Dendrograms, cached_dendrograms
from core.types import Progress
from ui.state import check_allowed

T = TypeVar("T")


class Memo:
    """A thread-safe LRU of loaded results, one lock per key so two tabs never compute one thing twice."""

    def __init__(self, size: int = 24) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@st.cache_resource
def memo() -> Memo:
    return Memo()


def remembered(key: str, label: str, compute: Callable[[Callable[[Progress], None]], T]) -> T:
    """The memoised value of `key`, else compute it with a live progress bar, then remember it."""
    m = memo()
    found = m.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    with m.key_lock(key):
        found = m.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        bar = st.progress(0.0, text=label)

        def on_progress(p: Progress) -> None:
            total = f" {p.done:,}/{p.total:,}" if p.total else ""
            bar.progress(p.fraction, text=f"{label}: {p.phase}{total} {p.message}".strip())

        value = compute(on_progress)
        bar.empty()
        m.put(key, value)
        return value


def dataset(spec: str) -> Dataset:
    """The dataset named by `spec`, or DatasetError with what to do (also for a refused folder)."""
    refused = check_allowed(spec)
    if refused:
        raise DatasetError(refused)
    source, _, path = spec.partition(":")
    version = f":{results_version(path)}" if source.strip().lower() == "scale" else ""  # a finished step reopens it
    ds = remembered(f"ds:{spec}{version}", "Opening the dataset", lambda p: load_dataset(spec, on_progress=p))
    refused = check_allowed(ds.precomputed.source) if ds.precomputed is not None else None
    if refused:  # a Ray result folder shows images from its job's source: that must be allowed too
        raise DatasetError(f"the images of this result folder come from {ds.precomputed.source}, and {refused}")
    return ds


def dup_index(ds: Dataset, method: str, size: int) -> DuplicateIndex:
    """The hash index of `ds`; a Ray result folder offers only the hashes its job computed."""
    cfg = HashConfig(method, size)
    have = ds.precomputed.codes if ds.precomputed is not None and not ds.in_memory else None
    if have and (method, size) not in have:
        cfg = HashConfig(*next(iter(have)))
        st.info(f"This result folder holds the {cfg.label} hashes its Ray job computed; showing those.",
                icon=":material/info:")
    return remembered(f"dup:{ds.fingerprint}:{cfg.label}", f"Hashing ({cfg.label}) and finding pairs",
                      lambda p: build_index(ds, cfg, p))


def embeddings(ds: Dataset, model: str) -> Embeddings:
    """The chosen embedding; a pretrained one whose weights are missing falls back to 'trained'."""
    try:
        return remembered(f"emb:{ds.fingerprint}:{model}", f"Embedding ({model})",
                          lambda p: embed(ds, EmbedConfig(model=model), on_progress=p))
    except EmbeddingUnavailable as exc:
        if model == "trained":
            raise
        st.warning(str(exc))
        return embeddings(ds, "trained")


def dendrograms(ds: Dataset, emb: Embeddings) -> Dendrograms:
    return remembered(f"dendro:{emb.key}", "Clustering each class",
                      lambda p: cached_dendrograms(ds, emb.vectors, emb.key, on_progress=p))


def projection(emb: Embeddings) -> Projection:
    return remembered(f"umap:{emb.key}", "Computing the UMAP map", lambda p: cached_projection(emb.vectors, emb.key,
                                                                                              UmapConfig(), p))


@st.cache_resource
def job_registry() -> JobRegistry:
    """One background-job registry per process: every tab sees the same jobs."""
    return JobRegistry(workers=1)


def cache_status() -> str:
    s = cache.stats.snapshot()
    return f"disk cache {cache.cache_dir()} · {s['hits']} hits, {s['misses']} computed, {s['corrupt']} healed"
