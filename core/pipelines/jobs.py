"""Background jobs off the caller's thread: queued one at a time, attachable, cancellable.

The app keeps one registry per process (st.cache_resource), so a job started in one tab is
visible in another and a rerun attaches to the running job instead of starting a duplicate.
Workers never touch the UI: they update their Job, and the page polls it. Results go to the
disk cache inside the job's function, so they outlive the tab that asked for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.data.types import Cancelled, Progress

log = logging.getLogger("redex.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED = "queued", "running", "done", "failed", "cancelled", "superseded"
ETA_WINDOW = 120.0  # seconds of recent progress the time left is read from (a moving pace, not the first seconds)
ETA_MIN_SPAN = 10.0  # seconds of progress needed before any estimate


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
    """Jobs by key, run by a few worker threads (one by default: two cores are busy enough with one training).

    The workers are daemon threads: stopping the server does not wait for a training to end. A
    job stopped that way is like one killed: every cache write is atomic and a training resumes
    from its last epoch checkpoint the next time it is asked for.
    """

    def __init__(self, workers: int = 1) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.SimpleQueue[tuple[Job, Callable[[Job], Any]]] = queue.SimpleQueue()
        for k in range(workers):
            threading.Thread(target=self._work, name=f"redex-job-{k}", daemon=True).start()

    def _work(self) -> None:
        while True:
            job, fn = self._queue.get()
            self._run(job, fn)

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
            job = Job(key, group, label)
            self._jobs[key] = job
        self._queue.put((job, fn))
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        with self._lock:
            if job.status != QUEUED:
                return
            job.status = RUNNING
        try:
            job.result = fn(job)
            job.status, job.fraction = DONE, 1.0
        except Cancelled:
            job.status = CANCELLED
        except Exception as exc:  # the job reports any failure; the worker thread must survive it
            log.exception("job %s failed", job.key)
            job.status, job.error, job.exception = FAILED, f"{type(exc).__name__}: {exc}", exc
        finally:
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
