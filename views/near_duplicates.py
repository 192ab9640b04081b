"""Near-duplicates: candidate pairs and their pair score (judged pairs as judged), or perceptual hashes and
a Hamming-radius slider as in CE-Dedup; within-class groups, label conflicts and leakage for either."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.datasets import SPLIT_NAMES, TEST, Dataset
from core.duplicates import (
    KEEP_RULES,
    DuplicateIndex,
    Groups,
    clamp_radius,
    groups_at,
    hash_selection,
    leaked_test_images,
)
from core.hashing import HASH_SIZES, METHODS
from core.thumbnails import KEPT, LEAKED, REDUNDANT, compose
from ui import data
from ui.common import open_dataset, per_class_chart, ready
from ui.pairs import pair_page
from ui.state import DUP_METHOD_TEXT, DUP_METHODS, ensure_state, resolve_dup_method

GROUPS_PER_PAGE = 12
TILES_PER_ROW = 10  # rows of ten 64-px tiles fit the main column at 1280 px
MAX_TILES = 40

ensure_state()
st.title("Near-duplicates")
ds = open_dataset()
resolve_dup_method(min(ds.image_shape[:2]))
method = st.radio("Method", DUP_METHODS, key="dup_method", horizontal=True, format_func=DUP_METHOD_TEXT.get,
                  help="The pair score finds what people call the same photo (shifted, re-cropped, recoloured, "
                       "flipped); hashes are exact and fast, as CE-Dedup defines them.")
if method == "pair score" and ds.in_memory:
    pair_page(ds)
    st.stop()
if method == "pair score":
    st.info("The pair score needs every image decoded on this machine; this Ray result folder shows its hashes.",
            icon=":material/info:")
st.caption("Perceptual hashes (imagehash's bits) and every pair within a Hamming distance, as in CE-Dedup. "
           "Groups are connected components; each shows its diameter, so chains are visible.")
c1, c2, c3 = st.columns(3)
c1.selectbox("Hash method", METHODS, key="hash_method")
c2.selectbox("Hash size", HASH_SIZES, key="hash_size", format_func=lambda s: f"{s} ({s * s} bits)")
c3.selectbox("Keep rule", KEEP_RULES, key="keep_rule", help="Which image of a near-duplicate group stays")
index = ready(data.dup_index(ds, st.session_state["hash_method"], int(st.session_state["hash_size"])))


def group_rows(ds: Dataset, groups: Groups, page: int, key: str) -> None:
    """Groups largest first: thumbnails wrapped in rows (at least 64 px each), the kept one framed green,
    the others red with their distance; the details beneath, full width."""
    start = page * GROUPS_PER_PAGE
    for g in range(start, min(len(groups), start + GROUPS_PER_PAGE)):
        members, dist = groups.group(g), groups.distances(g)
        shown = members[:MAX_TILES]
        borders = [KEPT if m == groups.keep[g] else LEAKED if ds.split[m] == TEST else REDUNDANT for m in shown]
        labels = ["kept" if m == groups.keep[g] else f"{int(d)} bits" for m, d in zip(shown, dist)]
        st.markdown(f"**Group {g}**: {len(members)} images, diameter {int(groups.diameter[g])} bits"
                    + (f" (the first {MAX_TILES} shown)" if len(members) > MAX_TILES else ""))
        st.image(compose(np.asarray(ds.images[shown]), TILES_PER_ROW, borders, labels), output_format="PNG")
        st.dataframe(pd.DataFrame({
            "id": [str(ds.ids[m]) for m in members], "class": [ds.classes[ds.labels[m]] for m in members],
            "split": [SPLIT_NAMES[ds.split[m]] for m in members], "bits to kept": dist.astype(int)}),
            hide_index=True, width="stretch", height=min(36 * (len(members) + 1) + 3, 260), key=f"{key}_{g}")
        st.divider()


def pager(n: int, key: str) -> int:
    pages = max(1, -(-n // GROUPS_PER_PAGE))
    if pages == 1:
        return 0
    return int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=key)) - 1


@st.fragment
def results(ds: Dataset, index: DuplicateIndex) -> None:
    """The slider and everything it drives: moving it reruns only this block."""
    st.session_state["radius"] = clamp_radius(st.session_state["radius"], index)
    radius = st.slider("Hamming radius (bits)", 0, index.max_radius, key="radius",
                       help="Pairs within this many differing bits are near-duplicates.")
    sel = hash_selection(ds, index, radius, st.session_state["keep_rule"])
    within = groups_at(index, radius, "within-class", st.session_state["keep_rule"], ds.sizes)
    conflicts = groups_at(index, radius, "cross-class", st.session_state["keep_rule"], ds.sizes)
    leaked = leaked_test_images(index, radius, ds.split)
    m = st.columns(4)
    m[0].metric("Groups (within class)", f"{len(within):,}")
    m[1].metric("Images removed", f"{len(sel.removed):,}")
    m[2].metric("Dedup ratio", f"{100 * (1 - sel.kept_fraction):.2f}%")
    m[3].metric("Leaked test images", f"{len(leaked):,}")
    per_class_chart(ds, sel, "dup_per_class")
    tabs = st.tabs([f"Within class ({len(within):,})", f"Label conflicts ({len(conflicts):,})",
                    f"Train/test leakage ({len(leaked):,})"])
    for tab, groups, key in ((tabs[0], within, "within"), (tabs[1], conflicts, "conflict")):
        with tab:
            if len(groups) == 0:
                st.info("No groups at this radius.")
            else:
                group_rows(ds, groups, pager(len(groups), f"page_{key}"), key)
    with tabs[2]:
        leak = groups_at(index, radius, "train-test", st.session_state["keep_rule"], ds.sizes)
        if len(leak) == 0:
            st.info("No test image has a near-duplicate in train at this radius.")
        else:
            group_rows(ds, leak, pager(len(leak), "page_leak"), "leak")


results(ds, index)
