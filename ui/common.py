"""Small helpers every page uses: open the current dataset or explain why not, colours, selections."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, TypeVar

import plotly.colors
import streamlit as st

from core.data.datasets import TEST, TRAIN, Dataset, DatasetError
from core.features.embedding import Embeddings
from core.selections.selection import Selection
from core.selections.semantic import Dendrograms
from ui import data
from ui.state import PENDING_EMBEDDING, settings

T = TypeVar("T")

PALETTE = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.Dark24


def class_color(k: int) -> str:
    """The same colour for class k on every page."""
    return PALETTE[k % len(PALETTE)]


def text(s: Any) -> str:
    """User-provided names made safe for plotly hover labels (they accept some HTML)."""
    return html.escape(str(s))


def per_class_chart(ds: Dataset, sel: Selection, key: str) -> None:
    """Bar chart of the share of each class a selection removes, in the class palette."""
    import numpy as np
    import pandas as pd
    import plotly.express as px

    per = sel.per_class(ds.labels, len(ds.classes))
    total = np.maximum(per["kept"] + per["removed"], 1)
    frame = pd.DataFrame({"class": [text(c) for c in ds.classes], "removed %": 100 * per["removed"] / total,
                          "removed": per["removed"]})
    fig = px.bar(frame, x="class", y="removed %", color="class", hover_data=["removed"],
                 color_discrete_sequence=[class_color(k) for k in range(len(ds.classes))])
    fig.update_layout(showlegend=False, height=260, margin=dict(l=10, r=10, t=10, b=10), xaxis_type="category")
    st.plotly_chart(fig, key=key)


def open_dataset() -> Dataset:
    """The current dataset (call ensure_state() first); while it is decoded its progress, and stop;
    on failure an error box with what to do, and stop."""
    try:
        ds = data.dataset(st.session_state["dataset"])
    except (DatasetError, ValueError, OSError) as exc:
        st.error(f"Cannot open the dataset: {exc}", icon=":material/error:")
        st.info("Pick another dataset on the Home page (digits always works).")
        st.stop()
        raise  # unreachable: st.stop() ends the run
    if ds is None:
        st.stop()
    assert ds is not None
    st.markdown(f"**{html.escape(dataset_label(ds))}** · {len(ds):,} images in {len(ds.classes)} classes "
                f"({int((ds.split == TRAIN).sum()):,} train, {int((ds.split == TEST).sum()):,} test)")
    return ds


def dataset_label(ds: Dataset) -> str:
    """A short name for people: the folder's name for a folder, else the dataset's own name."""
    source, _, where = ds.name.partition(":")
    return f"{Path(where).name} ({source})" if where else ds.name


def ready(value: T | None) -> T:
    """`value`, or stop this run: its step's progress is already drawn and reruns the page when done."""
    if value is None:
        st.stop()
    assert value is not None
    return value


UNTRAINED = {"pixels": "the pixels embedding (the images themselves, PCA to 64 dimensions; nothing to train)",
             "resnet18": "ResNet-18's ImageNet features (weights on disk; nothing to train)",
             "resnet50": "ResNet-50's ImageNet features (weights on disk; nothing to train)"}


def _untrained_choices() -> list[str]:
    """Embeddings that need no training here: pixels always, a backbone where its weights are on disk."""
    from core.features.embedding import weights_path

    return ["pixels"] + [m for m in ("resnet18", "resnet50") if weights_path(m).exists()]


def way_out(ds: Dataset, model: str, compact: bool = False) -> str:
    """The embedding to show now. While the trained network is not ready, say so with its time left and offer an
    embedding that needs no training; with 'switch back' chosen, the trained one replaces it once it is ready."""
    from core.features.embedding import EmbedConfig, cached_embedding_key
    from ui.steps import duration, step_registry

    ss = st.session_state
    trained_ready = cached_embedding_key(ds, EmbedConfig()) is not None
    if ss.get("embedding_switch_back") and trained_ready:  # the widget is drawn already: the next run switches
        ss[PENDING_EMBEDDING], ss["embedding_switch_back"] = "trained", False
        st.toast("The trained embedding is ready: the page shows it now.", icon=":material/check_circle:")
        st.rerun()
    if model == "trained" and not trained_ready:
        job = step_registry().get(data.embedding_key(ds, "trained"))
        left = job.seconds_left() if job is not None and job.status == "running" else None
        when = f" ({duration(left)} left)" if left is not None else ""
        if compact:  # a narrow tile (Home): the same choices, one under the other
            st.info(f"The network trains on this dataset{when}. Meanwhile, an embedding that needs no training:",
                    icon=":material/info:")
            c1 = c2 = c3 = st.container()
        else:
            st.info(f"The network behind the semantic embedding trains on this dataset{when}; the result appears when "
                    "it is done. To look at a result now, use an embedding that needs no training:",
                    icon=":material/info:")
            c1, c2, c3 = st.columns([2, 2, 3])
        c1.selectbox("Embedding now", _untrained_choices(), key="way_out_model",
                     format_func=lambda m: m, label_visibility="collapsed")
        c3.checkbox("Switch to trained when ready", value=True, key="way_out_back")

        def show_now() -> None:  # a callback runs before the next run draws the embedding widget
            ss["embedding"], ss["embedding_switch_back"] = ss["way_out_model"], ss["way_out_back"]

        c2.button("Show it now", key="way_out_go", icon=":material/bolt:", on_click=show_now)
    elif model != "trained" and ss.get("embedding_switch_back"):
        st.caption(f"Shown with {UNTRAINED.get(model, model)}, until the trained network is ready; the page switches "
                   "to it then.")

        @st.fragment(run_every=5.0)
        def wait_for_trained() -> None:  # a poll only: the stand-in's own jobs go first, the training after them
            if cached_embedding_key(ds, EmbedConfig()) is not None:
                st.rerun()

        wait_for_trained()
    return model


def current_semantic_selection(ds: Dataset, compact: bool = False) -> tuple[Embeddings, Dendrograms, Selection] | None:
    """The semantic subset of the current settings; None while its embedding or dendrograms are computed
    (a dataset that cannot give the embedding says why and stops the page)."""
    s = settings().semantic
    model = way_out(ds, s.embedding.model, compact)
    emb = data.embeddings(ds, model)
    if emb is None:
        return None
    dendro = data.dendrograms(ds, emb)
    if dendro is None:
        return None
    return emb, dendro, s.cut(dendro, emb.vectors)
