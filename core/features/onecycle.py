"""The former one-cycle recipe (`TrainConfig`), kept so that results and networks cached by it still read.

A triangular one-cycle (linear warm-up, linear decay) with Nesterov SGD and label smoothing over the
legacy networks (airnet, airnet-small, resnet20, cnn); float32 on the CPU, bf16 autocast on CUDA.
New runs use airbench94's recipe (core.features.training); these are selected by their preset names
(core.features.recipes) and keyed exactly as before, so the earlier sweeps' cache entries are found.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from core.data import cache
from core.data.device import describe, pick_device
from core.data.types import Cancelled, Images, ProgressFn, report
from core.features.models import VERSIONS, build_model, resolve_arch
from core.features.training import (
    TrainResult,
    _augment,
    _duration,
    _epoch_augmentation,
    _normaliser,
    arrays_to_state,
    evaluate,
    mixed_precision,
    state_to_arrays,
    to_tensor,
)

log = logging.getLogger("redex.onecycle")


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


def train_one_cycle(x_train: Images, y_train: NDArray[np.int64], n_classes: int, cfg: TrainConfig, *,
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


def recipe_key(cfg: TrainConfig, size: int) -> dict[str, Any]:
    """What a cached network or result depends on: the recipe and the network's version."""
    arch = resolve_arch(cfg.arch, size)
    return {"recipe": asdict(cfg), "arch": arch, "version": VERSIONS[arch], "training": TRAINING_VERSION}
