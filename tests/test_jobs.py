"""Jobs share the CPU without oversubscribing it: one computes at a time, a cache read never waits, the job the open
page asked for goes first, a waiting job can be cancelled, and a job's time left comes from its recent pace."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.data import cache
from core.data.types import Progress
from core.pipelines import jobs
from core.pipelines.jobs import CANCELLED, DONE, RUNNING, CpuSlots, Job, JobRegistry


def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_job_computes_at_a_time_and_a_cache_read_never_waits() -> None:
    reg = JobRegistry(workers=3, slots=CpuSlots(1))
    inside, release, second_ran = threading.Event(), threading.Event(), threading.Event()

    def heavy(job: Job) -> object:  # a cache miss that holds the CPU until released
        return cache.cached_arrays("jobs-heavy", lambda: (inside.set(), release.wait(20), {"x": np.zeros(1)})[2])

    def second(job: Job) -> object:
        return cache.cached_arrays("jobs-second", lambda: (second_ran.set(), {"x": np.ones(1)})[1])

    try:
        reg.submit("heavy", heavy)
        assert inside.wait(10)
        b = reg.submit("second", second)
        _until(lambda: b.waiting_for_cpu)
        assert not second_ran.is_set(), "a second computation waits for the CPU"
        cache.cached_arrays("jobs-ready", lambda: {"x": np.ones(1)})  # on disk already
        c = reg.submit("read", lambda job: cache.cached_arrays("jobs-ready", lambda: pytest.fail("recomputed")))
        assert reg.wait("read", 10).status == DONE, "a job that only reads the cache does not wait for the CPU"
        assert not second_ran.is_set() and c.status == DONE
    finally:
        release.set()
    assert reg.wait("second", 20).status == DONE and second_ran.is_set()
    reg.shutdown()


def test_the_job_the_open_page_asked_for_takes_the_cpu_at_the_next_progress_report(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(jobs, "MIN_HOLD", 0.0)
    monkeypatch.setattr(jobs, "YIELD_MARGIN", 0.0)
    reg = JobRegistry(workers=2, slots=CpuSlots(1))
    order: list[str] = []
    stop_long = threading.Event()

    def long(job: Job) -> None:  # a training left behind on another page: reports progress as it goes
        k = 0
        while not stop_long.is_set():
            job.progress(Progress("train", k, 10_000))
            order.append("long")
            k += 1
            time.sleep(0.01)

    def asked_now(job: Job) -> str:
        job.progress(Progress("candidates", 0, 1))
        order.append("now")
        return "done"

    try:
        a = reg.submit("long", long)
        _until(lambda: a.holding)
        reg.submit("now", asked_now)
        reg.touch("now")  # the page the user looks at asks for it
        assert reg.wait("now", 10).status == DONE
        assert a.status == RUNNING, "the page's job ran while the other waited at a progress report"
        _until(lambda: a.holding)  # and the other one goes on once the CPU is free
    finally:
        stop_long.set()
    assert reg.wait("long", 10).status == DONE and "now" in order
    reg.shutdown()


def test_of_two_waiting_jobs_the_more_recently_asked_for_goes_first() -> None:
    reg = JobRegistry(workers=3, slots=CpuSlots(1))
    release = threading.Event()
    ran: list[str] = []

    def hold(job: Job) -> None:
        job.progress(Progress("x", 0, 1))
        release.wait(20)

    def record(name: str):  # type: ignore[no-untyped-def]
        def fn(job: Job) -> None:
            job.progress(Progress("x", 0, 1))
            ran.append(name)
        return fn

    reg.submit("hold", hold)
    _until(lambda: reg.get("hold") is not None and reg.get("hold").holding)  # type: ignore[union-attr]
    old, new = reg.submit("old", record("old")), reg.submit("new", record("new"))
    _until(lambda: old.waiting_for_cpu and new.waiting_for_cpu)
    reg.touch("new")
    release.set()
    assert reg.wait("old", 10).status == DONE and reg.wait("new", 10).status == DONE
    assert ran == ["new", "old"]
    reg.shutdown()


def test_a_job_cancelled_while_it_waits_for_the_cpu_ends_at_once() -> None:
    reg = JobRegistry(workers=2, slots=CpuSlots(1))
    release = threading.Event()
    reg.submit("hold", lambda job: (job.progress(Progress("x", 0, 1)), release.wait(20)))
    _until(lambda: reg.get("hold") is not None and reg.get("hold").holding)  # type: ignore[union-attr]
    waiting = reg.submit("waits", lambda job: job.progress(Progress("x", 0, 1)))
    _until(lambda: waiting.waiting_for_cpu)
    reg.cancel("waits")
    assert reg.wait("waits", 5).status == CANCELLED
    release.set()
    reg.shutdown()


def test_time_left_comes_from_the_recent_pace_not_the_first_seconds() -> None:
    job = Job("k")
    t = 1000.0
    job.samples.extend([(t, 0.0), (t + 1, 0.01)])  # a slow start (start-up costs)
    job.samples.extend((t + 200 + s, 0.1 + 0.004 * s) for s in range(0, 101, 10))  # then 0.4% a second
    job.fraction = 0.5
    assert job.seconds_left(now=t + 300) == pytest.approx(0.5 / 0.004, rel=1e-6)
    assert Job("fresh").seconds_left() is None, "no estimate before any progress"
