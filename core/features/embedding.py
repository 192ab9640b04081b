"""Image embeddings for semantic redundancy, L2-normalised, cached, on CUDA or the CPU.

The paper's embedding (Birodkar, Mobahi & Bengio 2019) is the penultimate layer of a
classifier trained on the dataset itself: it needs no downloaded weights, so it works offline.
A torchvision ImageNet backbone is used when its weights are already in the local torch cache
(or a user online allows the download); raw pixels with PCA are the fast baseline.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core.data import cache
from core.data.datasets import TEST, TRAIN, Dataset
from core.data.device import pick_device
from core.data.types import ProgressFn, report
from core.features import onecycle, recipes, training
from core.features.models import ARCHS, build_model, resolve_arch
from core.features.recipes import AnyRecipe
from core.features.training import arrays_to_state, predict_features, state_to_arrays, to_tensor

log = logging.getLogger("redex.embedding")

MODELS = ("trained", "pixels", "resnet18", "resnet50")
STAGES = (("train", 95.0), ("embed", 5.0))  # the trained embedding's phases and their share of its time


class EmbeddingUnavailable(RuntimeError):
    """A pretrained backbone's weights are not on this machine; the message names file and folder."""


@dataclass(frozen=True)
class EmbedConfig:
    """Which embedding. arch "auto" is airbench's network by its embedding preset (core.features.recipes); the
    former architectures ("onecycle" for the former default) train by the one-cycle recipe as before.
    epochs=0 picks the preset's (or, for the former recipe, default_epochs)."""

    model: str = "trained"
    arch: str = "auto"
    epochs: int = 0
    seed: int = 0
    pca_dim: int = 64

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown embedding {self.model!r}: must be one of {', '.join(MODELS)}")
        if self.arch not in (*ARCHS, "onecycle"):
            raise ValueError(f"unknown architecture {self.arch!r}: must be one of {', '.join((*ARCHS, 'onecycle'))}")
        if self.epochs < 0:
            raise ValueError("epochs must be 0 (default) or more")


def default_epochs(n_train: int, device: str) -> int:
    """The former one-cycle recipe's epochs: 30 on a GPU or a small set; 12 for a CIFAR-sized set on a CPU."""
    if device == "cuda" or n_train <= 10_000:
        return 30
    return 12


def train_config(ds: Dataset, cfg: EmbedConfig) -> AnyRecipe:
    """The recipe of the embedding network: airbench's embedding preset, or the former one-cycle recipe."""
    n_train = int((ds.split == TRAIN).sum())
    h, w, c = ds.image_shape
    if cfg.arch in ("auto", "airbench"):
        preset = recipes.get(recipes.embedding_name(n_train, min(h, w), c, pick_device()))
        return replace(recipes.with_epochs(preset, cfg.epochs), seed=cfg.seed)
    epochs = cfg.epochs or default_epochs(n_train, pick_device())
    batch = 128 if n_train <= 10_000 else 512
    arch = "auto" if cfg.arch == "onecycle" else cfg.arch
    return onecycle.TrainConfig(arch=arch, epochs=epochs, batch_size=batch, lr=0.1 * batch / 128, seed=cfg.seed)


def _network_key(ds: Dataset, recipe: AnyRecipe) -> dict[str, Any]:
    if isinstance(recipe, onecycle.TrainConfig):
        return onecycle.recipe_key(recipe, min(ds.image_shape[:2]))
    return training.recipe_key(recipe)


def classifier_key(ds: Dataset, cfg: EmbedConfig) -> str:
    """The cache key of the embedding network (its checkpoint is this key + '.ckpt.npz')."""
    return cache.make_key("classifier", _network_key(ds, train_config(ds, cfg)), ds.fingerprint)


def build_network(info: dict[str, Any], in_channels: int, n_classes: int, size: int) -> torch.nn.Module:
    """An untrained network of the architecture `info` describes (from trained_classifier), to load weights into."""
    widths = tuple(info["widths"]) if info.get("widths") else None
    return build_model(str(info["arch"]), in_channels, n_classes, size, widths)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Embeddings:
    """(N, D) float32 unit vectors for every image of the dataset, and how they were made."""

    vectors: NDArray[np.float32]
    info: dict[str, Any]
    key: str  # the cache key: what derived results (dendrograms, maps) are keyed on


def _l2(x: NDArray[np.float32]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return out


def trained_classifier(ds: Dataset, cfg: EmbedConfig, on_progress: ProgressFn | None = None,
                       stop: threading.Event | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The classifier trained on ds's train split (cached as arrays; loading unpickles nothing)."""
    tcfg = train_config(ds, cfg)
    key = classifier_key(ds, cfg)
    checkpoint = cache.cache_dir() / f"{key}.ckpt.npz"
    tr, te = ds.split == TRAIN, ds.split == TEST
    h, w, c = ds.image_shape
    legacy = isinstance(tcfg, onecycle.TrainConfig)

    def compute() -> dict[str, NDArray[Any]]:
        images = ds.pixels("training the embedding network")
        common: dict[str, Any] = {"x_eval": np.asarray(images[te]), "y_eval": ds.labels[te],
                                  "ids": np.flatnonzero(tr), "checkpoint": checkpoint, "on_progress": on_progress,
                                  "stop": stop}
        x, y = np.asarray(images[tr]), ds.labels[tr]
        if isinstance(tcfg, onecycle.TrainConfig):
            model, result, norm = onecycle.train_one_cycle(x, y, len(ds.classes), tcfg, **common)
        else:
            model, result, norm = training.train(x, y, len(ds.classes), tcfg, **common)
        log.info("embedding network: %g epochs, test accuracy %.4f, %.1f s", result.epochs, result.accuracy,
                 result.seconds)
        meta = np.array([result.accuracy, result.seconds, result.epochs, result.n_train])
        return {**state_to_arrays(model), "mean": norm["mean"], "std": norm["std"], "meta": meta,
                "device": np.array(result.device), "precision": np.array(norm.get("precision", ""))}

    arrays = cache.cached_arrays(key, compute)
    checkpoint.unlink(missing_ok=True)  # the finished network is stored: the checkpoint has served
    acc, secs, epochs, n_train = arrays["meta"].tolist()
    info: dict[str, Any] = {
        "model": "trained",
        "arch": resolve_arch(tcfg.arch, min(h, w)) if isinstance(tcfg, onecycle.TrainConfig) else "airbench",
        "recipe": recipes.name_of(replace(tcfg, seed=0)), "epochs": float(epochs), "test_accuracy": acc,
        "train_seconds": secs, "device": str(arrays["device"]), "n_train": int(n_train)}
    if not legacy:
        assert isinstance(tcfg, training.Recipe)
        info.update(widths=list(tcfg.widths), precision=str(arrays["precision"]))
    model = arrays_to_state(build_network(info, c, len(ds.classes), min(h, w)), arrays)
    return model, {**info, "mean": arrays["mean"], "std": arrays["std"]}


def _trained(ds: Dataset, cfg: EmbedConfig, on_progress: ProgressFn | None,
             stop: threading.Event | None) -> tuple[NDArray[np.float32], dict[str, Any]]:
    model, info = trained_classifier(ds, cfg, on_progress, stop)
    device = pick_device()
    model = model.to(device)
    mean, std = (torch.from_numpy(info.pop(k)).to(device) for k in ("mean", "std"))
    feats, images = [], ds.pixels("embedding")
    report(on_progress, "embed", 0, len(ds), "every image through the network")
    for lo in range(0, len(ds), 8192):
        x = to_tensor(np.asarray(images[lo : lo + 8192]), device)
        feats.append(predict_features(model, x, mean, std, precision=info.get("precision")).cpu().numpy())
        report(on_progress, "embed", min(len(ds), lo + 8192), len(ds))
    return np.concatenate(feats).astype(np.float32), info


def _pixels(ds: Dataset, cfg: EmbedConfig) -> tuple[NDArray[np.float32], dict[str, Any]]:
    from sklearn.decomposition import PCA

    flat = np.asarray(ds.pixels("the pixels embedding"), np.float32).reshape(len(ds), -1) / 255.0
    fit = flat[ds.split == TRAIN]
    dim = min(cfg.pca_dim, flat.shape[1], len(fit))  # PCA fits on the training images: at most that many
    pca = PCA(dim, random_state=cfg.seed).fit(fit)
    return pca.transform(flat).astype(np.float32), {"model": "pixels", "pca_dim": dim}


def weights_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `name` in the local torch cache."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _pretrained(ds: Dataset, cfg: EmbedConfig, download: bool, on_progress: ProgressFn | None) -> tuple[
        NDArray[np.float32], dict[str, Any]]:
    import torchvision

    path = weights_path(cfg.model)
    if not path.exists() and not download:
        raise EmbeddingUnavailable(
            f"{cfg.model} ImageNet weights are not on this machine: expected {path.name} in {path.parent} "
            f"(copy it there, or allow the download when online); using the trained embedding instead is the fallback")
    weights = torchvision.models.get_model_weights(cfg.model).DEFAULT
    model = torchvision.models.get_model(cfg.model, weights=weights)  # torchvision loads with weights_only=True
    model.fc = torch.nn.Identity()
    device = pick_device()
    model = model.to(device).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    side = 224 if device == "cuda" else 112
    feats, images = [], ds.pixels(f"the {cfg.model} embedding")
    with torch.inference_mode():
        for lo in range(0, len(ds), 256):
            x = to_tensor(np.asarray(images[lo : lo + 256]), device).float()
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = torch.nn.functional.interpolate((x - mean) / std, size=(side, side), mode="bilinear")
            feats.append(model(x).float().cpu().numpy())
            report(on_progress, "embed", min(len(ds), lo + 256), len(ds))
    return np.concatenate(feats).astype(np.float32), {"model": cfg.model, "input_side": side}


def embed(ds: Dataset, cfg: EmbedConfig = EmbedConfig(), *, download: bool = False,
          on_progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Embeddings:
    """L2-normalised embeddings of every image of `ds` (train and test), cached on disk.

    A Ray result folder's opener stores the embedding its job computed under this same key; any
    other embedding of such a folder needs the pixels, and says so (DatasetError).
    """
    key = embed_key(ds, cfg)

    def compute() -> dict[str, NDArray[Any]]:
        if cfg.model == "trained":
            vecs, info = _trained(ds, cfg, on_progress, stop)
        elif cfg.model == "pixels":
            vecs, info = _pixels(ds, cfg)
        else:
            vecs, info = _pretrained(ds, cfg, download, on_progress)
        return {"vectors": _l2(vecs), "info": np.array(_json(info))}

    arrays = cache.cached_arrays(key, compute)
    return Embeddings(arrays["vectors"].astype(np.float32), json.loads(str(arrays["info"])), key)


def embed_key(ds: Dataset, cfg: EmbedConfig) -> str:
    """The cache key of an embedding of `ds`: the config, the network's recipe key (trained) and the data."""
    former = {"arch": "auto"} if cfg.arch == "onecycle" else {}  # the former default, keyed as it was
    key_cfg = {**asdict(cfg), **former,
               "train": _network_key(ds, train_config(ds, cfg)) if cfg.model == "trained" else None}
    return cache.make_key("embed", key_cfg, ds.fingerprint)


def store_embedding(ds: Dataset, cfg: EmbedConfig, vectors: NDArray[np.float32], info: dict[str, Any]) -> str:
    """Store vectors computed elsewhere (a Ray job) as the embedding `cfg` of `ds`; returns the key."""
    key = embed_key(ds, cfg)
    cache.cached_arrays(key, lambda: {"vectors": _l2(vectors), "info": np.array(_json(info))})
    return key


def cached_embedding_key(ds: Dataset, cfg: EmbedConfig = EmbedConfig()) -> str | None:
    """The cache key of the embedding of `ds` when it is on disk, else None (nothing is read or computed)."""
    key = embed_key(ds, cfg)
    return key if (cache.cache_dir() / f"{key}.npz").exists() else None


def cached_embedding(ds: Dataset, cfg: EmbedConfig = EmbedConfig()) -> Embeddings | None:
    """The embedding of `ds` when it is on disk already, else None: nothing is trained or computed."""
    key = embed_key(ds, cfg)
    arrays = cache.peek_arrays(key)
    if arrays is None:
        return None
    return Embeddings(arrays["vectors"].astype(np.float32), json.loads(str(arrays["info"])), key)


def _json(info: dict[str, Any]) -> str:
    return json.dumps({k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items()}, sort_keys=True)
