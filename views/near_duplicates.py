"""Near-duplicates: candidate pairs and their pair score (judged pairs as judged), or perceptual hashes and
a Hamming-radius slider as in CE-Dedup; within-class groups, label conflicts and leakage for either."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.data.datasets import SPLIT_NAMES, TEST, Dataset
from core.data.scope import Scope
from core.data.thumbnails import KEPT, LEAKED, REDUNDANT, compose
from core.features.hashing import HASH_SIZES, METHODS
from core.pipelines.near_duplicates import NearDuplicates
from core.selections.candidates import Candidates
from core.selections.duplicates import KEEP_RULES, Groups, clamp_radius, groups_at
from ui.common import open_dataset, per_class_chart, ready
from ui.near import candidates, current_near_duplicates
from ui.pairs import leak_note, pair_results
from ui.state import DUP_METHOD_TEXT, DUP_METHODS, ensure_state, resolve_dup_method

GROUPS_PER_PAGE = 12
TILES_PER_ROW = 10  # rows of ten 64-px tiles fit the main column at 1280 px
MAX_TILES = 40
ORDER = (Scope.WITHIN, Scope.CROSS, Scope.LEAKAGE)  # the hash view's tabs

ensure_state()
st.title("Near-duplicates")
ds = open_dataset()
resolve_dup_method(ds)
method = st.radio("Method", DUP_METHODS, key="dup_method", horizontal=True, format_func=DUP_METHOD_TEXT.get,
                  help="The pair score finds what people call the same photo (shifted, re-cropped, recoloured, "
                       "flipped); hashes are exact and fast, as CE-Dedup defines them.")


@st.fragment
def pair_view(ds: Dataset, found: dict[Scope, Candidates | None]) -> None:
    """The minimum-score slider and everything it drives: moving it reruns only this block."""
    st.slider("Minimum pair score", 0.5, 1.0, key="min_score", step=0.01,
              help="Unjudged pairs at or above it count as duplicates (of the CIFAR-10 test images whose best pair "
                   "reaches 0.9, 97% are judged duplicates; at 0.85, 89%).")
    near = current_near_duplicates(ds, found=found)
    assert near is not None
    pair_results(ds, near)


def group_rows(ds: Dataset, groups: Groups, page: int, key: str) -> None:
    """Hash groups largest first: thumbnails wrapped in rows, the kept one framed green, the others red with their
    distance; every member's id, class and split beneath in a table that scrolls."""
    start = page * GROUPS_PER_PAGE
    for g in range(start, min(len(groups), start + GROUPS_PER_PAGE)):
        members, dist = groups.group(g), groups.distances(g)
        shown = members[:MAX_TILES]
        borders = [KEPT if m == groups.keep[g] else LEAKED if ds.split[m] == TEST else REDUNDANT for m in shown]
        labels = ["kept" if m == groups.keep[g] else f"{int(d)} bits" for m, d in zip(shown, dist)]
        st.markdown(f"**Group {g}**: {len(members)} images, diameter {int(groups.diameter[g])} bits"
                    + (f" (the first {MAX_TILES} shown)" if len(members) > MAX_TILES else ""))
        st.image(compose(np.asarray(ds.images[shown]), TILES_PER_ROW, borders, labels), output_format="PNG")
        rows = len(members)
        st.dataframe(pd.DataFrame({
            "id": [str(ds.ids[m]) for m in members], "class": [ds.classes[ds.labels[m]] for m in members],
            "split": [SPLIT_NAMES[ds.split[m]] for m in members], "bits to kept": dist.astype(int)}),
            hide_index=True, width="stretch", height=35 * (min(rows, 10) + 1) + 3, key=f"{key}_{g}",
            row_height=35)
        st.divider()


def pager(n: int, key: str) -> int:
    pages = max(1, -(-n // GROUPS_PER_PAGE))
    if pages == 1:
        return 0
    return int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=key)) - 1


@st.fragment
def hash_view(ds: Dataset) -> None:
    """The radius slider and everything it drives: moving it reruns only this block."""
    near = ready(current_near_duplicates(ds))
    index = near.index
    assert index is not None and near.selection is not None and near.leaked is not None
    st.session_state["radius"] = clamp_radius(st.session_state["radius"], index)
    st.slider("Hamming radius (bits)", 0, index.max_radius, key="radius",
              help="Pairs within this many differing bits are near-duplicates.")
    near = ready(current_near_duplicates(ds))  # at the radius just set
    hash_results(ds, near)


def hash_results(ds: Dataset, near: NearDuplicates) -> None:
    sel, leaked, index, radius = near.selection, near.leaked, near.index, near.radius
    assert sel is not None and leaked is not None and index is not None and radius is not None
    within, conflicts, leak = (groups_at(index, radius, s, near.settings.keep_rule, ds.sizes) for s in ORDER)
    m = st.columns(4)
    m[0].metric("Groups (within class)", f"{len(within):,}")
    m[1].metric("Images removed", f"{len(sel.removed):,}")
    m[2].metric("Dedup ratio", f"{100 * (1 - sel.kept_fraction):.2f}%")
    m[3].metric("Leaked test images", f"{len(leaked):,}", leak_note(near), delta_color="off")
    per_class_chart(ds, sel, "dup_per_class")
    tabs = st.tabs([f"{s.label} ({len(g):,})" for s, g in zip(ORDER, (within, conflicts, leak))])
    for tab, groups, key in zip(tabs, (within, conflicts, leak), ("within", "conflict", "leak")):
        with tab:
            if len(groups) == 0:
                st.info("No groups at this radius.")
            else:
                group_rows(ds, groups, pager(len(groups), f"page_{key}"), key)


if method == "pair score":
    st.caption("Candidate pairs from exact nearest neighbours on small pixel images, ranked by a pair score that "
               "stays high for shifted, re-cropped, recoloured, flipped or re-encoded copies. A pair judged on the "
               "Review pairs page counts as judged, whatever its score.")
    pair_view(ds, candidates(ds))  # each scope's candidates: their progress shows here while they are computed
else:
    st.caption("Perceptual hashes (imagehash's bits) and every pair within a Hamming distance, as in CE-Dedup. "
               "Groups are connected components; each shows its diameter, so chains are visible.")
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Hash method", METHODS, key="hash_method")
    c2.selectbox("Hash size", HASH_SIZES, key="hash_size", format_func=lambda s: f"{s} ({s * s} bits)")
    c3.selectbox("Keep rule", KEEP_RULES, key="keep_rule", help="Which image of a near-duplicate group stays")
    ready(current_near_duplicates(ds))  # the index, or its progress here (outside the fragment)
    hash_view(ds)
