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
