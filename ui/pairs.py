"""The pair-score view of the Near-duplicates page: each scope's accepted pairs at the minimum score.

Within a class the unit is the group (the kept image, then the ones merged into it), since two removed
images of one group are both red and their kept copy is elsewhere; label conflicts and leakage show
pairs, each image with its class.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.datasets import TEST, Dataset
from core.data.judgments import LABEL_TEXT, Judgment, pair_key
from core.data.scope import SCOPES, Scope
from core.data.thumbnails import KEPT, LEAKED, REDUNDANT, compose
from core.pipelines.near_duplicates import NearDuplicates
from core.selections.candidates import Candidates
from core.selections.selection import Selection
from ui.common import per_class_chart, text

PAIRS_PER_PAGE = 25
PAIRS_PER_ROW = 5
GROUPS_PER_PAGE = 12
TILES_PER_ROW = 10


def _mark(j: Judgment | None, score: float) -> str:
    return f"{score:.2f}" if j is None else f"{score:.2f} {LABEL_TEXT[j.label].split()[0].lower()}"


def _page(n: int, per: int, key: str) -> range:
    pages = max(1, -(-n // per))
    page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=key)) - 1 if pages > 1 else 0
    return range(page * per, min(n, (page + 1) * per))


def pair_grid(ds: Dataset, pairs: Candidates, near: NearDuplicates, key: str) -> None:
    """Pairs best first, five to a row: image then match, each with its class; the pair score (and the judgment,
    where there is one) above the pair's first image."""
    tiles, borders, labels = [], [], []
    for r in _page(len(pairs), PAIRS_PER_PAGE, f"pairs_page_{key}"):
        a, b = int(pairs.a[r]), int(pairs.b[r])
        if ds.split[b] == TEST:  # the test image first
            a, b = b, a
        j = near.judgments.get(pair_key(a, b))
        for m in (a, b):
            tiles.append(np.asarray(ds.images[m]))
            borders.append(LEAKED if ds.split[m] == TEST else KEPT)
            cls = ds.classes[ds.labels[m]][:10]
            labels.append(f"{_mark(j, float(pairs.score[r]))} · {cls}" if m == a else cls)
    st.image(compose(np.stack(tiles), 2 * PAIRS_PER_ROW, borders, labels), output_format="PNG")
    st.caption("Each pair: the image, then its match, each with its class; the first also shows the pair score and "
               "the judgment, if any. Purple is a test image with a twin in train. Judge pairs on the Review pairs "
               "page.")


def group_grid(ds: Dataset, sel: Selection, key: str) -> None:
    """Within-class groups, largest first: the kept image (green), then the images merged into it (red) with their
    best pair score."""
    in_groups = sel.pool & (sel.group >= 0)
    ids, counts = np.unique(sel.group[in_groups], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    for g in (order[i] for i in _page(len(order), GROUPS_PER_PAGE, f"groups_page_{key}")):
        members = np.flatnonzero(in_groups & (sel.group == g))
        kept = members[sel.keep[members]]
        gone = members[~sel.keep[members]]
        gone = gone[np.argsort(sel.distance[gone], kind="stable")]
        shown = np.concatenate([kept, gone])[: 4 * TILES_PER_ROW]
        labels = ["kept"] + [f"{1 - sel.distance[m]:.2f}" for m in shown[1:]]
        st.image(compose(np.asarray(ds.images[shown]), TILES_PER_ROW, [KEPT] + [REDUNDANT] * (len(shown) - 1),
                         labels), output_format="PNG")
        st.caption(f"{text(ds.classes[ds.labels[members[0]]])}: {len(members)} images; the kept one first, then "
                   "the ones it makes redundant with their best pair score"
                   + (f" (the first {len(shown)} shown)" if len(shown) < len(members) else ""))


def pair_results(ds: Dataset, near: NearDuplicates) -> None:
    """Figures and each scope's tab (the minimum-score slider sits above this, in the page's fragment)."""
    sel = near.selection
    m = st.columns(4)
    if near.scopes.get(Scope.WITHIN) is not None and sel is not None:
        m[0].metric("Pairs (within class)", f"{near.scopes[Scope.WITHIN].pairs:,}")
        m[1].metric("Images removed", f"{len(sel.removed):,}")
    if near.scopes.get(Scope.CROSS) is not None:
        m[2].metric("Label conflicts", f"{near.scopes[Scope.CROSS].pairs:,}")
    if near.leaked is not None:
        m[3].metric("Leaked test images", f"{len(near.leaked):,}", leak_note(near), delta_color="off")
    if sel is not None:
        per_class_chart(ds, sel, "pairs_per_class")
    tabs = st.tabs([s.label + ("" if (f := near.scopes.get(s)) is None else f" ({f.pairs:,})") for s in SCOPES])
    for tab, scope in zip(tabs, SCOPES):
        with tab:
            pairs = near.accepted(scope)
            if pairs is None:
                st.caption("Still being computed (see its progress above).")
            elif len(pairs) == 0:
                st.info("No pairs at this minimum score.")
            elif scope is Scope.WITHIN and sel is not None:
                group_grid(ds, sel, scope.value)
            else:
                pair_grid(ds, pairs, near, scope.value)


def leak_note(near: NearDuplicates) -> str | None:
    """'after your judgments' where the judgments changed the leakage figure, with the count from scores alone."""
    if not near.judgments_changed_leakage:
        return None
    return f"after your judgments ({near.leaked_by_score:,} by score alone)"
