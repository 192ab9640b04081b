"""The CUDA branches as far as a CPU reaches them: device choice, the GPU recipes, bf16 only on CUDA."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from core import device
from core.embedding import EmbedConfig, default_epochs, train_config
from core.experiments import budget_recipe
from core.training import TrainConfig, mixed_precision, train


@pytest.fixture
def fresh_choice():  # type: ignore[no-untyped-def]
    device.pick_device.cache_clear()
    yield
    device.pick_device.cache_clear()


@pytest.mark.parametrize("gpu, forced, expected", [(True, "", "cuda"), (False, "", "cpu"), (True, "cpu", "cpu")],
                         ids=["a GPU is used", "no GPU: the CPU", "REDEX_DEVICE wins"])
def test_the_device_is_chosen_once_cuda_when_present(monkeypatch, fresh_choice, gpu: bool, forced: str,
                                                     expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setenv("REDEX_DEVICE", forced)
    assert device.pick_device() == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: not gpu)
    assert device.pick_device() == expected, "chosen once per process"


def test_bf16_autocast_only_on_cuda() -> None:
    ctx = mixed_precision("cuda")
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    assert isinstance(mixed_precision("cpu"), nullcontext)


def test_a_gpu_gets_the_fuller_recipes(digits) -> None:  # type: ignore[no-untyped-def]
    gpu = budget_recipe(digits, "cuda")
    assert gpu.epochs > budget_recipe(digits, "cpu").epochs and gpu.batch_size == 512
    assert default_epochs(50_000, "cuda") == 30 > default_epochs(50_000, "cpu") == 12


def test_the_training_path_runs_at_tiny_scale_in_float32_on_the_cpu(digits) -> None:  # type: ignore[no-untyped-def]
    idx = np.flatnonzero(digits.split == 0)[:64]
    model, result, norm = train(np.asarray(digits.images[idx]), digits.labels[idx], 10,
                                TrainConfig(arch="cnn", epochs=1, batch_size=32), device="cpu",
                                x_eval=np.asarray(digits.images[idx]), y_eval=digits.labels[idx])
    assert next(model.parameters()).dtype == torch.float32 and result.device.startswith("cpu")
    assert 0 <= result.accuracy <= 1 and len(result.per_class) == 10 and norm["mean"].shape == (1, 1, 1, 1)
    assert train_config(digits, EmbedConfig()).batch_size == 128
