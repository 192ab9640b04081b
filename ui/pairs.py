"""The pair-score method on the pages: candidate pairs of each scope, the judgments, a minimum score.

One source of truth: core.candidates finds and scores the pairs, core.judgments holds what a
person said of them, core.review decides which are duplicates (a duplicate judgment always, a
'similar' or 'different' judgment never, else the score against the minimum). The Near-duplicates
page, Home and Export all read them through here.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.candidates import Candidates
from core.datasets import Dataset
from core.judgments import LABEL_TEXT, Judgment, JudgmentsError, JudgmentStore, pair_key
from core.review import Judged, accepted, leaked, pair_selection
from core.selection import Selection
from core.thumbnails import KEPT, LEAKED, REDUNDANT, compose
from ui import data
from ui.common import per_class_chart

PAIRS_PER_PAGE = 25
PAIRS_PER_ROW = 5


def judgments(ds: Dataset) -> Judged:
    """The saved judgments of ds; an unreadable file is shown as an error and counts as none."""
    try:
        return JudgmentStore(ds.fingerprint).load()
    except JudgmentsError as exc:
        st.error(str(exc), icon=":material/error:")
        return {}


def current_pair_selection(ds: Dataset) -> Selection | None:
    """Within-class deduplication by accepted pairs; None while the within-class candidates are computed."""
    within = data.candidates(ds, "within")
    if within is None:
        return None
    return pair_selection(ds, within, judgments(ds), float(st.session_state["min_score"]))


def leaked_images(ds: Dataset) -> np.ndarray | None:
    """Test images with an accepted duplicate in train; None while the leakage candidates are computed."""
    leak = data.candidates(ds, "leakage")
    return None if leak is None else leaked(ds, leak, judgments(ds), float(st.session_state["min_score"]))


def _mark(j: Judgment | None, score: float) -> str:
    return f"{score:.2f}" if j is None else f"{score:.2f} {LABEL_TEXT[j.label].split()[0].lower()}"


def pair_grid(ds: Dataset, pairs: Candidates, judged: Judged, sel: Selection | None, key: str) -> None:
    """Accepted pairs best first, five to a row: image then match, framed by their status, the score
    (and the judgment, where there is one) beneath."""
    pages = max(1, -(-len(pairs) // PAIRS_PER_PAGE))
    page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"pairs_page_{key}")) - 1 if pages > 1 else 0
    rows = range(page * PAIRS_PER_PAGE, min(len(pairs), (page + 1) * PAIRS_PER_PAGE))
    tiles, borders, labels = [], [], []
    for r in rows:
        a, b = int(pairs.a[r]), int(pairs.b[r])
        j = judged.get(pair_key(a, b))
        for m in (a, b):
            tiles.append(np.asarray(ds.images[m]))
            removed = sel is not None and sel.pool[m] and not sel.keep[m]
            borders.append(LEAKED if ds.split[m] != ds.split[b if m == a else a] and m == a
                           else REDUNDANT if removed else KEPT)
            labels.append(_mark(j, float(pairs.score[r])) if m == a else ds.classes[ds.labels[m]][:10])
    st.image(compose(np.stack(tiles), 2 * PAIRS_PER_ROW, borders, labels), output_format="PNG")
    st.caption("Each pair: the image, then its match. Under the first: the pair score and the judgment, if any; "
               "under the second: its class. Green stays, red is removed, purple is a test image with a twin in "
               "train. Judge pairs on the Review pairs page.")


def pair_page(ds: Dataset) -> None:
    """The pair-score view of the Near-duplicates page: the three scopes' candidates (each a background
    step, its progress drawn here while it runs), then the block the slider drives."""
    st.caption("Candidate pairs from exact nearest neighbours on small pixel images, ranked by a pair score that "
               "stays high for shifted, re-cropped, recoloured, flipped or re-encoded copies. A pair judged on the "
               "Review pairs page counts as judged, whatever its score.")
    found = {scope: data.candidates(ds, scope) for scope in ("within", "cross", "leakage")}
    pair_results(ds, found)


@st.fragment
def pair_results(ds: Dataset, found: dict[str, Candidates | None]) -> None:
    """Moving the slider reruns only this block."""
    judged = judgments(ds)
    st.slider("Minimum pair score", 0.5, 1.0, key="min_score", step=0.01,
              help="Unjudged pairs at or above it count as duplicates (of the CIFAR-10 test images whose best pair "
                   "reaches 0.9, 97% are judged duplicates; at 0.85, 89%).")
    min_score = float(st.session_state["min_score"])
    sel = None if found["within"] is None else pair_selection(ds, found["within"], judged, min_score)
    take = {scope: None if c is None else accepted(c, judged, min_score) for scope, c in found.items()}
    m = st.columns(4)
    if sel is not None and take["within"] is not None:
        m[0].metric("Pairs (within class)", f"{len(take['within']):,}")
        m[1].metric("Images removed", f"{len(sel.removed):,}")
    if take["cross"] is not None:
        m[2].metric("Label conflicts", f"{len(take['cross']):,}")
    if take["leakage"] is not None and found["leakage"] is not None:
        m[3].metric("Leaked test images", f"{len(leaked(ds, found['leakage'], judged, min_score)):,}")
    if sel is not None:
        per_class_chart(ds, sel, "pairs_per_class")
    names = {"within": "Within class", "cross": "Label conflicts", "leakage": "Train/test leakage"}
    tabs = st.tabs([names[s] + ("" if take[s] is None else f" ({len(take[s]):,})") for s in names])
    for tab, scope in zip(tabs, names):
        with tab:
            pairs = take[scope]
            if pairs is None:
                st.caption("Still being computed (see its progress above).")
            elif len(pairs) == 0:
                st.info("No pairs at this minimum score.")
            else:
                pair_grid(ds, pairs, judged, sel if scope == "within" else None, scope)
