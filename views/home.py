"""Home: pick the dataset, the hash method and the embedding; see what the current settings remove."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.datasets import SOURCES, TEST
from core.data.scope import Scope
from core.features.embedding import MODELS
from core.features.hashing import METHODS
from core.pipelines.result_folder import job_summary
from core.pipelines.settings import PAIR_SCORE
from ui.common import current_semantic_selection, open_dataset
from ui.near import current_near_duplicates, near_settings
from ui.pairs import leak_note
from ui.state import bound, ensure_state, settings

ensure_state()
st.title("Redundancy Explorer")
st.write("How much of an image-classification dataset do you not need? Candidate pairs and a pair score (or "
         "perceptual hashes, as in CE-Dedup) find near-duplicates; clusters of a network's embeddings find semantic "
         "redundancy (Birodkar, Mobahi & Bengio, *The 10% You Don't Need*).")

with st.expander("Dataset and methods", expanded=st.session_state["dataset"] == "digits"):
    current = st.session_state["dataset"]
    source_now, _, root_now = current.partition(":")
    c1, c2 = st.columns([1, 3])
    source = c1.selectbox("Source", SOURCES, index=SOURCES.index(source_now), key="ds_source")
    root = c2.text_input("Root folder", value=root_now, key="ds_root", disabled=source == "digits",
                         placeholder="/data/cifar10-jpg (folder/<class>/<image> or folder/{train,test}/<class>/...)",
                         help="For the source 'scale': the --out folder of `python -m core scale`")
    if st.button("Open dataset", key="ds_open", type="primary"):
        st.session_state["dataset"] = "digits" if source == "digits" else f"{source}:{root.strip()}"
        st.rerun()
    c3, c4 = st.columns(2)
    c3.selectbox("Hash method", METHODS, key="hash_method")
    c4.selectbox("Embedding", MODELS, **bound("embedding", "home"),
                 help="trained: the penultimate layer of a classifier trained on this dataset (works offline)")

ds = open_dataset()
counts = ds.counts()
n_train, n_test = sum(counts["train"].values()), sum(counts["test"].values())
m = st.columns(5)
m[0].metric("Images", f"{len(ds):,}")
m[1].metric("Classes", len(ds.classes))
m[2].metric("Train", f"{n_train:,}")
m[3].metric("Test", f"{n_test:,}")
m[4].metric("Skipped files", len(ds.skipped))

if ds.origin:
    st.caption(f"A Ray result folder of {ds.origin}: {job_summary(ds.job)}. Images are read from the source only when "
               "a page shows them.")
near_s = near_settings(ds)
st.subheader("What the current settings remove")
st.caption(f"Near-duplicates: {near_s.describe()} (the Near-duplicates page's method). Semantic redundancy: "
           f"{settings().semantic.describe()}.")
h = st.columns(3)
n_test = max(1, int((ds.split == TEST).sum()))
with h[0]:
    near = current_near_duplicates(ds, (Scope.WITHIN, Scope.LEAKAGE))
short = "pair score" if near_s.method == PAIR_SCORE else f"{near_s.hash.label}, ≤ {near_s.radius} bits"
if near is not None and near.selection is not None:
    sel = near.selection
    h[0].metric(f"Near-duplicates ({short})", f"{len(sel.removed):,} removed",
                f"{100 * (1 - sel.kept_fraction):.1f}% of train", delta_color="off", delta_arrow="off",
                help="Within a class" + ("; judged pairs count as judged (Review pairs page)" * (near.judged > 0)))
if near is not None and near.leaked is not None:
    note = leak_note(near)
    h[2].metric(f"Train/test leakage ({short})", f"{len(near.leaked):,} test images",
                f"{100 * len(near.leaked) / n_test:.1f}% of test" + (f", {note}" if note else ""),
                delta_color="off", delta_arrow="off", help="Test images with a near-duplicate in the training split")
with h[1]:
    semantic = current_semantic_selection(ds, compact=True)
if semantic is not None:
    sem_sel = semantic[2]
    h[1].metric("Semantic redundancy", f"{len(sem_sel.removed):,} removed",
                f"{100 * (1 - sem_sel.kept_fraction):.1f}% of train", delta_color="off", delta_arrow="off")

frame = pd.DataFrame({"class": list(ds.classes), "train": list(counts["train"].values()),
                      "test": list(counts["test"].values())})
st.dataframe(frame, hide_index=True, width="stretch", key="home_counts")
if ds.skipped:
    with st.expander(f"{len(ds.skipped)} files were skipped"):
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in ds.skipped]), hide_index=True,
                     key="home_skipped")
