"""Train a classifier from scratch on a subset and measure test accuracy, on CUDA or the CPU.

airbench's shape, made device-agnostic: the whole split lives on the device as one uint8
tensor, a subset is an index array, augmentation (flip, translate) runs on batches on the
device, and the schedule is a triangular one-cycle (linear warm-up, linear decay) with
Nesterov SGD and label smoothing. channels_last everywhere (about 30% faster on the CPU too);
bf16 autocast on CUDA. The same
config and seed give every arm of an experiment the same recipe, so arms differ only in data.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from core import cache
from core.device import describe, pick_device
from core.models import VERSIONS, build_model, resolve_arch
from core.types import Cancelled, Images, ProgressFn, report

log = logging.getLogger("redex.training")


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe. lr is the peak of the one-cycle schedule at `batch_size`."""

    arch: str = "auto"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup: float = 0.15  # fraction of the steps spent warming up
    augment: str = "auto"  # "auto": flip+translate for RGB, translate for gray; or "none"
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    """Test accuracy and how it was reached."""

    accuracy: float
    seconds: float
    epochs: int
    n_train: int
    device: str
    losses: tuple[float, ...]
    per_class: tuple[float, ...] = ()  # test accuracy of each class (by class index)


def to_tensor(images: Images, device: str) -> torch.Tensor:
    """(N, H, W, C) uint8 to an (N, C, H, W) uint8 tensor on `device` (normalised per batch)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))).to(device)


def _normaliser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.float().transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1).view(1, -1, 1, 1), flat.std(1).clamp_min(1.0).view(1, -1, 1, 1)


def _augment(x: torch.Tensor, flip: torch.Tensor | None, sy: torch.Tensor | None, sx: torch.Tensor | None,
             pad: int) -> torch.Tensor:
    """Horizontal flip where `flip` is set; translation by (sy - pad, sx - pad) pixels (reflect padding)."""
    n, c, h, w = x.shape
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if pad and sy is not None and sx is not None:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        rows = (sy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (sx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        idx = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        ch = torch.arange(c, device=x.device).view(1, c, 1, 1)
        x = xp[idx, ch, rows, cols]
    return x


def _epoch_augmentation(seed: int, epoch: int, n_ids: int, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image's flip and shift for one epoch, drawn per image id, not per batch position.

    Two runs with the same seed on different subsets of one dataset then show every image they
    share the same way in every epoch: the arms of a paired experiment differ only in data.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    flip = torch.rand(n_ids, generator=gen) < 0.5
    shifts = torch.randint(0, 2 * pad + 1, (2, n_ids), generator=gen)
    return flip, shifts[0], shifts[1]


def mixed_precision(device: str) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (tensor cores, half the memory traffic); nothing on the CPU, where float32 is
    as fast for these small convolutions and bf16 would only cost accuracy."""
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.inference_mode()
def predict_features(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     batch: int = 1024, head: bool = False) -> torch.Tensor:
    """Penultimate features (or logits with head=True) of every row of x, batched."""
    model.eval()
    device = x.device
    outs = []
    for lo in range(0, len(x), batch):
        xb = ((x[lo : lo + batch].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with mixed_precision(device.type):
            out = model(xb) if head else model.features(xb)  # type: ignore[operator]
        outs.append(out.float())
    return torch.cat(outs) if outs else torch.zeros(0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             n_classes: int = 0) -> tuple[float, tuple[float, ...]]:
    """Top-1 accuracy on (x, y), and per class (NaN for a class without test images)."""
    if len(x) == 0:
        return float("nan"), ()
    hit = (predict_features(model, x, mean, std, head=True).argmax(1) == y).float().cpu().numpy()
    labels = y.cpu().numpy()
    counts = np.bincount(labels, minlength=n_classes)
    per = np.bincount(labels, weights=hit, minlength=n_classes) / np.maximum(counts, 1)
    per[counts == 0] = np.nan
    return float(hit.mean()), tuple(float(v) for v in per)


TRAINING_VERSION = 2  # 2: augmentation drawn per image id; resumable per-epoch checkpoints


def _lr_factor(step: int, total: int, warm: int) -> float:
    """Triangular one-cycle: linear warm-up over `warm` steps, then linear decay to 0."""
    return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, seconds: float,
                     losses: list[float]) -> None:
    """Weights, momentum buffers and progress after `epoch` epochs, written atomically."""
    momenta = {f"momentum/{i}": opt.state[p]["momentum_buffer"].detach().cpu().numpy()
               for i, p in enumerate(p for g in opt.param_groups for p in g["params"]) if p in opt.state}
    cache.write_npz(path, {**state_to_arrays(model), **momenta, "epoch": np.array(epoch),
                           "seconds": np.array(seconds), "losses": np.array(losses, np.float64)})


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, float, list[float]]:
    """Restore a checkpoint into model and opt; (0, 0, []) when there is none or it is unreadable."""
    if not path.exists():
        return 0, 0.0, []
    try:
        arrays = cache.read_npz(path)
        arrays_to_state(model, arrays)
        params = [p for g in opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            buf = arrays.get(f"momentum/{i}")
            if buf is not None:
                opt.state[p]["momentum_buffer"] = torch.from_numpy(np.array(buf)).to(p.device)
        epoch = int(arrays["epoch"])
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:  # a damaged checkpoint restarts training
        log.warning("checkpoint %s is unreadable (%s); training from epoch 1", path.name, exc)
        path.unlink(missing_ok=True)
        return 0, 0.0, []
    log.info("resuming from %s after epoch %d", path.name, epoch)
    return epoch, float(arrays["seconds"]), [float(v) for v in arrays["losses"]]


def train(x_train: Images, y_train: NDArray[np.int64], n_classes: int, cfg: TrainConfig, *,
          x_eval: Images | None = None, y_eval: NDArray[np.int64] | None = None,
          ids: NDArray[np.int64] | None = None, checkpoint: Path | None = None,
          on_progress: ProgressFn | None = None, stop: threading.Event | None = None,
          device: str | None = None) -> tuple[nn.Module, TrainResult, dict[str, Any]]:
    """Train `cfg.arch` from scratch; returns the model, its result and its normaliser.

    `ids` are the rows' indices in the whole dataset (default 0..N-1): the augmentation of an
    image depends on (seed, epoch, id) only. With `checkpoint`, the state is saved atomically
    after every epoch and a run finds it and resumes after the last finished epoch; the caller
    deletes it once the result is stored. Raises Cancelled as soon as `stop` is set (checked
    every batch); the last checkpoint stays.
    """
    device = device or pick_device()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    x = to_tensor(x_train, device)
    y = torch.from_numpy(np.asarray(y_train, np.int64)).to(device)
    n, c, h, w = x.shape
    ids_t = torch.from_numpy(np.asarray(ids if ids is not None else np.arange(n), np.int64))
    n_ids = int(ids_t.max()) + 1 if n else 0
    mean, std = _normaliser(x)
    model = build_model(cfg.arch, c, n_classes, min(h, w)).to(device).to(memory_format=torch.channels_last)
    flip = cfg.augment == "auto" and c == 3
    pad = 0 if cfg.augment == "none" else (4 if min(h, w) >= 24 else 1)
    steps_per_epoch = max(1, -(-n // cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on norms and biases
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    warm = max(1, int(cfg.warmup * total))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    first, before, losses = _load_checkpoint(checkpoint, model, opt) if checkpoint is not None else (0, 0.0, [])
    for _ in range(first):  # the batch order of finished epochs, so later epochs draw the same ones
        torch.randperm(n, generator=gen)
    report(on_progress, "train", first * steps_per_epoch, total,
           f"epoch {first + 1}/{cfg.epochs}" + (f" · resumed after epoch {first}" if first else " · starting"))
    for epoch in range(first, cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        flips, sys_, sxs = _epoch_augmentation(cfg.seed, epoch, n_ids, pad)
        running = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for k, lo in enumerate(range(0, n, cfg.batch_size)):
            if stop is not None and stop.is_set():
                raise Cancelled("training cancelled")
            step = epoch * steps_per_epoch + k
            for g in opt.param_groups:
                g["lr"] = cfg.lr * _lr_factor(step, total, warm)
            idx = perm[lo : lo + cfg.batch_size]
            rows = ids_t[idx.cpu()]
            xb = _augment(x[idx], flips[rows].to(device) if flip else None, sys_[rows].to(device),
                          sxs[rows].to(device), pad)
            xb = ((xb.float() - mean) / std).contiguous(memory_format=torch.channels_last)  # faster on CPU too
            with mixed_precision(device):
                logits = model(xb)
                loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y[idx]).sum()
            if (step + 1) % 10 == 0 or k == steps_per_epoch - 1:
                done = step + 1 - first * steps_per_epoch
                left = (time.perf_counter() - t0) / max(1, done) * (total - step - 1)
                seen = min(n, lo + cfg.batch_size)
                report(on_progress, "train", step + 1, total,
                       f"epoch {epoch + 1}/{cfg.epochs} · train accuracy {float(correct) / seen:.1%} · "
                       f"{_duration(left)} left")
        losses.append(float(running.item()) / n)
        elapsed = before + time.perf_counter() - t0
        log.info("epoch %d/%d loss %.4f train accuracy %.4f (%.1f s)", epoch + 1, cfg.epochs, losses[-1],
                 float(correct) / n, elapsed)
        if checkpoint is not None and epoch + 1 < cfg.epochs:
            _save_checkpoint(checkpoint, model, opt, epoch + 1, elapsed, losses)
    accuracy, per_class = float("nan"), tuple[float, ...]()
    if x_eval is not None and y_eval is not None and len(x_eval):
        accuracy, per_class = evaluate(model, to_tensor(x_eval, device),
                                       torch.from_numpy(np.asarray(y_eval, np.int64)).to(device), mean, std, n_classes)
    result = TrainResult(accuracy, before + time.perf_counter() - t0, cfg.epochs, n, describe(), tuple(losses),
                         per_class)
    return model, result, {"mean": mean.cpu().numpy(), "std": std.cpu().numpy()}


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def recipe_key(cfg: TrainConfig, size: int) -> dict[str, Any]:
    """What a cached network or result depends on: the recipe and the network's version."""
    arch = resolve_arch(cfg.arch, size)
    return {"recipe": asdict(cfg), "arch": arch, "version": VERSIONS[arch], "training": TRAINING_VERSION}


def state_to_arrays(model: nn.Module) -> dict[str, NDArray[Any]]:
    """A state dict as plain arrays for the npz cache (no pickle is ever written or read)."""
    return {f"state/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def arrays_to_state(model: nn.Module, arrays: dict[str, NDArray[Any]]) -> nn.Module:
    state = {k.removeprefix("state/"): torch.from_numpy(np.array(v))
             for k, v in arrays.items() if k.startswith("state/")}
    model.load_state_dict(state)
    return model
