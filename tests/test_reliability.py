"""Interrupted and concurrent work: SIGKILL mid-computation leaves nothing that reads as finished,
the rerun gets the uninterrupted result, and two processes racing for one entry agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, page

# Each case prints STARTED when its long computation begins, and RESULT <digest> at the end.
CASES = {
    "decode": """
from core.data.synthetic import write_planted_folder
from core.data.datasets import load_image_folder
root = Path(sys.argv[1])
if not (root / "train").exists():
    write_planted_folder(root, n_classes=10, per_class=250, seed=1)
print("STARTED", flush=True)
ds = load_image_folder(root, workers=1)
print("RESULT", ds.fingerprint)
""",
    "embed": """
from core.data.datasets import load_digits
from core.features.embedding import EmbedConfig, embed
ds = load_digits()
print("STARTED", flush=True)
e = embed(ds, EmbedConfig(epochs=25))
print("RESULT", hashlib.sha256(np.round(e.vectors, 4).tobytes()).hexdigest())
""",
    "cluster": """
from core.data import cache
from core.selections.semantic import build_dendrograms
rng = np.random.default_rng(0)
x = rng.normal(size=(7000, 16)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
labels = np.zeros(7000, np.int64)
print("STARTED", flush=True)
out = cache.cached_arrays("cluster-test", lambda: {"Z": build_dendrograms(x, labels, labels == 0).pieces[0].Z})
print("RESULT", hashlib.sha256(out["Z"].tobytes()).hexdigest())
""",
    "train": """
import dataclasses
from core.data.datasets import load_digits
from core.pipelines.experiments import Arm, ExperimentConfig, Subsets, default_recipe, run_arm
ds = load_digits()
recipe = dataclasses.replace(default_recipe(ds, "cpu"), epochs=60)
sel = Subsets(ds, ExperimentConfig(recipe=recipe)).get(Arm("full", 1.0, 0))
print("STARTED", flush=True)
r = run_arm(ds, Arm("full", 1.0, 0), sel, recipe)
print("RESULT", round(r.accuracy, 6))
""",
}
PRELUDE = "import hashlib, sys\nfrom pathlib import Path\nimport numpy as np\n"


def _start(case: str, cache: Path, arg: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "REDEX_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", PRELUDE + CASES[case], str(arg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return [line for line in out.splitlines() if line.startswith("RESULT")][0]


def _entries(cache: Path) -> list[str]:
    """Finished entries: everything except locks, temporary files and training checkpoints."""
    return sorted(p.name for p in cache.rglob("*") if p.parent == cache / "v1"
                  and not p.name.endswith((".lock", ".ckpt.npz")) and ".tmp-" not in p.name)


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_midway_then_rerun_gives_the_uninterrupted_result(case: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    reference = _result(_start(case, tmp_path / "ref-cache", data))
    cache = tmp_path / "cache"
    proc = _start(case, cache, data)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("STARTED")
    deadline = time.time() + 120
    while not list(cache.rglob("*.lock")) and time.time() < deadline:  # the computation has begun
        time.sleep(0.02)
    time.sleep(0.3)
    before = _entries(cache) if (cache / "v1").exists() else []
    assert proc.poll() is None, f"{case} finished before it could be interrupted: the test would prove nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = _entries(cache) if (cache / "v1").exists() else []
    assert after == before, f"a killed {case} left entries that read as finished: {set(after) - set(before)}"
    assert _result(_start(case, cache, data)) == reference


def test_sigkill_mid_training_resumes_from_the_last_epoch_checkpoint(tmp_path: Path) -> None:
    """The embedding network checkpoints every epoch: a killed run's rerun starts after the last
    finished epoch, not at epoch 1, and ends with the uninterrupted run's embedding."""
    data = tmp_path / "data"
    reference = _result(_start("embed", tmp_path / "ref-cache", data))
    cache = tmp_path / "cache"
    proc = _start("embed", cache, data)
    deadline = time.time() + 120
    while not list(cache.rglob("*.ckpt.npz")) and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "training finished before it could be interrupted: the test would prove nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in _entries(cache) if p.startswith("classifier-")], "a killed training stored no network"
    env = {**os.environ, "REDEX_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    script = PRELUDE + "import logging\nlogging.basicConfig(level=logging.INFO)\n" + CASES["embed"]
    rerun = subprocess.run([sys.executable, "-c", script, str(data)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = [line for line in rerun.stderr.splitlines() if "resuming from" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= 1, rerun.stderr[-2000:]
    assert [line for line in rerun.stdout.splitlines() if line.startswith("RESULT")][0] == reference
    assert not list(cache.rglob("*.ckpt.npz")), "the checkpoint is removed once the network is stored"


def test_two_processes_racing_for_one_entry_agree(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cache = tmp_path / "cache"
    procs = [_start("cluster", cache, data) for _ in range(2)]
    results = {_result(p) for p in procs}
    assert len(results) == 1
    assert [p.name for p in (cache / "v1").iterdir() if ".tmp-" in p.name] == []


def test_file_names_render_as_text_not_html(tmp_path: Path) -> None:
    """A class named like an HTML tag shows up as text in the page (dataframe cells, escaped hover)."""
    from PIL import Image

    from ui.common import text

    evil = "<img src=x onerror=alert(1)>"
    for k in range(3):
        (tmp_path / evil).mkdir(exist_ok=True)
        Image.new("RGB", (12, 12), (k * 60, 10, 10)).save(tmp_path / evil / f"{k}.png")
    (tmp_path / "plain").mkdir()
    Image.new("RGB", (12, 12), (0, 200, 0)).save(tmp_path / "plain" / "a.png")
    at = page("views/near_duplicates.py", timeout=300)
    at.session_state["dataset"] = f"imagefolder:{tmp_path}"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert all(evil not in m.value for m in at.markdown)  # never passed to markdown
    assert text(evil) == "&lt;img src=x onerror=alert(1)&gt;"
