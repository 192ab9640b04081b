"""Review pairs: candidate near-duplicates best first, both images large with their difference; judge
each with one key. Judgments are saved as they are made (core.data.judgments) and drive the exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.data.datasets import SPLIT_NAMES
from core.data.judgments import LABEL_TEXT, LABELS, Judgment, JudgmentsError, JudgmentStore, pair_key
from core.data.scope import SCOPES, Scope
from core.features.pair_score import align, difference_image
from core.selections.candidates import Candidates
from core.selections.review import cleaned_test_list, judged_rows, precision, queue, training_removals
from ui import data
from ui.common import open_dataset, ready
from ui.state import ensure_state

SHOWN_PX = 256
KEYS = {"same": "1", "near": "2", "similar": "3", "different": "4"}
SHORT = {"same": "Same photo", "near": "Near-duplicate", "similar": "Similar", "different": "Different"}

ensure_state()
st.title("Review pairs")
st.caption("Candidates come from exact nearest neighbours on small mean-centred pixel images (each query also "
           "shifted and mirrored), ranked by a pair score: the correlation of the images and of their detail, best "
           "over shifts of up to 3 pixels, a flip, re-crops and stretches. Judge each pair: keys 1–4 judge and move "
           "on, ← and → browse, Backspace undoes. Judgments are saved at once and never touch the images.")
ds = open_dataset()
store = JudgmentStore(ds.fingerprint)
c1, c2, c3 = st.columns([2, 3, 1])
c1.selectbox("Scope", SCOPES, key="review_scope", format_func=lambda s: Scope(s).label)
c2.multiselect("Classes", list(range(len(ds.classes))), key="review_classes", format_func=lambda k: ds.classes[k],
               placeholder="all classes")
c3.number_input("Review the top", 10, 100_000, step=100, key="review_depth")
scope = Scope(st.session_state["review_scope"])
cands = ready(data.candidates(ds, scope))
try:
    judged = store.load()
except JudgmentsError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
    raise


def big(img: np.ndarray) -> Image.Image:
    arr = img if img.ndim == 3 and img.shape[2] == 3 else np.asarray(img).reshape(img.shape[:2])
    return Image.fromarray(arr).resize((SHOWN_PX, SHOWN_PX), Image.Resampling.NEAREST)


def first_open(q: np.ndarray, start: int, c: Candidates, done: dict[tuple[int, int], Judgment]) -> int:
    """The first position at or after `start` whose pair is not judged yet (else `start`)."""
    for p in range(start, len(q)):
        if pair_key(int(c.a[q[p]]), int(c.b[q[p]])) not in done:
            return p
    return min(start, max(len(q) - 1, 0))


classes = set(st.session_state["review_classes"]) or None
q = queue(ds, cands, classes)[: int(st.session_state["review_depth"])]
view = (scope, tuple(sorted(classes or ())), len(q))
if st.session_state.get("review_view") != view:  # a new list: start at its first open pair
    st.session_state["review_view"] = view
    st.session_state["review_pos"] = first_open(q, 0, cands, judged)
n_done = sum(pair_key(int(cands.a[i]), int(cands.b[i])) in judged for i in q)
st.progress(n_done / max(len(q), 1), text=f"{n_done:,} of {len(q):,} judged")
if len(q) == 0:
    st.info("No candidate pairs in this scope" + (" for these classes." if classes else "."))
    st.stop()


def judge(label: str, pos: int) -> None:
    i = q[pos]
    store.judge(int(cands.a[i]), int(cands.b[i]), label, scope)
    st.session_state["review_last"] = (view, pos)  # Undo on the next pair takes this one back
    st.session_state["review_pos"] = first_open(q, pos + 1, cands, store.load())


def move(to: int) -> None:
    st.session_state["review_pos"] = int(np.clip(to, 0, len(q) - 1))


def undo_target(pos: int, current: Judgment | None) -> int | None:
    """The pair Undo takes back: this one when it is judged, else the last one judged on this page (the page has
    moved on from it), else none."""
    if current is not None:
        return pos
    last = st.session_state.get("review_last")
    if last is not None and last[0] == view:
        a, b = int(cands.a[q[last[1]]]), int(cands.b[q[last[1]]])
        return int(last[1]) if pair_key(a, b) in judged else None
    return None


def undo(target: int) -> None:
    store.forget(int(cands.a[q[target]]), int(cands.b[q[target]]))
    st.session_state["review_pos"] = target  # back to the pair whose judgment was taken back
    st.session_state["review_last"] = None


pos = int(np.clip(st.session_state.get("review_pos", 0), 0, len(q) - 1))
i = int(q[pos])
a, b = int(cands.a[i]), int(cands.b[i])
current = judged.get(pair_key(a, b))
st.markdown(f"**Pair {pos + 1:,} of {len(q):,}** · rank {i + 1:,} · pair score **{cands.score[i]:.3f}** · found by "
            f"`{cands.cue[i]}` (cosine {cands.cue_similarity[i]:.3f}) · "
            + (f"judged **{LABEL_TEXT[current.label]}**" if current else "not judged yet"))
ia, ib = np.asarray(ds.images[a]), np.asarray(ds.images[b])
al = align(ia, ib)
cols = st.columns(3)
for col, idx, img, what in ((cols[0], a, ia, "image"), (cols[1], b, ib, "its match")):
    col.image(big(img), caption=f"{what}: {ds.ids[idx]} · {ds.classes[ds.labels[idx]]} · {SPLIT_NAMES[ds.split[idx]]}")
shift = f"shifted ({al.dy:+d}, {al.dx:+d}) px" + (", mirrored" if al.flipped else "")
cols[2].image(big(difference_image(ia, ib, al)), caption=f"difference after alignment ({shift}); black = identical")

judge_row = st.columns(len(LABELS))
for col, label in zip(judge_row, LABELS):
    col.button(SHORT[label], key=f"judge_{label}", on_click=judge, args=(label, pos), shortcut=KEYS[label],
               help=LABEL_TEXT[label], width="stretch",
               type="primary" if current is not None and current.label == label else "secondary")
nav = st.columns([1, 1, 1, 2])
nav[0].button("Back", key="review_back", on_click=move, args=(pos - 1,), shortcut="Left",
              icon=":material/arrow_back:", disabled=pos == 0, width="stretch")
nav[1].button("Next", key="review_next", on_click=move, args=(pos + 1,), shortcut="Right",
              icon=":material/arrow_forward:", disabled=pos >= len(q) - 1, width="stretch")
target = undo_target(pos, current)
nav[2].button("Undo", key="review_undo", on_click=undo, args=(target,), shortcut="Backspace",
              icon=":material/undo:", disabled=target is None, width="stretch",
              help="Takes back this pair's judgment, or the last one you made, and goes back to it")

st.subheader("What the judgments say")
prec = precision(cands, judged, (100, 300, 600))
m = st.columns(len(prec) + 1)
m[0].metric("Judged pairs", f"{len(judged):,}")
for col, p in zip(m[1:], prec):
    col.metric(f"Precision, top {p.top}", "–" if p.value is None else f"{100 * p.value:.0f}%",
               f"{p.judged} of {p.top} judged", delta_color="off")
if judged:
    counts = pd.Series([j.label for j in judged.values()]).value_counts()
    st.caption(" · ".join(f"{LABEL_TEXT[k]}: {int(counts.get(k, 0))}" for k in LABELS))


def csv_of(rows: list[dict[str, object]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


test_drop = cleaned_test_list(ds, judged)
removals = training_removals(ds, judged)
e = st.columns(3)
e[0].download_button("Judged pairs (CSV)", csv_of(judged_rows(ds, judged, cands)), f"judged-{ds.name}.csv",
                     "text/csv", key="review_csv", disabled=not judged, width="stretch")
e[1].download_button(f"Cleaned test list ({len(test_drop):,} to drop)",
                     csv_of([{"image": str(ds.ids[t]), "class": ds.classes[ds.labels[t]]} for t in test_drop]),
                     f"test-drop-{ds.name}.csv", "text/csv", key="review_test", disabled=len(test_drop) == 0,
                     width="stretch")
e[2].download_button(f"Training removals ({len(removals.all):,})",
                     csv_of([{"image": str(ds.ids[t]), "class": ds.classes[ds.labels[t]],
                              "why": "label conflict" if t in set(removals.conflicts.tolist()) else "duplicate"}
                             for t in removals.all]),
                     f"train-removals-{ds.name}.csv", "text/csv", key="review_train", disabled=len(removals.all) == 0,
                     width="stretch")
st.caption(f"Judgments for this dataset are kept in `{store.path}`; "
           "`python -m core candidates --judgments` reads it too.")
