"""Map: the UMAP of the embeddings, coloured by class, by kept/redundant, or by duplicate group;
select points (box or lasso) to see their images."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.data.scope import Scope
from core.data.thumbnails import STATUS_COLORS, compose
from core.features.projection import drawn_points
from ui import data
from ui.common import class_color, current_semantic_selection, open_dataset, ready, text
from ui.near import current_near_duplicates
from ui.state import ensure_state

MAX_THUMBS = 200

ensure_state()
st.title("Map")
ds = open_dataset()
emb, dendro, sel = ready(current_semantic_selection(ds))
proj = ready(data.projection(emb))
shown_idx = drawn_points(len(ds), int(st.session_state["map_max_points"]))
drawn = np.zeros(len(ds), bool)
drawn[shown_idx] = True
notes = []
if proj.fitted_on < len(proj.xy):
    notes.append(f"UMAP was fitted on a sample of {proj.fitted_on:,} points; the other "
                 f"{len(proj.xy) - proj.fitted_on:,} were placed with its transform.")
if len(shown_idx) < len(ds):
    notes.append(f"The map draws a random sample of {len(shown_idx):,} of the {len(ds):,} points (the same sample "
                 "on every rerun); counts and selections elsewhere use every image.")
if notes:
    st.caption(" ".join(notes))
c1, c2 = st.columns([3, 1])
color_by = c1.radio("Colour by", ["class", "kept / redundant", "duplicate group"], key="map_color", horizontal=True)
links = c2.checkbox("Lines to representatives", key="map_links",
                    help="Join each redundant image to the representative it is merged into")

xy = proj.xy
hover = {int(i): f"{text(ds.ids[i])}<br>{text(ds.classes[ds.labels[i]])}" for i in shown_idx}
fig = go.Figure()
if color_by == "class":
    for k, name in enumerate(ds.classes):
        idx = np.flatnonzero(drawn & (ds.labels == k))
        fig.add_trace(go.Scattergl(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=text(name),
                                   marker=dict(size=4, color=class_color(k)), customdata=idx,
                                   hovertext=[hover[i] for i in idx], hoverinfo="text"))
elif color_by == "kept / redundant":
    for name, mask, color in (("kept", sel.pool & sel.keep, STATUS_COLORS["kept"]),
                              ("redundant", sel.pool & ~sel.keep, STATUS_COLORS["redundant"]),
                              ("test (not pruned)", ~sel.pool, STATUS_COLORS["test"])):
        idx = np.flatnonzero(drawn & mask)
        fig.add_trace(go.Scattergl(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name, customdata=idx,
                                   marker=dict(size=4, color=color), hovertext=[hover[i] for i in idx],
                                   hoverinfo="text"))
else:
    near = ready(current_near_duplicates(ds, (Scope.WITHIN,)))
    gid = ready(near.selection).group  # the Near-duplicates page's within-class groups at its settings
    rest = np.flatnonzero(drawn & (gid < 0))
    fig.add_trace(go.Scattergl(x=xy[rest, 0], y=xy[rest, 1], mode="markers", name="no group", customdata=rest,
                               marker=dict(size=3, color="#cccccc"), hovertext=[hover[i] for i in rest],
                               hoverinfo="text"))
    inside = np.flatnonzero(drawn & (gid >= 0))
    fig.add_trace(go.Scattergl(x=xy[inside, 0], y=xy[inside, 1], mode="markers", name="in a duplicate group",
                               customdata=inside, marker=dict(size=6, color=gid[inside], colorscale="Turbo"),
                               hovertext=[f"{hover[i]}<br>group {gid[i]}" for i in inside], hoverinfo="text"))
if links:
    red = sel.removed[drawn[sel.removed]]
    xs = np.column_stack([xy[red, 0], xy[sel.representative[red], 0], np.full(len(red), np.nan)]).ravel()
    ys = np.column_stack([xy[red, 1], xy[sel.representative[red], 1], np.full(len(red), np.nan)]).ravel()
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name="merged into", hoverinfo="skip",
                               line=dict(width=1, color="rgba(80,80,80,0.5)")))
fig.update_layout(height=620, margin=dict(l=0, r=0, t=10, b=0), dragmode="lasso",
                  legend=dict(itemsizing="constant"), xaxis=dict(visible=False), yaxis=dict(visible=False))
event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("box", "lasso"))
points = event.selection.points if event and event.selection else []
chosen = np.array(sorted({int(p["customdata"]) for p in points if "customdata" in p}), dtype=np.int64)
if len(chosen):
    st.subheader(f"{len(chosen):,} selected")
    shown = chosen[:MAX_THUMBS]
    st.image(compose(np.asarray(ds.images[shown]), 20, None, [ds.classes[ds.labels[i]] for i in shown]),
             output_format="PNG")
    if len(chosen) > MAX_THUMBS:
        st.caption(f"Showing the first {MAX_THUMBS} of {len(chosen):,}.")
else:
    st.caption("Select points with the box or lasso tool to see their images.")
