"""What pages draw: each is a step (ui.steps) that runs as a background job when not cached.

The disk cache in core is the source of truth (shared by tabs, the CLI and restarts); the memo
keeps loaded objects in memory, so a rerun, a page switch or a second tab costs nothing. Each
function returns None while its job runs, having drawn the job's progress where the result
will appear; the page draws everything else meanwhile.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from core.data import cache
from core.data.datasets import Dataset, DatasetError, load_dataset
from core.data.scope import Scope
from core.data.types import ProgressFn, Stages
from core.features.embedding import STAGES as EMBED_STAGES
from core.features.embedding import EmbedConfig, Embeddings, EmbeddingUnavailable, embed
from core.features.hashing import HashConfig
from core.features.projection import Projection, UmapConfig, cached_projection
from core.features.recipes import AnyRecipe
from core.pipelines.check import CheckResult, check_images, read_images
from core.pipelines.experiments import seconds_per_step
from core.pipelines.report import build_report
from core.pipelines.results import results_version
from core.pipelines.settings import NearDupSettings, Settings
from core.selections.candidates import STAGES as CANDIDATE_STAGES
from core.selections.candidates import CandidateConfig, Candidates, cached_candidates
from core.selections.duplicates import DuplicateIndex, build_index
from core.selections.semantic import Dendrograms, cached_dendrograms
from ui.state import check_allowed
from ui.steps import step


def dataset(spec: str) -> Dataset | None:
    """The dataset named by `spec` (None while it is decoded), or DatasetError with what to do."""
    refused = check_allowed(spec)
    if refused:
        raise DatasetError(refused)
    source, _, path = spec.partition(":")
    version = f":{results_version(path)}" if source.strip().lower() == "scale" else ""  # a finished step reopens it
    ds = step(f"ds:{spec}{version}", "Opening the dataset", lambda p: load_dataset(spec, on_progress=p),
              explain=())  # a dataset that cannot be opened is an error the page shows as one
    if ds is None:
        return None
    refused = check_allowed(ds.origin) if ds.origin else None
    if refused:  # a Ray result folder shows images from its job's source: that must be allowed too
        raise DatasetError(f"the images of this result folder come from {ds.origin}, and {refused}")
    return ds


def dup_index(ds: Dataset, method: str, size: int) -> DuplicateIndex | None:
    """The hash index of `ds` (a Ray result folder holds the hashes its job computed; another hash needs the
    pixels, and the page says so)."""
    cfg = HashConfig(method, size)
    return step(f"dup:{ds.fingerprint}:{cfg.label}", f"Hashing ({cfg.label}) and finding pairs",
                      lambda p: build_index(ds, cfg, p))


def candidates(ds: Dataset, scope: Scope) -> Candidates | None:
    """Near-duplicate candidates of one scope: pixel neighbours and the pair score (cached)."""
    return step(f"cands:{ds.fingerprint}:{scope}", f"Near-duplicate candidates, {scope.label.lower()}",
                lambda p: cached_candidates(ds, scope, CandidateConfig(),
                                            on_progress=Stages(p, CANDIDATE_STAGES, "candidates")))


def embedding_key(ds: Dataset, model: str) -> str:
    """The step key of an embedding (the step registry finds its job by it)."""
    return f"emb:{ds.fingerprint}:{model}"


def embeddings(ds: Dataset, model: str) -> Embeddings | None:
    """The chosen embedding; a pretrained one whose weights are missing falls back to 'trained'.

    Training the network behind 'trained' is the longest step of all (minutes on a CPU): it
    checkpoints every epoch, so a server restart resumes it where it stood.
    """
    try:
        return step(embedding_key(ds, model), f"Embedding ({model})",
                    lambda p: embed(ds, EmbedConfig(model=model), on_progress=Stages(p, EMBED_STAGES, "embedding")))
    except EmbeddingUnavailable as exc:
        if model == "trained":
            raise
        st.warning(str(exc))
        return embeddings(ds, "trained")


def dendrograms(ds: Dataset, emb: Embeddings) -> Dendrograms | None:
    return step(f"dendro:{emb.key}", "Clustering each class",
                      lambda p: cached_dendrograms(ds, emb.vectors, emb.key, on_progress=p))


def training_speed(ds: Dataset, recipe: AnyRecipe) -> float | None:
    """Seconds per optimizer step of `recipe` here (a short timed run, once per recipe and device)."""
    return step(f"speed:{ds.fingerprint}:{recipe}", "Timing the training recipe",
                lambda p: seconds_per_step(ds, recipe))


def check(ds: Dataset, files: list[tuple[str, bytes]], near: NearDupSettings) -> CheckResult | None:
    """Uploaded images checked against ds (a step keyed by their content: a rerun or a second tab reads it back)."""
    digest = hashlib.blake2b(b"".join(hashlib.blake2b(name.encode() + b"\0" + data).digest() for name, data in files),
                             digest_size=16).hexdigest()

    def run(p: ProgressFn) -> CheckResult:
        images, names, skipped = read_images(files, ds.image_shape[:2])
        return check_images(ds, images, names, near, skipped=skipped, on_progress=p)

    return step(f"check:{ds.fingerprint}:{digest}:{near.min_score}", f"Checking {len(files):,} new images", run)


def report_html(ds: Dataset, settings: Settings, build: int) -> str | None:
    """The report's HTML (a background step; `build` counts the presses of Build, so each press builds anew)."""
    return step(f"report:{ds.fingerprint}:{settings}:{build}", "Building the report",
                lambda p: build_report(ds, settings, on_progress=p))


def projection(emb: Embeddings) -> Projection | None:
    return step(f"umap:{emb.key}", "Computing the UMAP map", lambda p: cached_projection(emb.vectors, emb.key,
                                                                                        UmapConfig(), p))


def cache_status() -> str:
    s = cache.stats.snapshot()
    return f"disk cache {cache.cache_dir()} · {s['hits']} hits, {s['misses']} computed, {s['corrupt']} healed"
