"""The one owner of session-state keys and their defaults; every page calls ensure_state() first, then settings().

The defaults are those of core.pipelines.settings.Settings: a widget starts where the CLI starts.
AppTest runs one page file per instance, so no page may rely on another page (or app.py) having set
a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from core.data.datasets import Dataset
from core.features.embedding import EmbedConfig
from core.features.hashing import HashConfig
from core.features.projection import MAX_DRAWN
from core.pipelines.settings import (
    DUP_METHOD_TEXT,
    DUP_METHODS,
    NearDupSettings,
    SemanticSettings,
    Settings,
    TrainingSettings,
)
from core.selections.duplicates import max_radius

__all__ = ["DUP_METHODS", "DUP_METHOD_TEXT", "DEFAULTS", "ensure_state", "settings", "resolve_dup_method"]

_S = Settings(dataset=os.environ.get("REDEX_DATASET", "digits"))
SEM_MODES = ("keep fraction", "distance threshold")

DEFAULTS: dict[str, Any] = {
    "dataset": _S.dataset,  # a spec string for core.data.datasets.load_dataset
    "hash_method": _S.near_dup.hash.method,
    "hash_size": _S.near_dup.hash.hash_size,
    "dup_method": _S.near_dup.method,  # "auto": the pair score for photos of 16 px and more, else hashes
    "min_score": _S.near_dup.min_score,
    "radius": _S.near_dup.radius,
    "keep_rule": _S.near_dup.keep_rule,
    "embedding": _S.semantic.embedding.model,
    "embedding_switch_back": False,  # a page shows an untrained embedding until the trained one is ready
    "sem_mode": SEM_MODES[0],  # the Semantic page's control of the cut: a keep fraction or a distance threshold
    "keep_fraction": _S.semantic.keep_fraction,
    "distance": 0.05,  # the distance slider's start when the user switches to it
    "per_class": _S.semantic.per_class,
    "rep_policy": _S.semantic.policy,
    "train_recipe": _S.training.recipe,
    "train_epochs": _S.training.epochs,
    "train_budget": _S.training.budget,
    "exp_methods": ["semantic", "random"],
    "exp_seeds": 3,
    "retrain_on_change": None,  # None: on for small datasets, where a run takes seconds
    "review_scope": "leakage",
    "review_classes": [],
    "review_depth": 600,  # the leakage list's top 600 should hold nearly every test image with a twin in train
    "map_max_points": MAX_DRAWN,  # tests set fewer to see the sampled map
}

ALLOW_ENV = "REDEX_DATA_ROOTS"


PENDING_EMBEDDING = "embedding_pending"  # the embedding the next run shows (set by a switch after the widget exists)


def ensure_state() -> None:
    """Set every default that is not set yet, and keep the rest.

    Re-assigning a widget's key at the top of a run stops Streamlit from dropping its value
    when the page that holds the widget is not shown, so settings survive page switches.
    """
    for key, value in DEFAULTS.items():
        st.session_state[key] = st.session_state.get(key, value)
    if PENDING_EMBEDDING in st.session_state:  # a switch asked for after the widget was drawn: now, before it
        st.session_state["embedding"] = st.session_state.pop(PENDING_EMBEDDING)


def bound(key: str, where: str) -> dict[str, Any]:
    """Keyword arguments that bind a widget to the setting `key` through a widget key of its own (one per page).

    The setting itself is then a plain session value: a page that switches it in code (the way out while the
    network trains) never writes to a drawn widget, and the browser's memory of the same setting's widget on
    another page cannot bring an old value back (it did: Home's Embedding box undid the way out on the Map)."""
    wk = f"_{where}_{key}"
    st.session_state[wk] = st.session_state[key]  # before the widget exists in this run: allowed, and current

    def sync() -> None:
        st.session_state[key] = st.session_state[wk]

    return {"key": wk, "on_change": sync}


def settings() -> Settings:
    """The Settings the widgets hold now: every page, Export and the report compute from this one object."""
    ss = st.session_state
    hash_cfg = HashConfig(str(ss["hash_method"]), int(ss["hash_size"]))
    radius = min(int(ss["radius"]), max_radius(hash_cfg.bits))  # a smaller hash size holds a smaller radius
    near = NearDupSettings(method=str(ss["dup_method"]), min_score=float(ss["min_score"]), hash=hash_cfg,
                           radius=radius, keep_rule=str(ss["keep_rule"]))
    distance = float(ss["distance"]) if ss["sem_mode"] == SEM_MODES[1] else None
    semantic = SemanticSettings(EmbedConfig(model=str(ss["embedding"])), keep_fraction=float(ss["keep_fraction"]),
                                distance=distance, per_class=bool(ss["per_class"]), policy=str(ss["rep_policy"]))
    training = TrainingSettings(recipe=str(ss["train_recipe"]), epochs=float(ss["train_epochs"]),
                                budget=str(ss["train_budget"]))
    return Settings(str(ss["dataset"]), near, semantic, training)


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


def resolve_dup_method(ds: Dataset) -> str:
    """The Near-duplicates method: the user's choice, else the settings' rule (the pair score for images of 16 px
    and more where it can run, else hashes); written back so the method widget shows it."""
    method = settings().resolved(ds).near_dup.method
    st.session_state["dup_method"] = method
    return method
