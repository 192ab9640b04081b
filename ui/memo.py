"""The in-memory layer over the disk cache: loaded results, one process-wide LRU shared by every tab."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import streamlit as st


class Memo:
    """A thread-safe LRU of loaded results (datasets, indexes, embeddings, dendrograms, maps)."""

    def __init__(self, size: int = 24) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

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
