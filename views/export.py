"""Export: the kept/removed manifest (CSV, JSON) and a pruned copy in a new folder; the source is never touched."""

from __future__ import annotations

import streamlit as st

from core.export import export, manifest_csv, manifest_json, manifest_rows
from ui.common import current_hash_selection, current_semantic_selection, open_dataset, ready
from ui.pairs import current_pair_selection
from ui.state import ensure_state, resolve_dup_method

ensure_state()
st.title("Export")
ds = open_dataset()
subsets = ["near-duplicates (hash)", "semantic redundancy"]
if ds.in_memory:  # the pair score needs the images; first where it is the Near-duplicates page's method
    first = resolve_dup_method(min(ds.image_shape[:2])) == "pair score"
    subsets.insert(0 if first else 1, "near-duplicates (pair score)")
method = st.radio("Subset", subsets, key="export_method", horizontal=True,
                  help="The pair score uses the minimum score set on Near-duplicates and every judgment made on "
                       "Review pairs")
if method == "near-duplicates (pair score)":
    sel = ready(current_pair_selection(ds))
elif method == "near-duplicates (hash)":
    sel = ready(current_hash_selection(ds))[1]
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
