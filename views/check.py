"""Check new images: which of a batch (or a new test set) are already in the dataset's training or test split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.data.datasets import TEST, TRAIN, decode_image
from core.data.thumbnails import KEPT, LEAKED, REDUNDANT, compose
from core.pipelines.check import rows
from ui import data
from ui.common import open_dataset, ready
from ui.near import near_settings
from ui.state import ensure_state

MAX_FILES = 2_000  # one upload; the CLI (`python -m core check`) takes whole folders
MAX_BYTES = 200 * 2**20  # all files together (each is also bounded by server.maxUploadSize)
PER_PAGE = 12
TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]

ensure_state()
st.title("Check new images")
st.caption("Upload images that arrive later (a new batch, a new test set): each is compared with every image of "
           "the dataset by the near-duplicate candidates' cues and pair score, and its best match in the training "
           "split and in the test split is shown. The images are decoded in memory; nothing is written into the "
           "dataset. For a whole folder: `python -m core check --dataset D --images FOLDER --csv matches.csv`.")
ds = open_dataset()
near = near_settings(ds)
uploads = st.file_uploader("Images to check", type=TYPES, accept_multiple_files=True, key="check_files",
                           help=f"At most {MAX_FILES:,} files and {MAX_BYTES // 2**20} MB together")
if not uploads:
    st.info("Upload images to check them against this dataset.")
    st.stop()
files, total = [], 0
for f in uploads[:MAX_FILES]:
    blob = f.getvalue()
    total += len(blob)
    if total > MAX_BYTES:
        break
    files.append((f.name, blob))
if len(files) < len(uploads):
    st.warning(f"Only the first {len(files):,} of {len(uploads):,} files are checked (at most {MAX_FILES:,} files and "
               f"{MAX_BYTES // 2**20} MB at once).")
result = ready(data.check(ds, files, near))

m = st.columns(4)
m[0].metric("Checked", f"{len(result.names):,}")
m[1].metric("Already in train", f"{len(result.in_dataset(TRAIN)):,}")
m[2].metric("Already in test", f"{len(result.in_dataset(TEST)):,}")
m[3].metric("Unreadable, skipped", f"{len(result.skipped):,}")
st.caption(f"A match is a duplicate when its pair score reaches {result.min_score:.2f} (the Near-duplicates page's "
           "minimum); a new image with the very pixels of a dataset image takes that image's judgments.")
if result.skipped:
    with st.expander(f"{len(result.skipped):,} files could not be read"):
        st.dataframe(pd.DataFrame([{"file": s.path, "reason": s.reason} for s in result.skipped]), hide_index=True,
                     key="check_skipped")

only = st.toggle("Only the images already in the dataset", value=True, key="check_only_found")
shown = [i for i in range(len(result.names)) if not only or any(result.duplicate[result.query == i])]
pages = max(1, -(-len(shown) // PER_PAGE))
page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key="check_page")) - 1 if pages > 1 else 0
by_name = dict(files)


def rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


tiles, borders, labels = [], [], []
for i in shown[page * PER_PAGE:(page + 1) * PER_PAGE]:
    tiles.append(decode_image(by_name[result.names[i]], ds.image_shape[:2])[0])  # decoded again, in memory
    borders.append(None)
    labels.append(f"new #{i + 1}")
    for split in (TRAIN, TEST):
        r = result.best(i, split)
        tiles.append(rgb(np.asarray(ds.images[int(result.match[r])])) if r is not None
                     else np.full((*ds.image_shape[:2], 3), 240, np.uint8))
        duplicate = r is not None and bool(result.duplicate[r])
        borders.append(None if r is None else (LEAKED if split == TEST else REDUNDANT) if duplicate else KEPT)
        labels.append("none" if r is None else f"{'train' if split == TRAIN else 'test'} {result.score[r]:.2f}")
if tiles:
    st.image(compose(np.stack(tiles), 6, borders, labels), output_format="PNG")
    st.caption("Each new image, then its best training match and its best test match with their pair score: red (a "
               "training duplicate) or purple (a test duplicate) when it counts as a duplicate, green when not. "
               "Their names are in the table below.")
else:
    st.info("None of these images is in the dataset at this minimum score.")
table = pd.DataFrame(rows(ds, result))
st.dataframe(table, hide_index=True, key="check_table", width="stretch")
st.download_button("Every match (CSV)", table.to_csv(index=False), "matches.csv", "text/csv", key="check_csv")
