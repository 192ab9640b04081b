"""Retraining: cached results, equal-size random arms, cancel and supersede, the page's job lifecycle."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import page

from core.data import cache
from core.pipelines.experiments import (
    Arm,
    ExperimentConfig,
    Subsets,
    default_recipe,
    peek_arm,
    plan,
    result_key,
    run_arm,
)
from core.pipelines.jobs import CANCELLED, DONE, SUPERSEDED, JobRegistry


def tiny(ds):  # type: ignore[no-untyped-def]
    recipe = dataclasses.replace(default_recipe(ds, "cpu"), epochs=3)
    return ExperimentConfig(methods=("semantic", "random"), fractions=(1.0, 0.8), seeds=1, recipe=recipe)


def test_arm_trains_caches_and_reloads(digits) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny(digits)
    subsets = Subsets(digits, cfg)
    arm = Arm("semantic", 0.8, 0)
    sel = subsets.get(arm)
    assert sel is not None and peek_arm(digits, arm, sel, cfg.recipe) is None
    first = run_arm(digits, arm, sel, cfg.recipe)
    assert not first.from_cache and 0.2 < first.accuracy <= 1.0  # three epochs: well above chance (0.1)
    assert first.n_train == len(sel.kept)
    misses = cache.stats.misses
    again = run_arm(digits, arm, sel, cfg.recipe)
    assert again.from_cache and cache.stats.misses == misses and again.accuracy == first.accuracy
    assert peek_arm(digits, arm, sel, cfg.recipe) == dataclasses.replace(first, from_cache=True)


def test_random_arm_has_the_semantic_arms_size_and_class_counts(digits) -> None:  # type: ignore[no-untyped-def]
    subsets = Subsets(digits, tiny(digits))
    sem, rnd = subsets.get(Arm("semantic", 0.7, 0)), subsets.get(Arm("random", 0.7, 0))
    assert sem is not None and rnd is not None
    n = len(digits.classes)
    assert np.array_equal(sem.per_class(digits.labels, n)["kept"], rnd.per_class(digits.labels, n)["kept"])
    assert len(rnd.kept) == len(sem.kept) and set(rnd.kept) != set(sem.kept)
    other_seed = subsets.get(Arm("random", 0.7, 1))
    assert other_seed is not None and set(other_seed.kept) != set(rnd.kept)


def test_plan_shares_the_full_arm() -> None:
    arms = plan(ExperimentConfig(fractions=(1.0, 0.9, 0.7), seeds=2))
    assert [a for a in arms if a.method == "full"] == [Arm("full", 1.0, 0), Arm("full", 1.0, 1)]
    assert len(arms) == 2 + 3 * 2 * 2


def test_cancel_stops_a_job_and_leaves_no_finished_result(digits) -> None:  # type: ignore[no-untyped-def]
    cfg = dataclasses.replace(tiny(digits), recipe=dataclasses.replace(default_recipe(digits, "cpu"), epochs=500))
    arm = Arm("full", 1.0, 0)
    sel = Subsets(digits, cfg).get(arm)
    assert sel is not None
    registry = JobRegistry()
    job = registry.submit("long", lambda j: run_arm(digits, arm, sel, cfg.recipe, on_progress=j.progress, stop=j.stop))
    deadline = time.time() + 60
    while job.fraction == 0 and time.time() < deadline:
        time.sleep(0.05)
    registry.cancel("long")
    assert registry.wait("long").status == CANCELLED
    assert peek_arm(digits, arm, sel, cfg.recipe) is None
    key = result_key(digits, sel.kept, cfg.recipe, 0)
    assert not list(cache.cache_dir().glob(f"{key}*.json"))


def test_newer_slider_position_supersedes_queued_work() -> None:
    registry = JobRegistry()
    gate = __import__("threading").Event()
    registry.submit("running", lambda j: gate.wait(30), group="slider")
    older = registry.submit("older", lambda j: "old", group="slider")
    newer = registry.submit("newer", lambda j: "new", group="slider")
    assert older.status == SUPERSEDED
    gate.set()
    assert registry.wait("newer").status == DONE and newer.result == "new"
    assert registry.wait("older").status == SUPERSEDED and older.result is None
    assert registry.submit("newer", lambda j: "again") is newer  # attaching, not duplicating


def test_page_queues_a_job_and_shows_its_result() -> None:
    at = page("views/experiments.py", timeout=300)
    at.session_state["exp_epochs"] = 1
    at.session_state["exp_seeds"] = 1
    at.session_state["exp_methods"] = ["semantic", "random"]
    at.session_state["keep_fraction"] = 0.6
    at.run()
    assert not at.exception
    at.button(key="exp_retrain").click().run()
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(1)
        at.run()
        table = list(at.dataframe)  # the results table is the page's only dataframe
        frame = table[0].value if table else None
        if frame is not None and {"semantic", "random"} <= set(frame[frame.fraction == 0.6].method) and (
                "full" in set(frame.method)):
            break
    else:
        raise AssertionError("the queued job's results never appeared")
    at_06 = frame[frame.fraction == 0.6]  # other fractions may show results cached by earlier runs
    sem = at_06[at_06.method == "semantic"].iloc[0]
    rnd = at_06[at_06.method == "random"].iloc[0]
    assert sem.n_train == rnd.n_train == round(0.6 * 1347)
    assert not at.exception
    said = [m.value for m in at.markdown if "random at keep 0.60" in m.value]
    assert said and ("one seed" in said[0] or "interval" in said[0]), [m.value for m in at.markdown]
    assert "Which classes pay, at keep 0.60" in [h.value for h in at.subheader]


def test_results_files_hold_the_summary_and_every_run(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import json

    from core.pipelines.experiments import ArmResult, write_results

    runs = [ArmResult("semantic", 0.9, 0.9, 1212, seed, acc, 2.0, 8, "cpu", "semantic {}") for seed, acc in
            ((0, 0.98), (1, 0.96))]
    js, table = write_results(tmp_path / "out", digits, default_recipe(digits, "cpu"), runs)
    doc = json.loads(js.read_text())
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    assert doc["recipe"]["name"] == "airbench-small" and doc["budget"] == "steps"
    rows = list(csv.DictReader(open(table, encoding="utf-8")))
    assert len(rows) == 1 and float(rows[0]["accuracy_mean"]) == pytest.approx(0.97) and rows[0]["seeds"] == "2"
    assert not list((tmp_path / "out").glob("*.tmp"))
