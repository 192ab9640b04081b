"""Training resumes from its last epoch after an interruption, and arms with one seed share their augmentation."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.training import TrainConfig, _epoch_augmentation, train
from core.types import Cancelled, Progress

RECIPE = TrainConfig(arch="cnn", epochs=3, batch_size=64, lr=0.05, seed=7)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (rng.integers(0, 60, (300, 12, 12, 3)) + y[:, None, None, None] * 60).astype(np.uint8)
    return x, y


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def test_a_run_stopped_after_an_epoch_resumes_there_and_ends_with_the_same_weights(data, tmp_path: Path) -> None:
    x, y = data
    clean, clean_result, _ = train(x, y, 3, RECIPE, device="cpu")
    checkpoint = tmp_path / "net.ckpt.npz"
    stop = threading.Event()
    epochs_started: list[str] = []

    def stop_in_second_epoch(p: Progress) -> None:
        epochs_started.append(p.message.split(" · ")[0])
        if p.message.startswith("epoch 2/"):
            stop.set()

    with pytest.raises(Cancelled):
        train(x, y, 3, RECIPE, checkpoint=checkpoint, on_progress=stop_in_second_epoch, stop=stop, device="cpu")
    assert checkpoint.exists(), "the finished first epoch must be on disk"
    seen: list[str] = []
    resumed, result, _ = train(x, y, 3, RECIPE, checkpoint=checkpoint, device="cpu",
                               on_progress=lambda p: seen.append(p.message.split(" · ")[0]))
    assert seen and not any(m.startswith("epoch 1/") for m in seen), "the resumed run must not repeat epoch 1"
    a, b = _weights(clean), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert result.losses[0] == pytest.approx(clean_result.losses[0]) and len(result.losses) == 3


def test_a_damaged_checkpoint_restarts_from_epoch_one(data, tmp_path: Path) -> None:
    x, y = data
    checkpoint = tmp_path / "net.ckpt.npz"
    checkpoint.write_bytes(b"not a checkpoint")
    seen: list[str] = []
    train(x, y, 3, RECIPE, checkpoint=checkpoint, device="cpu", on_progress=lambda p: seen.append(p.message))
    assert seen[0].startswith("epoch 1/")
    assert not checkpoint.exists() or checkpoint.read_bytes() != b"not a checkpoint"


def test_an_image_is_augmented_alike_in_every_subset_that_holds_it() -> None:
    flip, sy, sx = _epoch_augmentation(seed=3, epoch=2, n_ids=1000, pad=4)
    again = _epoch_augmentation(seed=3, epoch=2, n_ids=1000, pad=4)
    other_seed = _epoch_augmentation(seed=4, epoch=2, n_ids=1000, pad=4)
    assert all(torch.equal(u, v) for u, v in zip((flip, sy, sx), again))
    assert not torch.equal(flip, other_seed[0])
    assert 0.4 < flip.float().mean() < 0.6 and int(sy.min()) == 0 and int(sy.max()) == 8
