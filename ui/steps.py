"""Long steps as background jobs that outlive the page that asked for them.

A page asks for a result with `step(key, label, compute)`. A memoised result comes back at
once. Otherwise the step runs as a job in a process-wide registry, keyed, so a second tab, a
reload or another page attaches to the same job instead of starting it again; the page waits
a moment (a cached step finishes within it), then draws the job's live progress in place of
the missing part and goes on drawing everything else. A fragment polls the job and reruns the
page when it is done. Only Cancel (here or in the sidebar) stops a job: navigating, reloading
and closing tabs never do, because the job runs in the registry's thread, not the script's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from core.data.datasets import DatasetError
from core.data.types import ProgressFn
from core.features.embedding import EmbeddingUnavailable
from core.pipelines.jobs import CANCELLED, DONE, FAILED, CpuSlots, Job, JobRegistry
from ui.memo import memo

T = TypeVar("T")

WAIT_ENV = "REDEX_STEP_WAIT"
UNAVAILABLE = (DatasetError, EmbeddingUnavailable)  # failures that are a message for the user, not a bug
POLL_SECONDS = 1.5


@st.cache_resource
def cpu_slots() -> CpuSlots:
    """The machine's compute, shared by every job of every tab: one computes at a time (a training or a candidate
    search uses every core of a small machine; more at once only slows each), the one the open page asked for first.
    REDEX_JOB_SLOTS sets more for a big machine."""
    return CpuSlots(max(1, int(os.environ.get("REDEX_JOB_SLOTS", "1"))))


@st.cache_resource
def step_registry() -> JobRegistry:
    """Steps of every page and tab. Four workers, so a step that only reads the cache never queues behind one that
    computes; computing goes through the shared CPU slots."""
    return JobRegistry(workers=4, slots=cpu_slots())


@st.cache_resource
def experiment_registry() -> JobRegistry:
    """Retraining runs, one after the other, through the same CPU slots as the steps."""
    return JobRegistry(workers=1, slots=cpu_slots())


def wait_seconds() -> float:
    """How long a page waits for a step before drawing its progress instead ($REDEX_STEP_WAIT, default 1 s)."""
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, "1")))
    except ValueError:
        return 1.0


def step(key: str, label: str, compute: Callable[[ProgressFn], T],
         explain: tuple[type[BaseException], ...] = UNAVAILABLE) -> T | None:
    """The result of `compute`, memoised under `key`; None while its job runs (its progress is drawn here).

    A job that failed raises its exception here once (the page shows it) and is started again on
    the next run, except a result this dataset cannot give (DatasetError, EmbeddingUnavailable): its
    message is drawn in place and None comes back; a cancelled one offers to start again.
    """
    m = memo()
    found = m.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    reg = step_registry()
    reg.touch(key)  # a page asks for it now: it goes before the jobs of pages left behind
    job = reg.get(key)
    if job is not None and job.status == FAILED:
        reg.forget(key)
        assert job.exception is not None
        if isinstance(job.exception, explain):  # not a bug: this dataset cannot give that result; say why here,
            st.info(str(job.exception), icon=":material/info:")  # where the result would be, and draw the rest
            return None
        raise job.exception
    if job is not None and job.status == CANCELLED:
        _cancelled(job, reg)
        return None

    def run(job: Job) -> T:
        value = compute(job.progress)
        m.put(key, value)
        return value

    job = reg.submit(key, run, label=label)
    job = reg.wait(key, wait_seconds())
    if job.status == DONE:
        value: T = job.result
        m.put(key, value)
        reg.forget(key)  # the memo holds it now; the registry keeps only what is running or went wrong
        return value
    if job.status == FAILED:
        return step(key, label, compute, explain)  # raises the failure (or explains it)
    _pending(key)
    return None


def _cancelled(job: Job, reg: JobRegistry) -> None:
    c1, c2 = st.columns([4, 1])
    c1.warning(f"{job.label} was cancelled.", icon=":material/cancel:")
    if c2.button("Start again", key=f"restart_{job.key}"):
        reg.forget(job.key)
        st.rerun()


def _pending(key: str) -> None:
    """The live progress of the job under `key`, polled until it ends, then the whole page reruns."""

    @st.fragment(run_every=POLL_SECONDS)
    def poll() -> None:
        step_registry().touch(key)  # the page is still open and still waits for it
        job = step_registry().get(key)
        if job is None or not job.active:
            st.rerun()  # its result (or its failure) is ready: draw the page again with it
        assert job is not None
        job_row(job, step_registry(), key_prefix="step")

    poll()


def job_row(job: Job, reg: JobRegistry, key_prefix: str) -> None:
    """One job: a progress bar with its label, message and time left, and a Cancel button under it."""
    state = ("waiting for a worker" if job.status == "queued" else
             "waiting for the CPU: a job the open page asked for runs first" if job.waiting_for_cpu else
             job.message or "starting")
    left = job.seconds_left() if job.status == "running" and not job.waiting_for_cpu else None
    st.progress(job.fraction, text=f"{job.label}: {state}" + ("" if left is None else f" · {duration(left)} left"))
    if st.button("Cancel", key=f"{key_prefix}_cancel_{job.key}", icon=":material/cancel:", type="tertiary",
                 help="Stops this job for every tab; a training keeps its last finished epoch"):
        reg.cancel(job.key)
        st.rerun()


def duration(seconds: float) -> str:
    """'about 4 min', 'about 40 s': a time left in words, rounded as a person would say it."""
    if seconds >= 90:
        return f"about {round(seconds / 60)} min"
    return f"about {max(5, 5 * round(seconds / 5))} s"


def sidebar_jobs() -> None:
    """Every running job of this server, with its progress and a Cancel button; polls while any runs."""
    registries = (("step", step_registry()), ("exp", experiment_registry()))

    @st.fragment(run_every=POLL_SECONDS if any(r.active() for _, r in registries) else None)
    def panel() -> None:
        active = [(prefix, reg, job) for prefix, reg in registries for job in reg.active()]
        if not active:
            return
        st.caption(f"Running jobs ({len(active)})")
        for prefix, reg, job in active:
            job_row(job, reg, key_prefix=f"side_{prefix}")

    panel()
