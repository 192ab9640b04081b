"""Home: pick the dataset, the hash method and the embedding; see what each method would remove."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.datasets import SOURCES, TEST
from core.duplicates import clamp_radius, leaked_test_images
from core.embedding import MODELS, missing_embeddings
from core.hashing import METHODS
from core.result_folder import job_summary
from ui.common import current_hash_selection, current_semantic_selection, open_dataset
from ui.pairs import current_pair_selection, leaked_images
from ui.state import ensure_state, resolve_dup_method

ensure_state()
st.title("Redundancy Explorer")
st.write("How much of an image-classification dataset do you not need? Perceptual hashes find "
         "near-duplicates; clusters of a network's embeddings find semantic redundancy "
         "(Birodkar, Mobahi & Bengio, *The 10% You Don't Need*).")

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
    c4.selectbox("Embedding", MODELS, key="embedding",
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

if ds.precomputed is not None:
    st.caption(f"A Ray result folder of {ds.precomputed.source}: {job_summary(ds.precomputed.job)}. Images are read "
               "from the source only when a page shows them.")
st.subheader("What the current settings remove")
h = st.columns(3)
pairs = resolve_dup_method(min(ds.image_shape[:2])) == "pair score" and ds.in_memory
min_score = float(st.session_state["min_score"])
if pairs:  # the Near-duplicates page's method: its within-class groups and its leakage, judged pairs as judged
    with h[0]:
        pair_sel = current_pair_selection(ds)
    if pair_sel is not None:
        h[0].metric(f"Near-duplicates (pair score ≥ {min_score:.2f})", f"{len(pair_sel.removed):,} removed",
                    f"-{100 * (1 - pair_sel.kept_fraction):.1f}% of train", delta_color="off",
                    help="Within a class; judged pairs count as judged (Review pairs page)")
    with h[2]:
        leaked_pairs = leaked_images(ds)
    if leaked_pairs is not None:
        h[2].metric(f"Train/test leakage (pair score ≥ {min_score:.2f})", f"{len(leaked_pairs):,} test images",
                    f"{100 * len(leaked_pairs) / max(1, int((ds.split == TEST).sum())):.1f}% of test",
                    delta_color="off", help="Judged pairs count as judged; review them on the Review pairs page")
else:
    with h[0]:
        hashed = current_hash_selection(ds)
    if hashed is not None:
        index, hash_sel = hashed
        radius = clamp_radius(st.session_state["radius"], index)
        leaked = leaked_test_images(index, radius, ds.split)
        h[0].metric(f"Near-duplicates ({index.config.label}, ≤ {radius} bits)",
                    f"{len(hash_sel.removed):,} removed", f"-{100 * (1 - hash_sel.kept_fraction):.1f}% of train",
                    delta_color="off")
        h[2].metric(f"Train/test leakage (≤ {radius} bits)", f"{len(leaked):,} test images",
                    f"{100 * len(leaked) / max(1, int((ds.split == TEST).sum())):.1f}% of test", delta_color="off")
if missing_embeddings(ds):
    h[1].metric("Semantic redundancy", "no embeddings", help=missing_embeddings(ds))
else:
    with h[1]:
        semantic = current_semantic_selection(ds)
    if semantic is not None:
        sem_sel = semantic[2]
        h[1].metric("Semantic redundancy", f"{len(sem_sel.removed):,} removed",
                    f"-{100 * (1 - sem_sel.kept_fraction):.1f}% of train", delta_color="off")

frame = pd.DataFrame({"class": list(ds.classes), "train": list(counts["train"].values()),
                      "test": list(counts["test"].values())})
st.dataframe(frame, hide_index=True, width="stretch", key="home_counts")
if ds.skipped:
    with st.expander(f"{len(ds.skipped)} files were skipped"):
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in ds.skipped]), hide_index=True,
                     key="home_skipped")
