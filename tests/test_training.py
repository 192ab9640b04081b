"""airbench94's recipe piece by piece on tiny data, resuming after an interruption, and the former recipe kept."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.types import Cancelled, Progress
from core.features.models import AirbenchNet
from core.features.onecycle import TrainConfig, train_one_cycle
from core.features.training import (
    Lookahead,
    Recipe,
    _epoch_augmentation,
    alternating_flips,
    lr_factor,
    predict_tta,
    resolve_precision,
    total_steps,
    train,
)

ONE_CYCLE = TrainConfig(arch="cnn", epochs=3, batch_size=64, lr=0.05, seed=7)
TINY = Recipe(widths=(8, 16, 16), epochs=3, batch_size=64, seed=7, precision="float32")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (rng.integers(0, 60, (300, 12, 12, 3)) + y[:, None, None, None] * 60).astype(np.uint8)
    return x, y


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)


# --- the pieces ---------------------------------------------------------------------------------


def test_the_whitening_filters_make_the_patches_uncorrelated_with_unit_variance() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(64, 3, 16, 16))
    x = torch.from_numpy(base + 0.8 * np.roll(base, 1, axis=1)).float()  # correlated channels
    net = AirbenchNet(3, 10, 16, (8, 8, 8))
    net.init_whitening(x, eps=0.0)
    w = net.whiten.weight.detach()
    half = w[: w.shape[0] // 2]
    assert torch.allclose(w[w.shape[0] // 2 :], -half), "each filter comes with its negation"
    out = torch.nn.functional.conv2d(x, half)  # (N, 12, 15, 15): one output per patch direction
    flat = out.permute(1, 0, 2, 3).reshape(half.shape[0], -1).double()
    cov = flat @ flat.T / flat.shape[1]
    np.testing.assert_allclose(cov.numpy(), np.eye(half.shape[0]), atol=1e-3)


def test_the_lookahead_moves_the_average_toward_the_weights_and_the_weights_onto_the_average() -> None:
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    la = Lookahead(net)
    with torch.no_grad():
        net.weight.fill_(3.0)
    la.update(net, decay=0.75)  # average = 0.75 * 1 + 0.25 * 3
    assert torch.allclose(net.weight, torch.full((1, 2), 1.5)) and torch.allclose(la.state["weight"], net.weight)
    with torch.no_grad():
        net.weight.fill_(9.0)
    la.update(net, decay=1.0)  # the end of training: the network becomes the average, whatever it was
    assert torch.allclose(net.weight, torch.full((1, 2), 1.5))


def test_alternating_flips_show_every_image_both_ways_within_two_epochs() -> None:
    e0, e1, e2 = (alternating_flips(seed=5, epoch=e, n_ids=2000) for e in range(3))
    assert 0.45 < e0.float().mean() < 0.55
    assert bool((e0 ^ e1).all()) and torch.equal(e0, e2)
    assert not torch.equal(e0, alternating_flips(seed=6, epoch=0, n_ids=2000))


def test_an_image_is_augmented_alike_in_every_subset_that_holds_it() -> None:
    flip, sy, sx = _epoch_augmentation(seed=3, epoch=2, n_ids=1000, pad=4)
    again = _epoch_augmentation(seed=3, epoch=2, n_ids=1000, pad=4)
    other_seed = _epoch_augmentation(seed=4, epoch=2, n_ids=1000, pad=4)
    assert all(torch.equal(u, v) for u, v in zip((flip, sy, sx), again))
    assert not torch.equal(flip, other_seed[0])
    assert 0.4 < flip.float().mean() < 0.6 and int(sy.min()) == 0 and int(sy.max()) == 8


def test_the_schedule_is_airbench_triangle() -> None:
    assert lr_factor(0, 1000) == pytest.approx(0.2)
    assert lr_factor(230, 1000) == pytest.approx(1.0)
    assert lr_factor(1000, 1000) == pytest.approx(0.07)
    assert lr_factor(115, 1000) == pytest.approx(0.6)


def test_test_time_augmentation_weights_the_views_as_airbench_does() -> None:
    torch.manual_seed(0)
    net = AirbenchNet(3, 4, 8, (4, 4, 4)).eval()
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    mean, std = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 255.0)
    xn = x.float() / 255
    with torch.no_grad():
        mirror = lambda v: 0.5 * net(v) + 0.5 * net(v.flip(-1))  # noqa: E731
        padded = torch.nn.functional.pad(xn, (1, 1, 1, 1), mode="reflect")
        expect = 0.5 * mirror(xn) + 0.25 * (mirror(padded[:, :, :8, :8]) + mirror(padded[:, :, 2:, 2:]))
    tta, plain = predict_tta(net, x, mean, std, 2, "float32")
    torch.testing.assert_close(tta, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, net(xn).detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(predict_tta(net, x, mean, std, 1, "float32")[0], mirror(xn).detach(), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("budget, kept, expected", [("steps", 25_000, 480), ("epochs", 25_000, 240),
                                                    ("steps", 50_000, 480), ("epochs", 50_000, 480)],
                         ids=["equal steps: half the data, the full set's steps",
                              "equal epochs: half the data, half the steps",
                              "the full set under steps", "the full set under epochs"])
def test_the_budget_sets_the_number_of_optimizer_steps(budget: str, kept: int, expected: int) -> None:
    assert total_steps(Recipe(epochs=10), 50_000, kept, budget) == expected  # 48 full batches of 1024 per pass


def test_a_run_makes_exactly_the_steps_it_is_given(data) -> None:
    x, y = data
    _, short, _ = train(x[:128], y[:128], 3, TINY, steps=10, device="cpu")
    assert short.steps == 10 and short.epochs == pytest.approx(5)
    assert len(short.losses) == 5, "128 rows at batch 64: 2 steps a pass, so 10 steps are 5 passes"


def test_precision_auto_is_bf16_on_cuda_and_where_the_cpu_runs_it_natively(monkeypatch) -> None:
    from core.features import training

    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("float32", "cuda") == "float32"
    for flag, expected in (("1", "bf16"), ("0", "float32")):
        monkeypatch.setenv("REDEX_BF16", flag)
        training.cpu_has_native_bf16.cache_clear()
        assert resolve_precision("auto", "cpu") == expected
    training.cpu_has_native_bf16.cache_clear()


def test_the_recipe_learns_a_separable_problem_in_bf16_and_float32(data) -> None:
    x, y = data
    for precision in ("bf16", "float32"):
        _, result, norm = train(x[:240], y[:240], 3, replace(TINY, precision=precision, epochs=15), device="cpu",
                                x_eval=x[240:], y_eval=y[240:])
        assert result.accuracy > 0.9 and norm["precision"] == precision, precision
        assert result.device.endswith(precision) and len(result.per_class) == 3


# --- interruption ----------------------------------------------------------------------------------


def test_a_run_stopped_after_a_pass_resumes_there_and_ends_with_the_same_weights(data, tmp_path: Path) -> None:
    x, y = data
    clean, clean_result, _ = train(x, y, 3, TINY, device="cpu")
    checkpoint = tmp_path / "net.ckpt.npz"
    stop = threading.Event()

    def stop_in_second_pass(p: Progress) -> None:
        if p.message.startswith("pass 2/"):
            stop.set()

    with pytest.raises(Cancelled):
        train(x, y, 3, TINY, checkpoint=checkpoint, on_progress=stop_in_second_pass, stop=stop, device="cpu")
    assert checkpoint.exists(), "the finished first pass must be on disk"
    seen: list[str] = []
    resumed, result, _ = train(x, y, 3, TINY, checkpoint=checkpoint, device="cpu",
                               on_progress=lambda p: seen.append(p.message.split(" · ")[0]))
    assert seen and not any(m.startswith("pass 1/") for m in seen), "the resumed run must not repeat pass 1"
    _assert_same_weights(clean, resumed)
    assert result.losses[0] == pytest.approx(clean_result.losses[0]) and len(result.losses) == len(clean_result.losses)


def test_a_damaged_checkpoint_restarts_from_the_first_pass(data, tmp_path: Path) -> None:
    x, y = data
    checkpoint = tmp_path / "net.ckpt.npz"
    checkpoint.write_bytes(b"not a checkpoint")
    seen: list[str] = []
    train(x, y, 3, TINY, checkpoint=checkpoint, device="cpu", on_progress=lambda p: seen.append(p.message))
    assert seen[0].startswith("pass 1/")
    assert not checkpoint.exists() or checkpoint.read_bytes() != b"not a checkpoint"


# --- the former one-cycle recipe, kept for the results it cached ----------------------------------------


def test_a_one_cycle_run_stopped_after_an_epoch_resumes_there(data, tmp_path: Path) -> None:
    x, y = data
    clean, clean_result, _ = train_one_cycle(x, y, 3, ONE_CYCLE, device="cpu")
    checkpoint = tmp_path / "net.ckpt.npz"
    stop = threading.Event()

    def stop_in_second_epoch(p: Progress) -> None:
        if p.message.startswith("epoch 2/"):
            stop.set()

    with pytest.raises(Cancelled):
        train_one_cycle(x, y, 3, ONE_CYCLE, checkpoint=checkpoint, on_progress=stop_in_second_epoch, stop=stop,
                        device="cpu")
    seen: list[str] = []
    resumed, result, _ = train_one_cycle(x, y, 3, ONE_CYCLE, checkpoint=checkpoint, device="cpu",
                                         on_progress=lambda p: seen.append(p.message.split(" · ")[0]))
    assert seen and not any(m.startswith("epoch 1/") for m in seen)
    _assert_same_weights(clean, resumed)
    assert result.losses[0] == pytest.approx(clean_result.losses[0]) and len(result.losses) == 3


def test_the_former_recipes_keep_the_cache_keys_their_results_were_stored_under(digits) -> None:
    """Keys computed by the code before airbench's recipe: a one-cycle result or network cached then still reads."""
    from core.data.datasets import TRAIN
    from core.features import recipes
    from core.features.embedding import EmbedConfig, classifier_key, embed_key
    from core.pipelines.experiments import result_key

    kept = np.flatnonzero(digits.split == TRAIN)[:100]
    assert result_key(digits, kept, recipes.get("onecycle-small"), 3) == "train-246699b3304d1653a5133a14b8cc5bfb"
    assert classifier_key(digits, EmbedConfig(arch="onecycle")) == "classifier-34751e2912309f343c3b05247d604a41"
    assert embed_key(digits, EmbedConfig(arch="onecycle")) == "embed-201ee154f921feb0847ce51c2071acc5"
