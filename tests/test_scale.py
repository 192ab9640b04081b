"""The Ray path equals the single-machine path: hashes, pairs, groups and kept set, from an image
folder, Parquet and WebDataset; a worker killed mid-job changes nothing; a missing cluster is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from core.data.datasets import load_image_folder
from core.data.scope import Scope
from core.features.hashing import HashConfig, dataset_hashes, to_hex
from core.selections.duplicates import DEFAULT_RADIUS, build_index, dedup_selection, groups_at

ray = pytest.importorskip("ray", reason="Ray is not installed")


def single_machine(root: Path):  # type: ignore[no-untyped-def]
    ds = load_image_folder(root)
    index = build_index(ds, HashConfig("phash", 8))
    return ds, index


def id_pairs(ids: list[str], i: np.ndarray, j: np.ndarray) -> set[tuple[str, str]]:
    return {tuple(sorted((ids[a], ids[b]))) for a, b in zip(i.tolist(), j.tolist())}  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["imagefolder", "parquet", "webdataset"])
def test_ray_path_equals_single_machine(local_ray, sources, kind, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.pipelines.scale import find_pairs_ray, hash_source
    from core.selections.duplicates import DuplicateIndex, pair_scopes

    root, parquet, wds = sources
    ds, index = single_machine(root)
    spec = {"imagefolder": f"imagefolder:{root}", "parquet": f"parquet:{parquet}", "webdataset": f"webdataset:{wds}"}
    hashed = hash_source(spec[kind], tmp_path / "out", HashConfig("phash", 8), shard_size=20)
    strip = (lambda s: s.rsplit(".", 1)[0]) if kind == "webdataset" else (lambda s: s)
    ours = {strip(str(i)): h for i, h in zip(ds.ids, to_hex(dataset_hashes(ds, HashConfig("phash", 8))))}
    theirs = dict(zip(hashed.ids, to_hex(hashed.codes)))
    assert theirs == ours  # bit-identical hashes for every image
    pairs = find_pairs_ray(hashed.codes, index.max_radius, pieces=4)
    ids = [strip(str(i)) for i in ds.ids]
    assert id_pairs(hashed.ids, pairs.i, pairs.j) == id_pairs(ids, index.pairs.i, index.pairs.j)
    ray_index = DuplicateIndex(index.config, hashed.codes, pairs, pair_scopes(pairs, hashed.labels, hashed.split),
                               index.max_radius)
    for scope in (Scope.WITHIN, Scope.CROSS, Scope.LEAKAGE):
        a, b = groups_at(index, DEFAULT_RADIUS, scope), groups_at(ray_index, DEFAULT_RADIUS, scope)
        assert sorted(sorted(ids[m] for m in a.group(g)) for g in range(len(a))) == sorted(
            sorted(hashed.ids[m] for m in b.group(g)) for g in range(len(b)))
    kept_single = {ids[k] for k in dedup_selection(index, DEFAULT_RADIUS, ds.split, ds.sizes).kept}
    kept_ray = {hashed.ids[k] for k in dedup_selection(ray_index, DEFAULT_RADIUS, hashed.split, hashed.sizes).kept}
    assert kept_ray == kept_single


def test_distributed_search_on_many_hashes(local_ray) -> None:  # type: ignore[no-untyped-def]
    from core.data.synthetic import planted_codes
    from core.features.neighbors import find_pairs
    from core.pipelines.scale import find_pairs_ray

    codes, _ = planted_codes(60_000, 600, 4, seed=3)
    a, b = find_pairs(codes, 4), find_pairs_ray(codes, 4, pieces=6)
    assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j) and np.array_equal(a.d, b.d)


def test_dendrograms_on_ray_equal_single_machine(local_ray) -> None:  # type: ignore[no-untyped-def]
    from core.pipelines.scale import dendrograms_ray
    from core.selections.semantic import build_dendrograms, cut

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.arange(300) % 3
    pool = np.arange(300) < 250
    a, b = build_dendrograms(x, labels, pool), dendrograms_ray(x, labels, pool)
    assert np.array_equal(cut(a, 0.4), cut(b, 0.4))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_worker_killed_mid_job_then_same_result(sources, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = sources
    out = tmp_path / "out"
    killed = _cli("scale", "duplicates", "--source", f"imagefolder:{root}", "--out", str(out), "--workers", "2",
                  env={"REDEX_TEST_KILL": "hash:0"})
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert (out / "killed-hash-0").exists(), "the worker for shard 0 was meant to die once"
    assert not list(out.rglob("*.tmp-*")), "no partial shard is left behind"
    single = _cli("duplicates", "--dataset", f"imagefolder:{root}")
    line = [x for x in single.stdout.splitlines() if x.startswith("train/test leakage")][0]
    assert line in killed.stdout
    import pyarrow.parquet as pq

    table = pq.read_table(out / "duplicates.parquet").to_pydict()
    assert len(table["id"]) == len(set(table["id"])) == 75  # every image once: no shard read twice


@pytest.mark.slow  # two Ray jobs that each train (about a minute); a killed Ray task stays in the default suite
def test_embedding_actor_killed_mid_job_then_same_vectors(sources, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An embedding actor dies on shard 0; Ray restarts it and the job's vectors equal an undisturbed run."""
    import pyarrow.parquet as pq

    root, _, _ = sources
    runs = {}
    for name, env in (("killed", {"REDEX_TEST_KILL": "embed:0"}), ("clean", {})):
        out = tmp_path / name
        res = _cli("scale", "embed", "--source", f"imagefolder:{root}", "--out", str(out), "--workers", "2",
                   "--epochs", "2", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert not list(out.rglob("*.tmp-*")), "no partial shard is left behind"
        runs[name] = pq.read_table(out / "embeddings.parquet").to_pydict()
    assert (tmp_path / "killed" / "killed-embed-0").exists(), "the actor for shard 0 was meant to die once"
    assert runs["killed"]["id"] == runs["clean"]["id"] and len(set(runs["killed"]["id"])) == 75
    np.testing.assert_array_equal(np.array(runs["killed"]["embedding"]), np.array(runs["clean"]["embedding"]))


def test_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path: Path, planted_folder) -> None:  # type: ignore[no-untyped-def]
    root, _ = planted_folder
    out = tmp_path / "out"
    res = _cli("scale", "hash", "--source", f"imagefolder:{root}", "--out", str(out), "--address", "127.0.0.1:1")
    assert res.returncode == 2 and res.stderr.startswith("error: cannot reach a Ray cluster"), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not out.exists()


def test_embedding_on_ray_actors_equals_single_machine(local_ray, sources, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.features.embedding import EmbedConfig, embed, trained_classifier
    from core.pipelines.scale import embed_source

    root, _, _ = sources
    ds = load_image_folder(root)
    cfg = EmbedConfig(epochs=2)
    vectors = embed_source(f"imagefolder:{root}", tmp_path / "out", trained_classifier(ds, cfg), shard_size=20)
    single = embed(ds, cfg).vectors
    assert vectors.shape == single.shape
    np.testing.assert_allclose(vectors, single, atol=1e-4)


@pytest.mark.slow
def test_joins_an_existing_cluster_by_address(planted_folder, tmp_path: Path) -> None:
    """The README's route: `ray start --head` (token authentication on), then --address HOST:PORT."""
    import secrets
    import signal
    import socket
    import time

    root, _ = planted_folder
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        res = _cli("scale", "duplicates", "--source", f"imagefolder:{root}", "--out", str(tmp_path / "out"),
                   "--address", f"127.0.0.1:{port}", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "Connecting to existing Ray cluster" in res.stderr
        single = _cli("duplicates", "--dataset", f"imagefolder:{root}")
        line = [x for x in single.stdout.splitlines() if x.startswith("train/test leakage")][0]
        assert line in res.stdout
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # this head and its processes only, not any other Ray here
        head.wait(timeout=60)
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` names its head here for address="auto"
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
