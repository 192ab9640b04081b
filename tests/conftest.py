"""Shared fixtures: a session cache folder, the planted image folder, the CIFAR-10 path."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

if "REDEX_TEST_SESSION" in os.environ:  # a process the session started (a worker importing a test module): its folders
    _CACHE = os.environ.get("REDEX_CACHE_DIR", os.environ["REDEX_TEST_SESSION"])
    _JUDGMENTS = os.environ.get("REDEX_JUDGMENTS_DIR", "")
else:
    _CACHE = tempfile.mkdtemp(prefix="redex-test-cache-")
    _JUDGMENTS = tempfile.mkdtemp(prefix="redex-test-judgments-")
    os.environ["REDEX_TEST_SESSION"] = _CACHE
    os.environ["REDEX_CACHE_DIR"] = _CACHE  # before any core import reads it
    os.environ["REDEX_JUDGMENTS_DIR"] = _JUDGMENTS
# AppTest runs a page once and does not drive the polling fragments: pages wait for their steps
# (tests of the drawing-at-once behaviour set 0 themselves).
os.environ.setdefault("REDEX_STEP_WAIT", "600")

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg"
needs_cifar = pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason=f"CIFAR-10 JPEGs not found at {CIFAR}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's cache and judgments go with it (a run leaves nothing in the temporary folder)."""
    if os.environ.get("REDEX_TEST_SESSION") == _CACHE:
        for folder in (_CACHE, _JUDGMENTS):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_root() -> Path:
    return Path(_CACHE)


@pytest.fixture(scope="session")
def planted_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from core.data.synthetic import write_planted_folder

    root = tmp_path_factory.mktemp("planted")
    return root, write_planted_folder(root)


@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    from core.data.datasets import load_digits

    return load_digits()


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: compare before and after to prove nothing changed."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="session")
def local_ray():  # type: ignore[no-untyped-def]
    """A local Ray with 2 CPUs for the whole session (skips where Ray is missing or cannot start)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from core.data.shards import ScaleError
    from core.pipelines.ray_runtime import connect

    try:
        connect(None, num_cpus=2)
    except ScaleError as exc:
        pytest.skip(f"Ray cannot start here: {exc}")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def sources(planted_folder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The planted folder, and a Parquet and a WebDataset copy of it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = planted_folder
    files = sorted(p for p in root.rglob("*.png"))
    rels = [p.relative_to(root).as_posix() for p in files]
    base = tmp_path_factory.mktemp("copies")
    pq.write_table(pa.table({"id": rels, "image": [p.read_bytes() for p in files],
                             "label": [r.split("/")[1] for r in rels], "split": [r.split("/")[0] for r in rels]}),
                   base / "data.parquet", row_group_size=16)  # several row groups: rows are found across them
    (base / "wds").mkdir()
    for split in ("train", "test"):
        with tarfile.open(base / "wds" / f"{split}-000.tar", "w") as tf:
            for p, r in zip(files, rels):
                if r.startswith(split):
                    key = r.rsplit(".", 1)[0]
                    tf.add(p, arcname=f"{key}.png")
                    cls = base / "cls.txt"
                    cls.write_text(r.split("/")[1])
                    tf.add(cls, arcname=f"{key}.cls")
    return root, base / "data.parquet", base / "wds"


@pytest.fixture(scope="session")
def scale_job(local_ray, planted_folder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A copy of the planted folder, and the result folder of `scale duplicates` + `scale semantic` on it."""
    root = tmp_path_factory.mktemp("src") / "planted"
    shutil.copytree(planted_folder[0], root)
    out = tmp_path_factory.mktemp("job") / "out"
    for step in ("duplicates", "semantic"):
        from core.cli import main

        assert main(["scale", step, "--source", f"imagefolder:{root}", "--out", str(out), "--epochs", "3"]) == 0
    return root, out


# --- page helpers: `from conftest import page, metric` ----------------------------------------------------------
PAGE_TIMEOUT = 300  # a first run may train the digits embedding and compile numba kernels


def page(path: str, *, timeout: float = PAGE_TIMEOUT, spec: str | None = None, **state: object):  # type: ignore[no-untyped-def]
    """An AppTest of one page file (relative to the project), with session state set before its first run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
    if spec is not None:
        at.session_state["dataset"] = spec
    for k, v in state.items():
        at.session_state[k] = v
    return at


def metric_text(at, label: str) -> str:  # type: ignore[no-untyped-def]
    """The value of the first metric whose label starts with `label`, as shown."""
    for m in at.metric:
        if m.label.startswith(label):
            return str(m.value)
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def metric(at, label: str) -> float:  # type: ignore[no-untyped-def]
    """The number a metric shows (its first word, without thousands separators or %)."""
    return float(metric_text(at, label).split()[0].replace(",", "").rstrip("%"))
