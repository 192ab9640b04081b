"""A `core scale` result folder opens as a dataset that equals its source, and the app browses it:
the same ids, pixels, hashes, groups and kept set; images read back from folders, Parquet rows and
tar members; stale or foreign folders refused with a message; every page renders on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import metric_text, page
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.data.datasets import DatasetError, load_dataset, load_image_folder
from core.data.scope import Scope
from core.features.hashing import HashConfig, dataset_hashes
from core.features.projection import drawn_points
from core.selections.duplicates import DEFAULT_RADIUS, build_index, dedup_selection, groups_at
from ui.pages import PAGES


@pytest.fixture(scope="module")
def job(scale_job):  # type: ignore[no-untyped-def]
    return scale_job


def test_result_folder_is_the_same_dataset(job) -> None:  # type: ignore[no-untyped-def]
    root, out = job
    ds, ref = load_dataset(f"scale:{out}"), load_image_folder(root)
    assert not ds.in_memory and ds.root == str(root)
    assert list(ds.ids) == list(ref.ids) and ds.classes == ref.classes
    assert np.array_equal(ds.labels, ref.labels) and np.array_equal(ds.split, ref.split)
    assert np.array_equal(ds.images[np.arange(len(ds))], ref.images)  # read back one by one from the files
    assert np.array_equal(ds.images[3], ref.images[3]) and np.array_equal(ds.images[2:5], ref.images[2:5])
    cfg = HashConfig("phash", 8)
    assert np.array_equal(dataset_hashes(ds, cfg), dataset_hashes(ref, cfg))
    a, b = build_index(ds, cfg), build_index(ref, cfg)
    ga, gb = groups_at(a, DEFAULT_RADIUS, Scope.WITHIN), groups_at(b, DEFAULT_RADIUS, Scope.WITHIN)
    assert [list(ga.group(g)) for g in range(len(ga))] == [list(gb.group(g)) for g in range(len(gb))]
    assert np.array_equal(dedup_selection(a, 4, ds.split, ds.sizes).keep,
                          dedup_selection(b, 4, ref.split, ref.sizes).keep)


def test_result_folder_holds_what_the_job_decided(job) -> None:  # type: ignore[no-untyped-def]
    """The kept sets the app computes from the folder are the ones the job wrote (same cut, same rule)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from core.features.embedding import embed
    from core.selections.semantic import build_dendrograms, semantic_selection

    _, out = job
    ds = load_dataset(f"scale:{out}")
    sem = pq.read_table(out / "semantic.parquet").to_pydict()
    assert list(sem) == ["id", "path", "class", "split", "hash", "cluster", "kept", "reason", "embedding"]
    frame = pd.read_parquet(out / "semantic.parquet")  # plain Parquet: pandas reads it as it is
    assert len(frame) == len(ds) and frame["embedding"].iloc[0].shape == (len(sem["embedding"][0]),)
    stored = np.asarray(sem["embedding"], dtype=np.float32)
    emb = embed(ds)  # the same network on this process: equal up to float rounding (thread counts, batch sizes)
    assert emb.vectors.shape == stored.shape
    cos = (emb.vectors * stored).sum(1) / (np.linalg.norm(emb.vectors, axis=1) * np.linalg.norm(stored, axis=1))
    assert cos.min() > 0.999, cos.min()
    # the cut is decided on the job's own vectors: a rounding can move a tie across the threshold
    dendro = build_dendrograms(stored, ds.labels, ds.split == 0)
    sel = semantic_selection(dendro, stored, keep_fraction=0.9)
    assert (sel.keep | ~sel.pool).tolist() == sem["kept"]
    dup = pq.read_table(out / "duplicates.parquet").to_pydict()
    index = build_index(ds, HashConfig("phash", 8))
    d = dedup_selection(index, 4, ds.split, ds.sizes)
    assert (d.keep | ~d.pool).tolist() == dup["kept"]
    record = json.loads((out / "job.json").read_text())
    assert record["duplicates"]["removed"] == len(d.removed) and record["semantic"]["removed"] == len(sel.removed)


def test_parquet_and_webdataset_results_read_their_images_back(local_ray, sources, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.pipelines.result_folder import write_results
    from core.pipelines.scale import hash_source

    root, parquet, wds = sources
    ref = load_image_folder(root)
    by_id = {str(i): k for k, i in enumerate(ref.ids)}
    for kind, path in (("parquet", parquet), ("webdataset", wds)):
        out = tmp_path / kind
        hashed = hash_source(f"{kind}:{path}", out, HashConfig("phash", 8), shard_size=20)
        write_results(out, hashed, "duplicates", kept=[True] * len(hashed.ids))
        ds = load_dataset(f"scale:{out}")
        assert ds.root is None and len(ds) == len(ref)
        strip = (lambda s: s) if kind == "parquet" else (lambda s: s + ".png")
        order = [by_id[strip(str(i))] for i in ds.ids]
        assert np.array_equal(ds.images[np.arange(len(ds))], ref.images[order]), kind


def test_unreadable_image_is_a_grey_tile_with_its_reason(job, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, out = job
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ds = load_dataset(f"scale:{copy}")
    gone = root / str(ds.ids[0])
    saved = gone.read_bytes()
    gone.unlink()  # the test's own copy of the source, not a user's file
    try:
        tile = ds.images[0]
    finally:
        gone.write_bytes(saved)
    assert (tile == 128).all() and 0 in ds.images.unreadable  # type: ignore[union-attr]
    assert "No such file" in ds.images.unreadable[0]  # type: ignore[union-attr]


def test_foreign_stale_and_missing_folders_are_refused(job, planted_folder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.data.shards import ScaleError
    from core.pipelines.scale import hash_source

    root, out = job
    with pytest.raises(DatasetError, match="no job.json"):
        load_dataset(f"scale:{tmp_path}")
    other = tmp_path / "other"
    shutil.copytree(out, other)
    with pytest.raises(ScaleError, match="another job"):  # another source into the same folder: never mixed
        hash_source(f"imagefolder:{planted_folder[0]}", other, HashConfig("phash", 8))
    record = json.loads((other / "job.json").read_text())
    (other / "job.json").write_text(json.dumps({**record, "format": 1}))
    with pytest.raises(DatasetError, match="another version"):
        load_dataset(f"scale:{other}")
    (other / "job.json").write_text(json.dumps(record))
    import pyarrow.parquet as pq

    table = pq.read_table(other / "semantic.parquet")
    pq.write_table(table.slice(1), other / "semantic.parquet")  # one image fewer than the hashes
    with pytest.raises(DatasetError, match="other images"):
        load_dataset(f"scale:{other}")


def test_scale_semantic_refuses_an_embedding_it_would_not_use(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert main(["scale", "semantic", "--source", f"imagefolder:{tmp_path}", "--out", str(out),
                 "--embedding", "resnet50"]) == 2
    assert "--embedding trained" in capsys.readouterr().err and not out.exists()


def test_map_draws_a_fixed_sample_above_its_limit() -> None:
    assert np.array_equal(drawn_points(50, 100), np.arange(50))
    a, b = drawn_points(10_000, 300), drawn_points(10_000, 300)
    assert np.array_equal(a, b) and len(np.unique(a)) == 300 and np.all(np.diff(a) > 0) and a[-1] < 10_000


def _page(path: str, spec: str, **state: object) -> AppTest:
    return page(path, spec=spec, **state).run()


@pytest.mark.parametrize("path", [p for p, _, _ in PAGES], ids=lambda p: Path(p).stem)
def test_every_page_browses_a_result_folder(job, path: str) -> None:  # type: ignore[no-untyped-def]
    _, out = job
    at = _page(path, f"scale:{out}")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_pages_show_the_numbers_of_the_source(job) -> None:  # type: ignore[no-untyped-def]
    root, out = job
    ours = _page("views/near_duplicates.py", f"scale:{out}", dup_method="hash")  # a Ray folder has hashes only
    theirs = _page("views/near_duplicates.py", f"imagefolder:{root}", dup_method="hash")
    for label in ("Groups (within class)", "Images removed", "Leaked test images"):
        assert metric_text(ours, label) == metric_text(theirs, label)
    assert metric_text(ours, "Images removed") == "15"
    home = _page("views/home.py", f"scale:{out}")
    assert any("A Ray result folder of imagefolder:" in c.value and "remove 15" in c.value for c in home.caption)
    experiments = _page("views/experiments.py", f"scale:{out}")
    assert any("Retraining needs every image decoded on this machine" in i.value for i in experiments.info)


def test_allow_list_covers_the_source_of_a_result_folder(job, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import os

    root, out = job
    monkeypatch.setenv("REDEX_DATA_ROOTS", str(out.parent))  # the result folder, not the images it points to
    refused = _page("views/home.py", f"scale:{out}")
    assert not refused.exception and refused.error
    assert "come from imagefolder:" in refused.error[0].value and "outside the folders" in refused.error[0].value
    monkeypatch.setenv("REDEX_DATA_ROOTS", os.pathsep.join([str(out.parent), str(root.parent)]))
    allowed = _page("views/home.py", f"scale:{out}")
    assert not allowed.exception and not allowed.error


def test_map_of_a_result_folder_draws_its_sample(job) -> None:  # type: ignore[no-untyped-def]
    _, out = job
    at = _page("views/map.py", f"scale:{out}", map_max_points=30)
    assert any("random sample of 30 of the 75 points" in c.value for c in at.caption)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sum(_length(t["x"]) for t in spec["data"]) == 30


def _length(values: object) -> int:
    """Points in a plotly array: a list, or a typed array ({'dtype', 'bdata'}: base64 of the raw values)."""
    if isinstance(values, dict):
        import base64

        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values)  # type: ignore[arg-type]


def test_duplicates_only_folder_explains_the_missing_embedding(local_ray, planted_folder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "dup-only"
    assert main(["scale", "duplicates", "--source", f"imagefolder:{planted_folder[0]}", "--out", str(out)]) == 0
    home = _page("views/home.py", f"scale:{out}")
    assert not home.exception and metric_text(home, "Images") == "75", "the rest of Home draws"
    assert any("python -m core scale semantic" in i.value for i in home.info), "the semantic tile says what to run"
    semantic = _page("views/semantic.py", f"scale:{out}")
    assert not semantic.exception and not semantic.error
    assert any("python -m core scale semantic" in i.value for i in semantic.info)
    from core.pipelines.results import results_version

    before = results_version(out)
    assert main(["scale", "semantic", "--source", f"imagefolder:{planted_folder[0]}", "--out", str(out),
                 "--epochs", "2"]) == 0
    assert results_version(out) != before  # the app's memo key: the folder is reopened, not served stale
    semantic = _page("views/semantic.py", f"scale:{out}")
    assert not semantic.exception and metric_text(semantic, "Kept (required)") == "49"


def test_export_from_a_result_folder_copies_the_source_files(job, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.pipelines.export import export
    from core.selections.duplicates import hash_selection

    root, out = job
    ds = load_dataset(f"scale:{out}")
    sel = hash_selection(ds, build_index(ds, HashConfig("phash", 8)), 4, "first")
    result = export(ds, sel, tmp_path / "pruned", images=True)
    assert result["images"] == len(sel.kept) == 54 - 15
    for i in sel.kept[:10]:
        rel = Path(str(ds.ids[i]))
        assert (tmp_path / "pruned" / "images" / rel).read_bytes() == (root / rel).read_bytes()
