"""Background jobs off the caller's thread: attachable, cancellable, and sharing the CPU without oversubscribing it.

The app keeps one registry per process (st.cache_resource), so a job started in one tab is
visible in another and a rerun attaches to the running job instead of starting a duplicate.
Workers never touch the UI: they update their Job, and the page polls it. Results go to the
disk cache inside the job's function, so they outlive the tab that asked for them.

Scheduling by what the user looks at: jobs compute one at a time (`CpuSlots`; a training or a
candidate search uses every core of a small machine). A job takes the CPU when it first computes
something (a cache miss, or a progress report), so a job that only reads the cache never waits.
Each job carries the time a page last asked for it (`touch`); a waiting job that a page asked for
more recently takes the CPU from the running one at its next progress report, and the other waits.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.data import cache
from core.data.types import Cancelled, Progress

log = logging.getLogger("redex.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED = "queued", "running", "done", "failed", "cancelled", "superseded"
ETA_WINDOW = 120.0  # seconds of recent progress the time left is read from (a moving pace, not the first seconds)
ETA_MIN_SPAN = 10.0  # seconds of progress needed before any estimate
YIELD_MARGIN = 5.0  # a waiting job takes the CPU when a page asked for it this much more recently...
MIN_HOLD = 10.0  # ...and the running job has held it this long (no thrashing between two open pages)


class CpuSlots:
    """The machine's compute: `slots` jobs at a time, the one a page asked for most recently first."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._cond = threading.Condition()
        self._holders: set[Job] = set()
        self._waiting: set[Job] = set()

    def acquire(self, job: Job) -> None:
        """Block until `job` may compute; Cancelled if it is cancelled while it waits."""
        with self._cond:
            self._waiting.add(job)
            try:
                while len(self._holders) >= self.slots or job is not max(self._waiting, key=lambda j: j.wanted):
                    if job.stop.is_set():
                        raise Cancelled(f"{job.label or job.key} cancelled")
                    self._cond.wait(timeout=0.25)
            finally:
                self._waiting.discard(job)
            self._holders.add(job)

    def release(self, job: Job) -> None:
        with self._cond:
            self._holders.discard(job)
            self._cond.notify_all()

    def should_yield(self, job: Job, now: float) -> bool:
        """Whether a waiting job was asked for clearly more recently, and `job` has computed a while."""
        with self._cond:
            return now - job.acquired > MIN_HOLD and any(w.wanted > job.wanted + YIELD_MARGIN for w in self._waiting)

    def waiting(self) -> list[Job]:
        with self._cond:
            return sorted(self._waiting, key=lambda j: -j.wanted)


@dataclass
class Job:
    """One unit of background work and what is known about it now."""

    key: str
    group: str = ""
    label: str = ""
    status: str = QUEUED
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    phase: str = ""
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=400), repr=False)
    wanted: float = field(default_factory=time.monotonic)  # when a page last asked for this job
    slots: CpuSlots | None = field(default=None, repr=False)
    holding: bool = False  # computing now (holds a CPU slot)
    acquired: float = 0.0
    paused: float = 0.0  # seconds spent waiting for the CPU after it started computing

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def waiting_for_cpu(self) -> bool:
        return self.slots is not None and self in self.slots.waiting()

    def enter(self) -> None:
        """Take the CPU before computing (core.data.cache calls this on a miss); at once if it is free."""
        if self.slots is None or self.holding:
            return
        t0 = time.monotonic()
        self.slots.acquire(self)
        self.holding, self.acquired = True, time.monotonic()
        if self.samples:  # time spent waiting is not progress: the pace restarts
            self.paused += self.acquired - t0
            self.samples.clear()

    def leave(self) -> bool:
        """Give the CPU back (finished, or waiting on another's result); whether it was held."""
        if self.slots is None or not self.holding:
            return False
        self.holding = False
        self.slots.release(self)
        return True
    @property
    def active(self) -> bool:
        return self.status in (QUEUED, RUNNING)

    def progress(self, p: Progress) -> None:
        """A ProgressFn: the job's function passes this to core.

        It raises Cancelled once the job is cancelled, so any core step that reports progress
        stops at its next report, even one that takes no stop event.
        """
        if self.stop.is_set():
            raise Cancelled(f"{self.label or self.key} cancelled")
        self.enter()  # computing: needs the CPU
        if self.slots is not None and self.slots.should_yield(self, time.monotonic()):
            self.message = "paused: a job the open page asked for runs first"
            self.leave()
            self.enter()
        if p.phase != self.phase:  # a new phase: its own pace
            self.phase = p.phase
            self.samples.clear()
        self.fraction = p.fraction
        self.samples.append((time.monotonic(), p.fraction))
        counted = f" {p.done:,}/{p.total:,}" if p.total else ""
        self.message = f"{p.phase}{counted} {p.message}".strip()

    def seconds_left(self, window: float = ETA_WINDOW, now: float | None = None) -> float | None:
        """Time left in the current phase from its pace over the last `window` seconds (None until ETA_MIN_SPAN
        seconds of progress are seen, so the first seconds of start-up cost do not make an estimate)."""
        now = time.monotonic() if now is None else now
        recent = [s for s in self.samples if s[0] >= now - window]
        if len(recent) < 2 or recent[-1][0] - recent[0][0] < ETA_MIN_SPAN:
            return None
        rate = (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
        return None if rate <= 0 else (1.0 - self.fraction) / rate


class JobRegistry:
    """Jobs by key, run by a few worker threads that share `slots` (the CPU) with every other registry given them.

    Several workers let a job that only reads the cache finish while another computes. At exit
    (`shutdown`, registered with atexit) every job is cancelled and the workers are given a moment
    to stop at their next progress report, so a stopped server leaves no thread inside native code;
    a job stopped that way is like one killed: every cache write is atomic and a training resumes
    from its last checkpoint the next time it is asked for.
    """

    def __init__(self, workers: int = 1, slots: CpuSlots | None = None) -> None:
        self.slots = slots
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.SimpleQueue[tuple[Job, Callable[[Job], Any]]] = queue.SimpleQueue()
        self._closing = threading.Event()
        for k in range(workers):
            t = threading.Thread(target=self._work, name=f"redex-job-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        atexit.register(self.shutdown)

    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                job, fn = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run(job, fn)

    def touch(self, key: str) -> None:
        """A page asked for this job now: it goes before jobs asked for earlier."""
        job = self._jobs.get(key)
        if job is not None:
            job.wanted = time.monotonic()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait (up to `timeout`) for the workers to stop."""
        self._closing.set()
        for job in self.jobs():
            job.stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def submit(self, key: str, fn: Callable[[Job], Any], *, group: str = "", label: str = "") -> Job:
        """Queue fn(job) under `key`; an active or finished job with that key is returned instead.

        Queued jobs of the same non-empty `group` that have not started are superseded.
        """
        with self._lock:
            found = self._jobs.get(key)
            if found is not None and found.status in (QUEUED, RUNNING, DONE):
                return found
            if group:
                for other in self._jobs.values():
                    if other.group == group and other.status == QUEUED:
                        other.status = SUPERSEDED
                        other.stop.set()
            job = Job(key, group, label, slots=self.slots)
            self._jobs[key] = job
        self._queue.put((job, fn))
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        with self._lock:
            if job.status != QUEUED:
                return
            job.status = RUNNING
        try:
            with cache.compute_gate(job):
                job.result = fn(job)
            job.status, job.fraction = DONE, 1.0
        except Cancelled:
            job.status = CANCELLED
        except Exception as exc:  # the job reports any failure; the worker thread must survive it
            log.exception("job %s failed", job.key)
            job.status, job.error, job.exception = FAILED, f"{type(exc).__name__}: {exc}", exc
        finally:
            job.leave()
            job.finished = time.time()

    def cancel(self, key: str) -> None:
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return
            job.stop.set()
            if job.status == QUEUED:
                job.status = CANCELLED

    def forget(self, key: str) -> None:
        """Drop a job that is no longer active (its result is elsewhere, or it is to be started again)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.active:
                del self._jobs[key]

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def active(self) -> list[Job]:
        return [j for j in self.jobs() if j.active]

    def wait(self, key: str, timeout: float = 600) -> Job:
        """Block until the job is no longer active (for the CLI and tests)."""
        deadline = time.time() + timeout
        job = self._jobs[key]
        while job.active and time.time() < deadline:
            time.sleep(0.02)
        return job
