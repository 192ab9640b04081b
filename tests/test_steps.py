"""Long steps run as background jobs: a page draws what it can at once, the job outlives the page, a cancel stops it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import page
from streamlit.testing.v1 import AppTest

from core.data.types import Progress, report
from core.pipelines.jobs import CANCELLED, DONE, JobRegistry


def _metric_labels(at: AppTest) -> list[str]:
    return [m.label for m in at.metric]


def test_home_draws_hashes_leakage_and_classes_while_the_embedding_trains(monkeypatch, tmp_path: Path) -> None:
    import ui.data
    from ui.memo import memo
    from ui.steps import step_registry

    monkeypatch.setenv("REDEX_CACHE_DIR", str(tmp_path))  # nothing cached
    monkeypatch.setenv("REDEX_STEP_WAIT", "30")  # the dataset and the hashes finish within the wait
    memo.clear()
    release, real_embed = threading.Event(), ui.data.embed

    def held_embed(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(120)  # the training "takes" as long as the test wants
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(ui.data, "embed", held_embed)
    monkeypatch.setattr("ui.steps.wait_seconds", lambda: 0.0 if not release.is_set() else 30.0)
    for _ in range(3):  # the dataset, then the hashes, each finished before the page goes on
        at = page("views/home.py", timeout=120).run()
        for job in step_registry().active():
            if job.label != "Embedding (trained)":
                step_registry().wait(job.key, 120)
    assert not at.exception, [e.value for e in at.exception]
    labels = _metric_labels(at)
    assert any(label.startswith("Near-duplicates") for label in labels), labels
    assert any(label.startswith("Train/test leakage") for label in labels), labels
    assert not any(label.startswith("Semantic") for label in labels)
    assert at.dataframe, "the class table is drawn without waiting for the embedding"
    bars = [p.proto.text for p in at.get("progress")]
    assert any(text.startswith("Embedding (trained)") for text in bars), bars

    jobs = [j for j in step_registry().active() if j.label == "Embedding (trained)"]
    assert len(jobs) == 1, "one job for the embedding, whatever the number of runs asking for it"
    page("views/home.py", timeout=120).run()  # a second tab, or a reload
    assert [j.key for j in step_registry().active() if j.label == "Embedding (trained)"] == [jobs[0].key]
    release.set()
    assert step_registry().wait(jobs[0].key, 300).status == DONE, jobs[0].error

    done = page("views/home.py", timeout=120).run()
    assert any(label.startswith("Semantic redundancy") for label in _metric_labels(done))
    assert not done.get("progress")


def test_a_cancel_stops_a_step_at_its_next_progress_report() -> None:
    registry = JobRegistry()
    reports = []

    def slow_step(job) -> None:  # type: ignore[no-untyped-def]
        for i in range(10_000):
            report(job.progress, "work", i, 10_000)  # a core step that takes no stop event, only a ProgressFn
            reports.append(i)
            time.sleep(0.001)

    job = registry.submit("slow", slow_step, label="slow")
    while len(reports) < 5:
        time.sleep(0.01)
    registry.cancel("slow")
    assert registry.wait("slow", 10).status == CANCELLED
    n = len(reports)
    time.sleep(0.05)
    assert len(reports) == n < 10_000
    registry.forget("slow")
    assert registry.get("slow") is None and job.fraction < 1


def test_a_job_keeps_running_when_nobody_watches_and_is_started_once() -> None:
    registry = JobRegistry(workers=4)
    started = threading.Event()
    release = threading.Event()
    calls = []

    def work(job) -> str:  # type: ignore[no-untyped-def]
        calls.append(1)
        job.progress(Progress("train", 1, 2, "epoch 1/2"))
        started.set()
        release.wait(10)
        return "network"

    first = registry.submit("net", work, label="Embedding")
    started.wait(10)
    second = registry.submit("net", work, label="Embedding")  # another tab, or the same one after a reload
    assert second is first and first.message == "train 1/2 epoch 1/2"
    release.set()
    assert registry.wait("net", 10).result == "network" and calls == [1]


@pytest.mark.parametrize("wait, expected", [("2.5", 2.5), ("nonsense", 1.0), ("-1", 0.0)], ids=["set", "bad", "neg"])
def test_wait_seconds_reads_the_environment(monkeypatch, wait: str, expected: float) -> None:
    from ui.steps import wait_seconds

    monkeypatch.setenv("REDEX_STEP_WAIT", wait)
    assert wait_seconds() == expected
