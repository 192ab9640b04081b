"""Ray: hashing and embedding with 1 and 2 workers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CIFAR, SPEC, row, section, timed


@section
def scale() -> list[dict[str, Any]]:
    """Ray: hashing and embedding CIFAR-10 from the JPEGs with 1 and 2 workers against the single-machine
    path, and the exact search at radius 4 on 5,000,000 synthetic hashes with 1% planted near-duplicates
    (time, every worker's peak memory, planted pairs found)."""
    import shutil

    import ray

    from core.data import cache
    from core.data.datasets import load_image_folder
    from core.data.synthetic import planted_codes
    from core.features.hashing import HashConfig, hash_images
    from core.pipelines.ray_runtime import connect
    from core.pipelines.scale import hash_source, search_ray

    rows = []
    if SPEC != "digits":
        tmp = Path(tempfile.mkdtemp())
        os.environ[cache.ENV_VAR] = str(tmp / "cache")
        single_s, _ = timed(lambda: hash_images(np.asarray(load_image_folder(CIFAR).images), HashConfig()))
        for workers in (1, 2):
            connect(None, num_cpus=workers)
            out = tmp / f"ray{workers}"
            t, hashed = timed(lambda out=out: hash_source(SPEC, out, HashConfig()))
            ray.shutdown()
            rows.append(row(f"Ray hashing from JPEG, {len(hashed.ids):,} images, {workers} worker(s)",
                            "single machine: decode (all cores) + hash", single_s, t,
                            notes=f"{len(hashed.ids) / t:,.0f} images/s; ratio < 1 is Ray's overhead"))
        rows += _scale_embedding(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    connect(None)
    codes, planted = planted_codes(5_000_000, 50_000, 4, seed=0)
    t, run = timed(lambda: search_ray(codes, 4, pieces=8))
    pairs = run.pairs
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    hit = sum((min(a, b), max(a, b)) in found for a, b in planted.tolist())
    ray.shutdown()
    peaks = ", ".join(f"{p / 2**20:,.0f}" for p in sorted(run.worker_peak.values()))
    rows.append(row("Ray exact search radius 4, 5,000,000 hashes", "–", None, t,
                    notes=f"{len(pairs):,} pairs; planted found {hit:,} of {len(planted):,}; peak memory per "
                          f"worker (MB, getrusage in each of {len(run.worker_peak)} workers): {peaks}"))
    return rows

def _scale_embedding(tmp: Path) -> list[dict[str, Any]]:
    """Embedding CIFAR-10 on Ray actors (decode + ResNet-20 features) with 1 and 2 workers, against the
    single-machine decode + features on all cores. The network's weights are its seeded initial ones:
    throughput does not depend on them, and training it (~8 min here) is not what is measured."""
    import ray
    import torch

    from core.data import cache
    from core.data.datasets import load_image_folder
    from core.data.device import pick_device
    from core.features.models import build_model
    from core.features.training import predict_features, to_tensor
    from core.pipelines.ray_runtime import connect
    from core.pipelines.scale import embed_source

    torch.manual_seed(0)
    model = build_model("resnet20", 3, 10, 32)
    info = {"arch": "resnet20", "mean": np.full((1, 3, 1, 1), 120.0, np.float32),
            "std": np.full((1, 3, 1, 1), 64.0, np.float32)}

    def single() -> int:
        os.environ[cache.ENV_VAR] = str(tmp / "cache-embed")  # a cold decode, as on the Ray side
        images = np.asarray(load_image_folder(CIFAR).images)
        device = pick_device()
        mean, std = (torch.from_numpy(info[k]).to(device) for k in ("mean", "std"))
        m = model.to(device).to(memory_format=torch.channels_last)
        feats = [predict_features(m, to_tensor(images[lo: lo + 8192], device), mean, std)
                 for lo in range(0, len(images), 8192)]
        return sum(len(f) for f in feats)

    single_s, n = timed(single)
    rows = []
    for workers in (1, 2):
        connect(None, num_cpus=workers)
        out = tmp / f"embed{workers}"
        t, vectors = timed(lambda out=out, w=workers: embed_source(SPEC, out, (model, info), actors=w))
        ray.shutdown()
        rows.append(row(f"Ray embedding from JPEG (ResNet-20 features), {len(vectors):,} images, {workers} worker(s)",
                        "single machine: decode (all cores) + features (all cores)", single_s, t,
                        notes=f"{len(vectors) / t:,.0f} images/s ({len(vectors) / t / workers:,.0f} per worker); "
                              f"single machine {n / single_s:,.0f} images/s"))
    return rows
