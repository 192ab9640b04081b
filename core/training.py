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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

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


def to_tensor(images: Images, device: str) -> torch.Tensor:
    """(N, H, W, C) uint8 to an (N, C, H, W) uint8 tensor on `device` (normalised per batch)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))).to(device)


def _normaliser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.float().transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1).view(1, -1, 1, 1), flat.std(1).clamp_min(1.0).view(1, -1, 1, 1)


def _augment(x: torch.Tensor, flip: bool, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random translation by up to `pad` pixels (reflect padding)."""
    n, c, h, w = x.shape
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        sy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
        sx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
        rows = (sy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (sx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        idx = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        ch = torch.arange(c, device=x.device).view(1, c, 1, 1)
        x = xp[idx, ch, rows, cols]
    return x


@torch.inference_mode()
def predict_features(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     batch: int = 1024, head: bool = False) -> torch.Tensor:
    """Penultimate features (or logits with head=True) of every row of x, batched."""
    model.eval()
    device = x.device
    outs = []
    for lo in range(0, len(x), batch):
        xb = ((x[lo : lo + batch].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(xb) if head else model.features(xb)  # type: ignore[operator]
        else:
            out = model(xb) if head else model.features(xb)  # type: ignore[operator]
        outs.append(out.float())
    return torch.cat(outs) if outs else torch.zeros(0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """Top-1 accuracy on (x, y)."""
    if len(x) == 0:
        return float("nan")
    logits = predict_features(model, x, mean, std, head=True)
    return float((logits.argmax(1) == y).float().mean().item())


def train(x_train: Images, y_train: NDArray[np.int64], n_classes: int, cfg: TrainConfig, *,
          x_eval: Images | None = None, y_eval: NDArray[np.int64] | None = None,
          on_progress: ProgressFn | None = None, stop: threading.Event | None = None,
          device: str | None = None) -> tuple[nn.Module, TrainResult, dict[str, Any]]:
    """Train `cfg.arch` from scratch; returns the model, its result and its normaliser.

    Raises Cancelled as soon as `stop` is set (checked every batch).
    """
    device = device or pick_device()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    x = to_tensor(x_train, device)
    y = torch.from_numpy(np.asarray(y_train, np.int64)).to(device)
    n, c, h, w = x.shape
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
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    losses: list[float] = []
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        running = torch.zeros((), device=device)
        for lo in range(0, n, cfg.batch_size):
            if stop is not None and stop.is_set():
                raise Cancelled("training cancelled")
            idx = perm[lo : lo + cfg.batch_size]
            xb = _augment(x[idx], flip, pad, gen)
            xb = ((xb.float() - mean) / std).contiguous(memory_format=torch.channels_last)  # faster on CPU too
            if device == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = loss_fn(model(xb), y[idx])
            else:
                loss = loss_fn(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.detach() * len(idx)
            step += 1
            if step % 10 == 0 or step == total:
                report(on_progress, "train", step, total, f"epoch {epoch + 1}/{cfg.epochs}")
        losses.append(float(running.item()) / n)
        log.info("epoch %d/%d loss %.4f (%.1f s)", epoch + 1, cfg.epochs, losses[-1], time.perf_counter() - t0)
    accuracy = float("nan")
    if x_eval is not None and y_eval is not None and len(x_eval):
        accuracy = evaluate(model, to_tensor(x_eval, device), torch.from_numpy(np.asarray(y_eval, np.int64)).to(device),
                            mean, std)
    result = TrainResult(accuracy, time.perf_counter() - t0, cfg.epochs, n, describe(), tuple(losses))
    return model, result, {"mean": mean.cpu().numpy(), "std": std.cpu().numpy()}


def recipe_key(cfg: TrainConfig, size: int) -> dict[str, Any]:
    """What a cached network or result depends on: the recipe and the network's version."""
    arch = resolve_arch(cfg.arch, size)
    return {"recipe": asdict(cfg), "arch": arch, "version": VERSIONS[arch]}


def state_to_arrays(model: nn.Module) -> dict[str, NDArray[Any]]:
    """A state dict as plain arrays for the npz cache (no pickle is ever written or read)."""
    return {f"state/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def arrays_to_state(model: nn.Module, arrays: dict[str, NDArray[Any]]) -> nn.Module:
    state = {k.removeprefix("state/"): torch.from_numpy(np.array(v))
             for k, v in arrays.items() if k.startswith("state/")}
    model.load_state_dict(state)
    return model
