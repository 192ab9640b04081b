"""The near-duplicate result at the current settings, for every page: Home, Near-duplicates, Map, Export.

One path: the settings (ui.state.settings), the saved judgments, and each scope's candidates or the hash
index as background steps (ui.data), combined by core.pipelines.near_duplicates. A scope still being
computed is absent from the result; its progress is drawn where the caller asked for it.
"""

from __future__ import annotations

import streamlit as st

from core.data.datasets import Dataset
from core.data.judgments import JudgmentsError, JudgmentStore
from core.data.scope import SCOPES, Scope
from core.pipelines.near_duplicates import NearDuplicates, from_candidates, from_index
from core.pipelines.settings import HASH, NearDupSettings
from core.selections.candidates import Candidates
from core.selections.review import Judged
from ui import data
from ui.state import settings


def judgments(ds: Dataset) -> Judged:
    """The saved judgments of ds; an unreadable file is shown as an error and counts as none."""
    try:
        return JudgmentStore(ds.fingerprint).load()
    except JudgmentsError as exc:
        st.error(str(exc), icon=":material/error:")
        return {}


def near_settings(ds: Dataset) -> NearDupSettings:
    """The near-duplicate settings, 'auto' resolved for this dataset."""
    return settings().resolved(ds).near_dup


def candidates(ds: Dataset, scopes: tuple[Scope, ...] = SCOPES) -> dict[Scope, Candidates | None]:
    """Each scope's candidates, or None while they are computed (their progress is drawn here)."""
    return {scope: data.candidates(ds, scope) for scope in scopes}


def current_near_duplicates(ds: Dataset, scopes: tuple[Scope, ...] = SCOPES,
                            found: dict[Scope, Candidates | None] | None = None) -> NearDuplicates | None:
    """The result in `scopes` so far (pair score: the scopes whose candidates are ready, or those of `found`,
    fetched once by the caller); None while the hash index is computed."""
    s = near_settings(ds)
    if s.method == HASH:
        index = data.dup_index(ds, s.hash.method, s.hash.hash_size)
        return None if index is None else from_index(ds, s, index)
    return from_candidates(ds, s, candidates(ds, scopes) if found is None else found, judgments(ds))
