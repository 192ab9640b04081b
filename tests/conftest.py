"""Shared fixtures: a session cache folder, the planted image folder, the CIFAR-10 path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="redex-test-cache-")
os.environ["REDEX_CACHE_DIR"] = _CACHE  # before any core import reads it

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpg"
needs_cifar = pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason=f"CIFAR-10 JPEGs not found at {CIFAR}")


@pytest.fixture(scope="session")
def cache_root() -> Path:
    return Path(_CACHE)


@pytest.fixture(scope="session")
def planted_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from core.synthetic import write_planted_folder

    root = tmp_path_factory.mktemp("planted")
    return root, write_planted_folder(root)


@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    from core.datasets import load_digits

    return load_digits()


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: compare before and after to prove nothing changed."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}
