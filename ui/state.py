"""The one owner of session-state keys and their defaults; every page calls ensure_state() first.

AppTest runs one page file per instance, so no page may rely on another page (or app.py)
having set a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from core.duplicates import DEFAULT_KEEP_RULE, DEFAULT_RADIUS
from core.hashing import HashConfig
from core.projection import MAX_DRAWN
from core.review import DEFAULT_MIN_SCORE
from core.semantic import DEFAULT_KEEP_FRACTION

DUP_METHODS = ("pair score", "hash")
DUP_METHOD_TEXT = {"pair score": "Pair score (candidates)", "hash": "Perceptual hash (CE-Dedup)"}

DEFAULTS: dict[str, Any] = {
    "dataset": os.environ.get("REDEX_DATASET", "digits"),  # a spec string for core.datasets.load_dataset
    "hash_method": HashConfig().method,
    "hash_size": HashConfig().hash_size,
    "dup_method": "auto",  # the pair score for photos of 16 px and more, else hashes (see resolve_dup_method)
    "min_score": DEFAULT_MIN_SCORE,
    "radius": DEFAULT_RADIUS,
    "keep_rule": DEFAULT_KEEP_RULE,
    "embedding": "trained",
    "sem_mode": "keep fraction",
    "keep_fraction": DEFAULT_KEEP_FRACTION,
    "distance": 0.05,
    "per_class": False,
    "rep_policy": "mean",
    "exp_methods": ["semantic", "hash", "random"],
    "exp_seeds": 3,
    "exp_epochs": 0,  # 0: the budget recipe's epochs for this dataset and device
    "retrain_on_change": None,  # None: on for small datasets, where a run takes seconds
    "review_scope": "leakage",
    "review_classes": [],
    "review_depth": 600,  # the leakage list's top 600 should hold nearly every test image with a twin in train
    "map_max_points": MAX_DRAWN,  # tests set fewer to see the sampled map
}

ALLOW_ENV = "REDEX_DATA_ROOTS"


def ensure_state() -> None:
    """Set every default that is not set yet, and keep the rest.

    Re-assigning a widget's key at the top of a run stops Streamlit from dropping its value
    when the page that holds the widget is not shown, so settings survive page switches.
    """
    for key, value in DEFAULTS.items():
        st.session_state[key] = st.session_state.get(key, value)


def allowed_roots() -> list[Path]:
    """Folders the app may read when REDEX_DATA_ROOTS is set (':'-separated); empty means any."""
    raw = os.environ.get(ALLOW_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def check_allowed(spec: str) -> str | None:
    """None if the dataset's folder may be read, else the reason it may not."""
    roots = allowed_roots()
    _, _, path = spec.partition(":")
    if not roots or not path:
        return None
    target = Path(path).expanduser().resolve()
    if any(target == r or r in target.parents for r in roots):
        return None
    return f"{target} is outside the folders this app may read ({ALLOW_ENV}: {', '.join(map(str, roots))})"


def resolve_dup_method(image_side: int) -> str:
    """The Near-duplicates method: the user's choice, else the pair score for images of at least 16 pixels
    (its default minimum is calibrated on 32-pixel photos; on 8-pixel digits most images of a class
    correlate above it) and hashes for smaller ones."""
    if st.session_state["dup_method"] == "auto":
        st.session_state["dup_method"] = DUP_METHODS[0] if image_side >= 16 else "hash"
    return str(st.session_state["dup_method"])
