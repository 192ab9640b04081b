"""Choose the compute device once: CUDA when present, the CPU otherwise."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

log = logging.getLogger("redex.device")


@lru_cache(maxsize=1)
def pick_device() -> str:
    """'cuda' if torch sees a GPU (and REDEX_DEVICE does not say otherwise), else 'cpu'."""
    import torch

    wanted = os.environ.get("REDEX_DEVICE", "")
    device = wanted or ("cuda" if torch.cuda.is_available() else "cpu")
    log.info("Device set to %s", device)
    return device


def describe() -> str:
    """A short name for the footer and result tables, e.g. 'cpu (2 threads)' or the GPU's name."""
    import torch

    if pick_device() == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the heap instead of returning it to the system.

    A training step frees and reallocates activations of a hundred megabytes each; glibc serves
    those with fresh mmaps whose pages fault in on every step. Keeping them (mallopt M_MMAP_MAX=0,
    M_TRIM_THRESHOLD 1 GiB) made an airbench step on CIFAR-10 15-30% faster on 2 cores and took
    most of the run-to-run spread away (docs/BENCHMARKS.md). The process then keeps its peak
    memory. Linux with glibc only; REDEX_MALLOC=system leaves the allocator as it is.
    """
    if os.environ.get("REDEX_MALLOC") == "system":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        kept = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
    log.info("freed memory stays in the heap (glibc mallopt): %s", kept)
    return kept
