"""What every benchmark section shares: the data, the section registry, timing and the row format."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg"
SPEC = f"imagefolder:{CIFAR}" if (CIFAR / "train").is_dir() else "digits"
SECTIONS: dict[str, Callable[[], list[dict[str, Any]]]] = {}


def section(fn: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[dict[str, Any]]]:
    SECTIONS[fn.__name__] = fn
    return fn

def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out

def row(figure: str, baseline: str, base_s: float | None, ours_s: float, unit: str = "s", notes: str = "",
        command: str = "") -> dict[str, Any]:
    return {"figure": figure, "baseline": baseline, "baseline_s": base_s, "ours_s": ours_s, "unit": unit,
            "ratio": (base_s / ours_s) if base_s and ours_s else None, "notes": notes, "command": command}

def dataset():  # type: ignore[no-untyped-def]
    from core.data.datasets import load_dataset

    return load_dataset(SPEC)


def wait_healthy(url: str, tries: int = 240) -> None:
    """Wait until a Streamlit server at url answers its health check (about 2 minutes at most)."""
    import urllib.request

    for _ in range(tries):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)


def launch_chromium(pw: Any) -> Any:
    """Debian's chromium, headless, through Playwright (no background requests)."""
    import shutil

    return pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])


def stop_server(proc: subprocess.Popen[Any]) -> None:
    """Stop a `streamlit run` started with start_new_session=True, with every process it started (its job
    workers too): SIGTERM to the group, SIGKILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
