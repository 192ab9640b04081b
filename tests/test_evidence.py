"""The paired sweep on digits: seed-major arms, paired intervals equal to scipy's, a section rewritten in place."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core.pipelines.evidence import (
    ARMS,
    EvidenceConfig,
    differences,
    evidence_arms,
    per_class_costs,
    precision_check,
    render,
    run_evidence,
    write_section,
)
from core.pipelines.paired import paired_difference
from core.pipelines.settings import TrainingSettings

CFG = EvidenceConfig(fractions=(0.9, 0.5), hash_fraction=0.9, seeds=2, arms=ARMS)


def test_arms_run_seed_by_seed_so_a_stopped_sweep_holds_whole_pairs() -> None:
    arms = evidence_arms(CFG)
    assert len(arms) == 2 * (1 + 2 * 2 + 2)
    first_seed = arms[: len(arms) // 2]
    assert {a.seed for a in first_seed} == {0}
    assert [(a.method, a.fraction) for a in first_seed] == [
        ("full", 1.0), ("semantic", 0.9), ("random", 0.9), ("semantic", 0.5), ("random", 0.5), ("hash", 0.9),
        ("hash-random", 0.9)]


def test_the_paired_interval_is_scipys_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.80, 0.01, 8)
    b = a - rng.normal(0.008, 0.002, 8)  # semantic ahead by ~0.8 points, seed by seed
    d = paired_difference(dict(enumerate(a)), dict(enumerate(b)), names=("semantic", "random"), fraction=0.7)
    assert d is not None
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d.low == pytest.approx(ci.low) and d.high == pytest.approx(ci.high) and d.n == 8
    assert d.shown and d.sentence().startswith("semantic beats random at keep 0.70 by")


def test_only_seeds_both_arms_ran_are_paired_and_a_zero_straddling_interval_shows_nothing() -> None:
    d = paired_difference({0: 0.80, 1: 0.81, 2: 0.79, 5: 0.9}, {0: 0.81, 1: 0.80, 2: 0.79}, names=("hash", "random"),
                          fraction=0.9)
    assert d is not None and d.n == 3 and d.mean == pytest.approx(0.0)
    assert not d.shown and "no difference is shown" in d.sentence()
    assert paired_difference({0: 0.8}, {1: 0.8}, names=("a", "b"), fraction=0.5) is None


@pytest.fixture(scope="module")
def sweep(digits):  # type: ignore[no-untyped-def]
    return CFG.training_recipe(digits), run_evidence(digits, CFG)


def test_the_digits_sweep_runs_every_arm_and_pairs_them(digits, sweep) -> None:  # type: ignore[no-untyped-def]
    recipe, results = sweep
    assert len(results) == len(evidence_arms(CFG))
    assert all(0.9 < r.accuracy <= 1.0 and len(r.per_class) == 10 for r in results)
    hashed = {r.method: r for r in results if r.seed == 0 and r.method in ("hash", "hash-random")}
    assert hashed["hash"].n_train == hashed["hash-random"].n_train  # hash is compared with random of its own size
    diffs = differences(results)
    assert [(d.a, d.fraction, d.n) for d in diffs] == [("semantic", 0.9, 2), ("semantic", 0.5, 2), ("hash", 0.9, 2)]
    sem = {r.seed: r.accuracy for r in results if r.method == "semantic" and r.fraction == 0.5}
    rnd = {r.seed: r.accuracy for r in results if r.method == "random" and r.fraction == 0.5}
    assert diffs[1].mean == pytest.approx(np.mean([sem[s] - rnd[s] for s in (0, 1)]))


def test_per_class_costs_give_random_the_same_shares_as_semantic(digits, sweep) -> None:  # type: ignore[no-untyped-def]
    _, results = sweep
    costs = per_class_costs(digits, results, CFG)
    assert len(costs) == 10 * 2
    at_half = [c for c in costs if c["fraction"] == 0.5]
    assert sum(c["removed"] for c in at_half) / 10 == pytest.approx(0.5, abs=0.05)
    assert all(np.isfinite(c["semantic"]) and np.isfinite(c["random"]) for c in costs)


def test_the_section_is_written_in_place_and_the_rest_is_kept(digits, sweep, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe, results = sweep
    body = render(digits, results, CFG, command="python -m core evidence --dataset digits", embedding={},
                  wall_seconds=1.0)
    assert "| semantic | 0.50 |" in body and "What the data show:" in body and "| 0.50 | 9 |" in body
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nwritten by hand\n")
    write_section(doc, "digits:cpu", "digits on cpu", body)
    write_section(doc, "digits:cpu", "digits on cpu", body.replace("What the data show:", "Shown:"))
    text = doc.read_text()
    assert text.startswith("# Results\n\nwritten by hand\n") and text.count("evidence:digits:cpu:start") == 1
    assert "Shown:" in text and "What the data show:" not in text


def test_arms_can_be_chosen_and_unknown_ones_are_refused() -> None:
    from core.pipelines.evidence import EvidenceConfig, evidence_arms

    arms = evidence_arms(EvidenceConfig(fractions=(0.9, 0.5), seeds=2, arms=("semantic", "random")))
    assert {a.method for a in arms} == {"semantic", "random"} and len(arms) == 2 * 2 * 2
    assert [a.seed for a in arms] == sorted(a.seed for a in arms)  # still seed-major
    with pytest.raises(ValueError, match="arms"):
        EvidenceConfig(arms=("semantic", "best"))


def test_the_budget_curve_says_where_the_verdict_turns() -> None:
    from core.pipelines.charts import budget_svg
    from core.pipelines.evidence import BudgetPoint, render_budget, where_it_turns
    from core.pipelines.paired import PairedDifference

    def d(mean: float, n: int = 5) -> PairedDifference:
        return PairedDifference("semantic", "random", 0.5, n, mean, 0.004, mean - 0.005, mean + 0.005)

    points = [BudgetPoint("onecycle-cpu", "epochs", 3, 0.79, (d(-0.09),)),
              BudgetPoint("airbench-cpu, 2 epochs", "steps", 3, 0.83, (d(-0.01),)),
              BudgetPoint("airbench-cpu", "steps", 5, 0.891, (d(+0.012),))]
    said = where_it_turns(points)
    assert "turns between 83.0% and 89.1%" in said and "airbench-cpu, 2 epochs → airbench-cpu" in said
    assert "semantic is ahead from there on; the 95% interval excludes 0 at every budget." in said
    noisy = PairedDifference("semantic", "random", 0.5, 3, 0.003, 0.01, -0.02, 0.026)
    wide = [BudgetPoint("a", "steps", 3, 0.80, (noisy,)), points[2]]
    assert "stays ahead of random at every budget measured; the 95% interval excludes 0 only at airbench-cpu, the " \
           "rest is within noise." in where_it_turns(wide)
    assert "stays behind" in where_it_turns(points[:2])
    assert "Only this budget is measured so far" in where_it_turns(points[2:])  # one point is no curve
    table = render_budget(points)
    assert "| airbench-cpu (budget steps) | 89.10 | 5 | +1.20 (+0.70 to +1.70, 5 seeds) |" in table
    svg = budget_svg(points)
    assert svg.count("<circle") == 3 and "keep 0.50" in svg
    both = [BudgetPoint(p.label, p.budget, p.seeds, p.full_accuracy, (replace(p.differences[0], fraction=0.7),
                                                                       *p.differences)) for p in points]
    ys = [float(v) for v in re.findall(r'y="([\d.]+)" font-size="11" fill="[^"]+">keep', budget_svg(both))]
    assert len(ys) == 2 and abs(ys[0] - ys[1]) >= 13  # two lines ending at one point: their labels do not overlap


def test_the_budget_section_links_its_chart_written_beside_it(tmp_path: Path) -> None:
    from core.pipelines.evidence import BudgetPoint, write_budget
    from core.pipelines.paired import PairedDifference

    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n")
    assert write_budget(doc, "digits:cpu:budget", "digits: the budget", []) is None  # nothing cached: no chart
    assert "No training budget" in doc.read_text() and list(tmp_path.iterdir()) == [doc]
    d = PairedDifference("semantic", "random", 0.5, 3, 0.01, 0.004, 0.0, 0.02)
    chart = write_budget(doc, "digits:cpu:budget", "digits: the budget", [BudgetPoint("x", "steps", 3, 0.9, (d,))])
    assert chart == tmp_path / "digits-cpu-budget.svg" and chart.read_text().startswith("<svg")
    text = doc.read_text()
    assert f"]({chart.name})" in text and text.count("evidence:digits:cpu:budget:start") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.md", chart.name]  # no temporary file left


def test_the_precision_check_pairs_bf16_runs_with_float32_runs_of_the_same_seeds(digits, monkeypatch,  # type: ignore[no-untyped-def]
                                                                                  tmp_path: Path) -> None:
    # a cache of its own: where the CPU lacks native bf16, other tests' default runs are float32 runs of these seeds
    monkeypatch.setenv("REDEX_CACHE_DIR", str(tmp_path))
    bf16 = EvidenceConfig(seeds=2, arms=("full",), training=TrainingSettings(precision="bf16"))
    f32 = replace(bf16, training=TrainingSettings(precision="float32"))
    mine = {r.seed: r.accuracy for r in run_evidence(digits, bf16)}
    assert precision_check(digits, bf16) is None  # no float32 run yet: nothing to say
    theirs = {r.seed: r.accuracy for r in run_evidence(digits, f32)}
    check = precision_check(digits, bf16)
    assert check is not None and check.difference.n == 2
    assert check.difference.mean == pytest.approx(np.mean([mine[s] - theirs[s] for s in (0, 1)]))
    assert check.sentence().startswith("Precision: the full set in bf16 minus the same runs in float32")
    assert precision_check(digits, f32) is None  # float32 against itself is no check
