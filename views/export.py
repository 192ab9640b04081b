"""Export: the kept/removed manifest (CSV, JSON) and a pruned copy in a new folder; the source is never touched."""

from __future__ import annotations

import streamlit as st

from core.data.scope import Scope
from core.pipelines.export import export, manifest_csv, manifest_json, manifest_rows
from ui.common import current_semantic_selection, open_dataset, ready
from ui.near import current_near_duplicates, near_settings
from ui.state import ensure_state, settings

ensure_state()
st.title("Export")
ds = open_dataset()
SUBSETS = ("near-duplicates", "semantic redundancy")
method = st.radio("Subset", SUBSETS, key="export_method", horizontal=True,
                  help="The settings of the Near-duplicates and Semantic redundancy pages, judgments included")
st.caption("At the current settings: " + (near_settings(ds).describe() if method == SUBSETS[0]
                                          else settings().semantic.describe()) + ".")
if method == SUBSETS[0]:
    near = ready(current_near_duplicates(ds, (Scope.WITHIN,)))
    sel = ready(near.selection)
else:
    sel = ready(current_semantic_selection(ds))[2]
st.write(f"The current settings keep **{len(sel.kept):,}** and remove **{len(sel.removed):,}** of "
         f"{int(sel.pool.sum()):,} training images.")
st.code(sel.describe(), language=None)
rows = manifest_rows(ds, sel)
c1, c2 = st.columns(2)
c1.download_button("Download manifest.csv", manifest_csv(rows), "manifest.csv", "text/csv", key="export_csv")
c2.download_button("Download manifest.json", manifest_json(ds, sel, rows), "manifest.json", "application/json",
                   key="export_json")

st.subheader("Write a pruned copy")
target = st.text_input("New (or empty) folder", key="export_target", placeholder="/data/cifar10-pruned")
images = st.checkbox("Copy the kept images too (originals byte for byte; PNG for built-in datasets)",
                     value=True, key="export_images")
if st.button("Export", key="export_go", type="primary", disabled=not target.strip()):
    try:
        out = export(ds, sel, target.strip(), images=images)
    except (FileExistsError, ValueError, OSError) as exc:
        st.error(str(exc), icon=":material/error:")
    else:
        st.session_state["export_result"] = out
if "export_result" in st.session_state:
    out = st.session_state["export_result"]
    st.success(f"Wrote {out['csv']} and {out['json']}" + (f" and {out['images']:,} images" if out["images"] else ""))
