"""Train a classifier from scratch and measure test accuracy: airbench94's whole recipe on every device.

airbench94 (Jordan 2024, github KellerJordan/cifar10-airbench) reaches 94% on CIFAR-10 in a few GPU
seconds; everything in it but the speed tricks is device-independent, so the same recipe runs here
on CUDA or the CPU. Its pieces, each in `Recipe`:
- Nesterov SGD at batch 1024 with the loss summed, lr and weight decay per 1024 examples and
  decoupled from momentum and from each other; batch-norm biases at 64x the lr, their scale frozen;
- label smoothing 0.2; a triangular schedule 0.2 -> 1 (at 23% of the steps) -> 0.07;
- a frozen first conv of 2x2 patch-whitening filters whose bias trains for the first 3 epochs;
- dirac initialisation, GELU, a final max-pool, a bias-free head scaled by 1/9 (core.features.models.AirbenchNet);
- lookahead: every 5 steps the weights move to an exponential average of themselves, whose decay
  grows as the cube of progress; at the end the network is that average;
- alternating flips (an image is flipped on every other epoch), translation by 2 pixels, and
  test-time augmentation with flips and 1-pixel translations.
bf16 autocast on CUDA and on CPUs that run bf16 natively (AVX-512 BF16 or AMX, detected at run time;
about twice the convolution throughput there), float32 elsewhere.

The data side keeps the arms of a paired experiment comparable: the whole split lives on the device
as one uint8 tensor, a subset is an index array, and every image's flips and shifts are drawn from
(seed, epoch, image id) alone, so two runs with one seed show every image they share the same way.
A run's length is a number of optimizer steps: the caller passes the full set's steps to train a
subset as long as the full set (`Budget`), or nothing for the recipe's own epochs over the subset.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from core.data import cache
from core.data.device import describe, keep_freed_memory, pick_device
from core.data.types import Cancelled, Images, ProgressFn, report
from core.features.models import VERSIONS, AirbenchNet

log = logging.getLogger("redex.training")

PRECISIONS = ("auto", "bf16", "float32")
BUDGETS = ("steps", "epochs")


@dataclass(frozen=True)
class Recipe:
    """airbench94's recipe; lr and weight_decay are airbench's decoupled units (per 1024 examples)."""

    widths: tuple[int, int, int] = (64, 256, 256)
    epochs: float = 10.0  # passes over the full training set
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0  # batch-norm biases learn this much faster (no more decay)
    label_smoothing: float = 0.2
    whiten_bias_epochs: float = 3.0
    flip: bool = True  # alternating flips (off for digits, which a mirror changes)
    translate: int = 2  # pixels, reflect-padded
    tta: int = 2  # test-time augmentation: 0 none, 1 mirror, 2 mirror and 1-pixel translations
    precision: str = "auto"  # bf16 where the device runs it natively, float32 elsewhere
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        if self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.tta not in (0, 1, 2) or (self.tta and not self.flip):
            raise ValueError("tta must be 0, 1 or 2, and 0 when flips are off")

    def describe(self) -> str:
        w = "/".join(map(str, self.widths))
        return f"airbench94 recipe, widths {w}, {self.epochs:g} epochs, batch {self.batch_size}"


@dataclass(frozen=True)
class TrainResult:
    """Test accuracy and how it was reached."""

    accuracy: float
    seconds: float
    epochs: float  # passes over the training rows this run made (in full batches)
    n_train: int
    device: str
    losses: tuple[float, ...]  # mean training loss of each pass
    per_class: tuple[float, ...] = ()  # test accuracy of each class (by class index)
    steps: int = 0
    accuracy_plain: float = float("nan")  # without test-time augmentation


# --- precision ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX) and oneDNN can use it.

    Elsewhere bf16 is emulated and slower than float32. REDEX_BF16=0/1 overrides the detection.
    """
    forced = os.environ.get("REDEX_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    native = {"avx512_bf16", "amx_bf16"} & set(flags.split())
    return bool(native) and bool(torch.backends.mkldnn.is_available()) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: str) -> str:
    """'auto' to what runs here: bf16 on CUDA and on CPUs with native bf16, float32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if device == "cuda" or (device == "cpu" and cpu_has_native_bf16()) else "float32"


def autocast(device: str, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast when `precision` is bf16 (convolutions and matrix products in bf16, the rest float32)."""
    if precision == "bf16":
        return torch.autocast("cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16)
    return nullcontext()


def mixed_precision(device: str) -> AbstractContextManager[Any]:
    """The former recipes' precision: bf16 on CUDA, float32 on the CPU (their cached results assume it)."""
    return autocast(device, "bf16" if device == "cuda" else "float32")


# --- data ---------------------------------------------------------------------------------------


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


def alternating_flips(seed: int, epoch: int, n_ids: int) -> torch.Tensor:
    """airbench's alternating flip: a random half of the images flipped in epoch 0, then every image
    flipped on alternate epochs, so each one is seen both ways within any two epochs."""
    base = _epoch_augmentation(seed, 0, n_ids, 0)[0]
    return base ^ bool(epoch % 2)


# --- evaluation ---------------------------------------------------------------------------------


@torch.inference_mode()
def predict_features(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     batch: int = 1024, head: bool = False, precision: str | None = None) -> torch.Tensor:
    """Penultimate features (or logits with head=True) of every row of x, batched.

    `precision` None keeps the former recipes' rule (float32 on the CPU) for networks cached by them.
    """
    model.eval()
    device = x.device.type
    ctx = mixed_precision(device) if precision is None else autocast(device, precision)
    outs = []
    for lo in range(0, len(x), batch):
        xb = ((x[lo : lo + batch].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with ctx:
            out = model(xb) if head else model.features(xb)  # type: ignore[operator]
        outs.append(out.float())
    return torch.cat(outs) if outs else torch.zeros(0)


@torch.inference_mode()
def predict_tta(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, level: int,
                precision: str, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with airbench's test-time augmentation, and the plain logits (no augmentation) of the same pass.

    Level 1 averages an image and its mirror; level 2 also averages the mirror pairs shifted one pixel
    up-left and down-right (reflect padding), weighted half and half against the unshifted pair.
    """
    model.eval()
    device = x.device.type
    outs, plains = [], []
    for lo in range(0, len(x), batch):
        xb = ((x[lo : lo + batch].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            plain = model(xb).float()
            out = plain
            if level >= 1:
                out = 0.5 * plain + 0.5 * model(xb.flip(-1)).float()
            if level >= 2:
                h, w = xb.shape[-2:]
                padded = F.pad(xb, (1, 1, 1, 1), mode="reflect")
                shifted = 0.0
                for view in (padded[:, :, :h, :w], padded[:, :, 2:, 2:]):
                    view = view.contiguous(memory_format=torch.channels_last)
                    shifted = shifted + 0.25 * (model(view).float() + model(view.flip(-1)).float())
                out = 0.5 * out + 0.5 * shifted
        outs.append(out)
        plains.append(plain)
    return torch.cat(outs), torch.cat(plains)


def _accuracy(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[float, tuple[float, ...]]:
    hit = (logits.argmax(1) == y).float().cpu().numpy()
    labels = y.cpu().numpy()
    counts = np.bincount(labels, minlength=n_classes)
    per = np.bincount(labels, weights=hit, minlength=n_classes) / np.maximum(counts, 1)
    per[counts == 0] = np.nan
    return float(hit.mean()), tuple(float(v) for v in per)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             n_classes: int = 0, *, precision: str | None = None) -> tuple[float, tuple[float, ...]]:
    """Top-1 accuracy on (x, y), and per class (NaN for a class without test images)."""
    if len(x) == 0:
        return float("nan"), ()
    return _accuracy(predict_features(model, x, mean, std, head=True, precision=precision), y, n_classes)


# --- the run length -----------------------------------------------------------------------------


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per pass (the last partial batch is dropped, as airbench does); at least 1."""
    return max(1, n // min(batch_size, max(1, n)))


def total_steps(recipe: Recipe, n_full: int, n_subset: int | None = None, budget: str = "steps") -> int:
    """Optimizer steps for a run on `n_subset` rows of a training set of `n_full`.

    budget "steps": the full set's number (a subset kept at 0.5 makes twice the passes), so every arm
    gets the same optimisation and differs only in data; "epochs": the recipe's epochs over the subset
    (fewer steps: what pruning saves in compute).
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: must be one of {', '.join(BUDGETS)}")
    n = n_full if budget == "steps" or n_subset is None else n_subset
    return max(1, math.ceil(steps_per_epoch(n, recipe.batch_size) * recipe.epochs))


# --- training -----------------------------------------------------------------------------------

TRAINING_VERSION = 3  # 3: airbench94's recipe (Recipe); the one-cycle recipe's results keep version 2


class Lookahead:
    """airbench's lookahead: an average of the weights (and batch-norm statistics) that the network is
    pulled back to every few steps."""

    def __init__(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for avg, live in zip(self.state.values(), model.state_dict().values()):
            if live.dtype.is_floating_point:
                avg.lerp_(live, 1 - decay)
                live.copy_(avg)


def _optimizer(model: AirbenchNet, recipe: Recipe) -> torch.optim.SGD:
    """airbench's decoupled lr and weight decay turned into torch's SGD arguments (loss summed over the batch)."""
    kilostep = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / kilostep
    wd = recipe.weight_decay * recipe.batch_size / kilostep
    lr_bias = lr * recipe.bias_scaler
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad or k == "whiten.bias"]
    norm_biases = [p for k, p in named if "norm" in k]
    others = [p for k, p in named if "norm" not in k]
    groups = [{"params": norm_biases, "lr": lr_bias, "weight_decay": wd / lr_bias, "base": lr_bias},
              {"params": others, "lr": lr, "weight_decay": wd / lr, "base": lr}]
    return torch.optim.SGD(groups, momentum=recipe.momentum, nesterov=True)


def lr_factor(step: int, total: int) -> float:
    """airbench's triangle: 0.2 -> 1.0 over the first 23% of the steps, then down to 0.07."""
    warm = int(total * 0.23)
    if step < warm:
        return 0.2 + 0.8 * step / warm
    return 1.0 - 0.93 * (step - warm) / max(1, total - warm)


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, extra: dict[str, NDArray[Any]],
                     lookahead: Lookahead | None = None) -> None:
    """Weights, momentum buffers, the lookahead average and progress, written atomically."""
    momenta = {f"momentum/{i}": opt.state[p]["momentum_buffer"].detach().cpu().numpy()
               for i, p in enumerate(p for g in opt.param_groups for p in g["params"]) if p in opt.state}
    avg = {f"lookahead/{k}": v.cpu().numpy() for k, v in lookahead.state.items()} if lookahead else {}
    cache.write_npz(path, {**state_to_arrays(model), **momenta, **avg, **extra})


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     lookahead: Lookahead | None = None) -> dict[str, NDArray[Any]] | None:
    """Restore a checkpoint into model, opt and lookahead; None when there is none or it is unreadable."""
    if not path.exists():
        return None
    try:
        arrays = cache.read_npz(path)
        arrays_to_state(model, arrays)
        for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
            buf = arrays.get(f"momentum/{i}")
            if buf is not None:
                opt.state[p]["momentum_buffer"] = torch.from_numpy(np.array(buf)).to(p.device)
        if lookahead is not None:
            for k, v in lookahead.state.items():
                v.copy_(torch.from_numpy(np.array(arrays[f"lookahead/{k}"])))
        int(arrays["epoch"])
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:  # a damaged checkpoint restarts training
        log.warning("checkpoint %s is unreadable (%s); training from the start", path.name, exc)
        path.unlink(missing_ok=True)
        return None
    log.info("resuming from %s after pass %d", path.name, int(arrays["epoch"]))
    return arrays


def train(x_train: Images, y_train: NDArray[np.int64], n_classes: int, recipe: Recipe, *,
          steps: int | None = None, x_eval: Images | None = None, y_eval: NDArray[np.int64] | None = None,
          ids: NDArray[np.int64] | None = None, checkpoint: Path | None = None,
          on_progress: ProgressFn | None = None, stop: threading.Event | None = None,
          device: str | None = None) -> tuple[AirbenchNet, TrainResult, dict[str, Any]]:
    """Train airbench's network from scratch by `recipe`; returns the model, its result and its normaliser.

    `steps`: optimizer steps (default: the recipe's epochs over these rows; see `total_steps`). `ids`:
    the rows' indices in the whole dataset (default 0..N-1); an image's flips and shifts depend on
    (seed, pass, id) only. With `checkpoint`, the state is saved atomically after every pass and a run
    resumes after the last finished one; the caller deletes it once the result is stored. Raises
    Cancelled as soon as `stop` is set (checked every step); the last checkpoint stays.
    """
    device = device or pick_device()
    if device == "cpu":
        keep_freed_memory()
    precision = resolve_precision(recipe.precision, device)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    t0 = time.perf_counter()
    x = to_tensor(x_train, device)
    y = torch.from_numpy(np.asarray(y_train, np.int64)).to(device)
    n, c, h, w = x.shape
    ids_t = torch.from_numpy(np.asarray(ids if ids is not None else np.arange(n), np.int64))
    n_ids = int(ids_t.max()) + 1 if n else 0
    mean, std = _normaliser(x)
    model = AirbenchNet(c, n_classes, min(h, w), recipe.widths)
    # the whitening filters come from the first 5,000 rows (in dataset order, so subsets that share them agree)
    model.init_whitening((x[:5000].float() - mean) / std)
    model = model.to(device).to(memory_format=torch.channels_last)
    batch = min(recipe.batch_size, n)
    per_pass = steps_per_epoch(n, batch)
    total = steps or total_steps(recipe, n)
    bias_steps = round(total * recipe.whiten_bias_epochs / recipe.epochs)
    opt = _optimizer(model, recipe)
    lookahead = Lookahead(model)
    whiten_bias = model.whiten.bias
    assert whiten_bias is not None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")
    passes = math.ceil(total / per_pass)
    state = _load_checkpoint(checkpoint, model, opt, lookahead) if checkpoint is not None else None
    first = int(state["epoch"]) if state is not None else 0
    before = float(state["seconds"]) if state is not None else 0.0
    losses = [float(v) for v in state["losses"]] if state is not None else []
    for _ in range(first):  # the batch order of finished passes, so later passes draw the same ones
        torch.randperm(n, generator=gen)
    report(on_progress, "train", first * per_pass, total,
           f"pass {first + 1}/{passes}" + (f" · resumed after pass {first}" if first else " · starting"))
    pad = recipe.translate
    for epoch in range(first, passes):
        model.train()
        perm = torch.randperm(n, generator=gen)[: per_pass * batch].to(device)
        flips = alternating_flips(recipe.seed, epoch, n_ids) if recipe.flip else None
        _, sys_, sxs = _epoch_augmentation(recipe.seed, epoch, n_ids, pad)
        running = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for k in range(per_pass):
            step = epoch * per_pass + k
            if step >= total:
                break
            if stop is not None and stop.is_set():
                raise Cancelled("training cancelled")
            whiten_bias.requires_grad_(step < bias_steps)
            factor = lr_factor(step, total)
            for g in opt.param_groups:
                g["lr"] = g["base"] * factor
            idx = perm[k * batch : (k + 1) * batch]
            rows = ids_t[idx.cpu()]
            xb = _augment(x[idx], flips[rows].to(device) if flips is not None else None, sys_[rows].to(device),
                          sxs[rows].to(device), pad)
            xb = ((xb.float() - mean) / std).contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                logits = model(xb)
                loss = loss_fn(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 5 == 0:
                lookahead.update(model, 0.95**5 * ((step + 1) / total) ** 3)
            running += loss.detach()
            correct += (logits.detach().argmax(1) == y[idx]).sum()
            seen += len(idx)
            if (step + 1) % 5 == 0 or k == per_pass - 1:
                report(on_progress, "train", step + 1, total,
                       f"pass {epoch + 1}/{passes} · train accuracy {float(correct) / max(1, seen):.1%}")
        losses.append(float(running.item()) / max(1, seen))
        elapsed = before + time.perf_counter() - t0
        log.info("pass %d/%d loss %.4f train accuracy %.4f (%.1f s)", epoch + 1, passes, losses[-1],
                 float(correct) / max(1, seen), elapsed)
        if checkpoint is not None and epoch + 1 < passes:
            _save_checkpoint(checkpoint, model, opt, {"epoch": np.array(epoch + 1), "seconds": np.array(elapsed),
                                                      "losses": np.array(losses, np.float64)}, lookahead)
    lookahead.update(model, 1.0)  # the network becomes the average
    accuracy, plain, per_class = float("nan"), float("nan"), tuple[float, ...]()
    if x_eval is not None and y_eval is not None and len(x_eval):
        xe = to_tensor(x_eval, device)
        ye = torch.from_numpy(np.asarray(y_eval, np.int64)).to(device)
        logits, plain_logits = predict_tta(model, xe, mean, std, recipe.tta, precision)
        accuracy, per_class = _accuracy(logits, ye, n_classes)
        plain = _accuracy(plain_logits, ye, n_classes)[0]
    result = TrainResult(accuracy, before + time.perf_counter() - t0, total / per_pass, n,
                         f"{describe()} · {precision}", tuple(losses), per_class, total, plain)
    return model, result, {"mean": mean.cpu().numpy(), "std": std.cpu().numpy(), "precision": precision}


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def recipe_key(recipe: Recipe, device: str | None = None) -> dict[str, Any]:
    """What a cached network or result depends on: the recipe, the precision it resolves to here, and the
    network's and the training code's versions."""
    precision = resolve_precision(recipe.precision, device or pick_device())
    return {"recipe": asdict(replace(recipe, precision=precision)), "arch": "airbench",
            "version": VERSIONS["airbench"], "training": TRAINING_VERSION}


def state_to_arrays(model: nn.Module) -> dict[str, NDArray[Any]]:
    """A state dict as plain arrays for the npz cache (no pickle is ever written or read)."""
    return {f"state/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def arrays_to_state(model: nn.Module, arrays: dict[str, NDArray[Any]]) -> nn.Module:
    state = {k.removeprefix("state/"): torch.from_numpy(np.array(v))
             for k, v in arrays.items() if k.startswith("state/")}
    model.load_state_dict(state)
    return model
