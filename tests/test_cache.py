"""The disk cache: hits on a second call, heals corrupt entries, keys change with every field."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from core.data import cache
from core.features.hashing import HashConfig


def test_second_call_does_not_recompute() -> None:
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(10)}

    key = cache.make_key("test-hit", {"a": 1}, "fp")
    first = cache.cached_arrays(key, compute)
    second = cache.cached_arrays(key, compute)
    assert len(calls) == 1 and np.array_equal(first["x"], second["x"])


@pytest.mark.parametrize("damage", ["truncate", "random-bytes", "flip-data-byte", "empty"])
def test_damaged_entry_is_detected_and_recomputed(damage: str) -> None:
    key = cache.make_key("test-damage", {"damage": damage}, "fp")
    data = {"x": np.arange(100_000, dtype=np.int64)}
    cache.cached_arrays(key, lambda: data)
    path = cache.cache_dir() / f"{key}.npz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "random-bytes":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    elif damage == "flip-data-byte":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    corrupt = cache.stats.corrupt
    calls = []
    out = cache.cached_arrays(key, lambda: calls.append(1) or data)
    assert calls == [1] and cache.stats.corrupt == corrupt + 1
    assert np.array_equal(out["x"], data["x"])
    assert np.array_equal(cache.read_npz(path)["x"], data["x"])  # healed on disk


def test_leftover_temp_file_is_never_read() -> None:
    key = cache.make_key("test-tmp", {}, "fp")
    (cache.cache_dir() / f"{key}.npz.tmp-999-deadbeef").write_bytes(b"half a file")
    out = cache.cached_arrays(key, lambda: {"x": np.ones(3)})
    assert np.array_equal(out["x"], np.ones(3))


def test_every_config_field_changes_the_key() -> None:
    base = HashConfig("phash", 8)
    keys = {cache.make_key("hash", base, "fp")}
    for f in dataclasses.fields(base):
        other = dataclasses.replace(base, **{f.name: {"method": "dhash", "hash_size": 16}[f.name]})
        keys.add(cache.make_key("hash", other, "fp"))
    keys.add(cache.make_key("hash", base, "other-fingerprint"))
    assert len(keys) == len(dataclasses.fields(base)) + 2


def test_format_version_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache.make_key("k", {}, "fp")
    monkeypatch.setattr(cache, "FORMAT_VERSION", cache.FORMAT_VERSION + 1)
    assert cache.make_key("k", {}, "fp") != before


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert cache.cache_dir() == tmp_path / f"v{cache.FORMAT_VERSION}"
    assert os.path.isdir(cache.cache_dir())
