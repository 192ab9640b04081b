"""Near-duplicate candidates on Ray equal the single machine's in every scope (pairs and scores), a task killed
mid-job changes nothing, and the app opened on the result folder shows the pair-score method and the Review page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, metric, page

from core.data.datasets import load_image_folder
from core.data.scope import SCOPES
from core.selections.candidates import CandidateConfig, cached_candidates

ray = pytest.importorskip("ray", reason="Ray is not installed")
NO_NETWORK = CandidateConfig(network=False)  # the Ray job's network is its own: compare the cues both share


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


def _by_ids(ds, cands) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
    ids = [str(i) for i in ds.ids]
    return {(ids[int(a)], ids[int(b)]) if cands.scope.value == "leakage" else tuple(sorted((ids[int(a)], ids[int(b)]))):
            float(s) for a, b, s in zip(cands.a, cands.b, cands.score)}


def _run(root: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    res = _cli("scale", "candidates", "--source", f"imagefolder:{root}", "--out", str(out), "--workers", "2",
               "--no-network-cue", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ray_candidates(planted_folder, tmp_path_factory):  # type: ignore[no-untyped-def]
    root, _ = planted_folder
    return root, {"clean": _run(root, tmp_path_factory.mktemp("cands-clean") / "out")}


def test_ray_candidates_equal_the_single_machine_in_every_scope(ray_candidates) -> None:  # type: ignore[no-untyped-def]
    from core.pipelines.results import open_results

    root, runs = ray_candidates
    local, remote = load_image_folder(root), open_results(runs["clean"])
    for scope in SCOPES:
        ours = _by_ids(remote, cached_candidates(remote, scope, NO_NETWORK, every_match=True))
        theirs = _by_ids(local, cached_candidates(local, scope, NO_NETWORK, every_match=True))
        assert ours.keys() == theirs.keys() and len(ours) > 0, scope
        np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), atol=1e-5, err_msg=str(scope))


@pytest.mark.slow
def test_a_task_killed_mid_job_gives_the_same_lists(ray_candidates, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, runs = ray_candidates
    killed = {"REDEX_TEST_KILL": "candidates:0", "REDEX_CACHE_DIR": str(tmp_path / "cache")}  # computes it all again
    runs = {**runs, "killed": _run(root, tmp_path / "out", killed)}
    assert (runs["killed"] / "killed-candidates-0").exists(), "the task of part 0 was meant to die once"
    clean = {p.name: np.load(p) for p in sorted((runs["clean"] / "candidates").glob("*.npz"))}
    killed = {p.name: np.load(p) for p in sorted((runs["killed"] / "candidates").glob("*.npz"))}
    assert clean.keys() == killed.keys() and clean
    for name in clean:
        for field in ("a", "b", "score"):
            np.testing.assert_array_equal(clean[name][field], killed[name][field])
    assert not list(runs["killed"].rglob("*.tmp-*")), "no partial file is left behind"


def test_the_app_browses_the_ray_candidates_with_the_pair_score(ray_candidates) -> None:  # type: ignore[no-untyped-def]
    root, runs = ray_candidates
    spec = f"scale:{runs['clean']}"
    near = page("views/near_duplicates.py", spec=spec).run()
    assert not near.exception and not near.error, [e.value for e in near.exception]
    assert near.session_state["dup_method"] == "pair score", "auto picks the pair score: the job left its candidates"
    from core.data.scope import Scope
    from core.selections.review import DEFAULT_MIN_SCORE, leaked

    local = load_image_folder(root)
    expected = leaked(local, cached_candidates(local, Scope.LEAKAGE, NO_NETWORK), {}, DEFAULT_MIN_SCORE)
    assert metric(near, "Leaked test images") == len(expected) > 0
    review = page("views/review.py", spec=spec).run()
    assert not review.exception and any("found by" in m.value for m in review.markdown)
