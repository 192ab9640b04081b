"""The app: a slider move to a finished rerun."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from bench.common import ROOT, SPEC, row, section, timed


@section
def app_latency() -> list[dict[str, Any]]:
    """AppTest: slider change to finished rerun (warm caches), against a run that recomputes the index."""

    from streamlit.testing.v1 import AppTest

    from core.data import cache

    rows = []
    warm_dir = os.environ.get(cache.ENV_VAR)
    for page, key, values, label in (("views/near_duplicates.py", "radius", (4, 8), "near-duplicate page"),
                                     ("views/semantic.py", "keep_fraction", (0.9, 0.8), "semantic page")):
        at = AppTest.from_file(str(ROOT / page), default_timeout=900)
        at.session_state["dataset"] = SPEC
        at.session_state["dup_method"] = "hash"  # the radius slider's method
        if page.endswith("near_duplicates.py"):  # cold: empty disk cache, nothing in memory (decode+hash+search)
            os.environ[cache.ENV_VAR] = tempfile.mkdtemp()
        cold_s, _ = timed(at.run)
        if warm_dir is None:
            os.environ.pop(cache.ENV_VAR, None)
        else:
            os.environ[cache.ENV_VAR] = warm_dir
        times = []
        for k in range(6):
            t0 = time.perf_counter()
            at.slider(key=key).set_value(values[k % 2]).run()
            times.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
        warm = float(np.median(times))
        first = "first render, empty disk cache" if "near" in label else "first render, disk cache warm"
        rows.append(row(f"{label}: slider change to finished rerun", first, cold_s, warm,
                        notes=f"median of 6 moves; {first}: {cold_s:.1f} s"))
    return rows
