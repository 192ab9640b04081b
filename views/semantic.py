"""Semantic redundancy: a keep-fraction or distance slider cutting cached per-class dendrograms,
and the paper's figure made live: each kept representative beside the images it makes redundant."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.datasets import Dataset
from core.data.thumbnails import KEPT, REDUNDANT, compose
from core.features.embedding import MODELS
from core.selections.selection import Selection
from core.selections.semantic import POLICIES
from ui.common import current_semantic_selection, open_dataset, per_class_chart, ready
from ui.state import SEM_MODES, bound, ensure_state, settings

CLUSTERS_PER_PAGE = 10

ensure_state()
st.title("Semantic redundancy")
st.caption("Each class is clustered by complete linkage on the cosine distance of its embeddings "
           "(Birodkar, Mobahi & Bengio 2019); one image per cluster is kept. The slider cuts cached "
           "dendrograms, so it answers at once.")
ds = open_dataset()
c1, c2, c3 = st.columns(3)
c1.selectbox("Embedding", MODELS, **bound("embedding", "semantic"))
c2.radio("Set the cut by", SEM_MODES, key="sem_mode", horizontal=True)
c3.selectbox("Representative", POLICIES, key="rep_policy",
             format_func={"mean": "closest to the cluster mean", "random": "random member",
                          "farthest": "farthest from the mean (SemDeDup)"}.get)


def clusters_side_by_side(ds: Dataset, sel: Selection, cls: int, page: int) -> None:
    """Per cluster of class `cls`, largest first: the representative, then its redundant members."""
    in_class = sel.pool & (ds.labels == cls) & (sel.group >= 0)
    ids, counts = np.unique(sel.group[in_class], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    if len(order) == 0:
        st.info("No image of this class is redundant at this cut.")
        return
    left, right = st.columns([1, 5])
    left.markdown("**Kept (required)**")
    right.markdown("**Redundant: the representative makes these unnecessary**")
    for g in order[page * CLUSTERS_PER_PAGE:(page + 1) * CLUSTERS_PER_PAGE]:
        members = np.flatnonzero(in_class & (sel.group == g))
        rep = members[sel.keep[members]][0]
        others = members[~sel.keep[members]]
        others = others[np.argsort(sel.distance[others])][:24]
        left, right = st.columns([1, 5])
        left.image(compose(np.asarray(ds.images[[rep]]), 1, [KEPT], ["kept"]), output_format="PNG")
        labels = [f"d={sel.distance[m]:.3f}" for m in others]
        right.image(compose(np.asarray(ds.images[others]), 12, [REDUNDANT] * len(others), labels),
                    output_format="PNG")


@st.fragment
def results(ds: Dataset) -> None:
    """The slider and everything it drives; moving it reruns only this block."""
    if settings().semantic.distance is None:
        st.slider("Keep this fraction of the training set", 0.05, 1.0, step=0.01, key="keep_fraction")
        st.checkbox("Keep the fraction in every class (class balance)", key="per_class")
    else:
        st.slider("Cosine distance threshold (largest cluster diameter)", 0.0, 0.5, step=0.001, key="distance",
                  format="%.3f")
    emb, dendro, sel = ready(current_semantic_selection(ds))
    m = st.columns(4)
    m[0].metric("Kept (required)", f"{len(sel.kept):,}")
    m[1].metric("Redundant", f"{len(sel.removed):,}")
    m[2].metric("Kept fraction", f"{100 * sel.kept_fraction:.1f}%")
    t = sel.params["threshold"]
    m[3].metric("Cosine threshold", f"{t:.4f}" if isinstance(t, float) else "per class")
    routes = [f"{ds.classes[c]}: {r}" for c, r in dendro.routes.items() if not r.startswith("exact")]
    if routes:
        st.caption("Large classes were split first: " + "; ".join(routes))
    if emb.info.get("model") == "trained":
        st.caption(f"Embedding: penultimate layer of a {emb.info.get('arch')} classifier trained "
                   f"{emb.info.get('epochs')} epochs on this dataset (test accuracy "
                   f"{100 * float(emb.info.get('test_accuracy', float('nan'))):.1f}%).")
    per_class_chart(ds, sel, "sem_per_class")
    c1, c2 = st.columns([3, 1])
    cls = c1.selectbox("Class", range(len(ds.classes)), format_func=lambda k: ds.classes[k], key="sem_class")
    n_clusters = len(np.unique(sel.group[sel.pool & (ds.labels == cls) & (sel.group >= 0)]))
    pages = max(1, -(-n_clusters // CLUSTERS_PER_PAGE))
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key="sem_page")) - 1
    clusters_side_by_side(ds, sel, cls, min(page, pages - 1))


ready(current_semantic_selection(ds))  # the embedding and dendrograms, or their progress here (outside the fragment)
results(ds)
