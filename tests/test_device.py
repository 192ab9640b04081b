"""The CUDA branches as far as a CPU reaches them: device choice, the GPU preset, bf16 where it runs natively.

No GPU is lent to the machines this suite runs on: the CUDA path is the CPU path plus placement
(`.to(device)`) and autocast, and these tests cover the choices that differ by device.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from core.data import device
from core.features import recipes
from core.features.embedding import EmbedConfig, train_config
from core.features.onecycle import TrainConfig, train_one_cycle
from core.features.training import Recipe, autocast, mixed_precision, resolve_precision
from core.pipelines.experiments import default_recipe


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


def test_bf16_autocast_on_cuda_and_on_request_on_the_cpu_the_former_recipes_float32_on_the_cpu() -> None:
    ctx = autocast("cuda", resolve_precision("auto", "cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    cpu = autocast("cpu", "bf16")
    assert isinstance(cpu, torch.autocast) and cpu.device == "cpu" and cpu.fast_dtype == torch.bfloat16
    assert isinstance(autocast("cpu", "float32"), nullcontext)
    assert isinstance(mixed_precision("cpu"), nullcontext) and isinstance(mixed_precision("cuda"), torch.autocast)


def test_a_gpu_gets_airbench_at_its_own_widths_and_a_cpu_the_cpu_preset() -> None:
    gpu, cpu = (recipes.get(recipes.default_name(50_000, 32, 3, d)) for d in ("cuda", "cpu"))
    assert isinstance(gpu, Recipe) and gpu.widths == (64, 256, 256) and gpu == recipes.get("airbench-cuda")
    assert isinstance(cpu, Recipe) and cpu == recipes.get("airbench-cpu") and cpu.batch_size == gpu.batch_size


def test_small_sets_get_the_small_image_presets(digits) -> None:  # type: ignore[no-untyped-def]
    small = default_recipe(digits, "cuda")
    assert isinstance(small, Recipe) and small == recipes.get("airbench-small") and not small.flip
    assert recipes.default_name(60_000, 28, 1, "cpu") == "airbench-gray"
    assert train_config(digits, EmbedConfig()) == recipes.get("airbench-small")


def test_the_former_recipes_are_selectable_by_name_and_still_train(digits) -> None:  # type: ignore[no-untyped-def]
    assert recipes.get("onecycle-small") == TrainConfig(arch="cnn", epochs=8, batch_size=64, lr=0.05)
    with pytest.raises(ValueError, match="must be one of"):
        recipes.get("no-such-recipe")
    idx = np.flatnonzero(digits.split == 0)[:64]
    model, result, norm = train_one_cycle(np.asarray(digits.images[idx]), digits.labels[idx], 10,
                                          TrainConfig(arch="cnn", epochs=1, batch_size=32), device="cpu",
                                          x_eval=np.asarray(digits.images[idx]), y_eval=digits.labels[idx])
    assert next(model.parameters()).dtype == torch.float32 and result.device.startswith("cpu")
    assert 0 <= result.accuracy <= 1 and len(result.per_class) == 10 and norm["mean"].shape == (1, 1, 1, 1)
