"""Retraining experiments: does a pruned subset keep the accuracy, and beat random of the same size?

Arms share one recipe and seed and differ only in data: the full training set; the semantic
subset at a keep fraction; the hash-dedup subset at the smallest radius that keeps at most that
fraction; and a random subset with exactly the semantic subset's size in every class. Each
result is cached per (dataset, subset fingerprint, recipe, budget, seed), so a curve grows point
by point and nothing is trained twice.

The budget says how long a subset trains. "steps" (the default) gives every arm the full set's
number of optimizer steps: a subset kept at 0.5 makes twice the passes, so the comparison asks
whether the removed images carried information the model needs (as published pruning code does:
Data Diet, arXiv 2107.07075; CCS, arXiv 2210.15809). "epochs" gives every arm the recipe's epochs
over its own images: what pruning saves in compute, at the cost of fewer steps.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data import cache
from core.data.datasets import TEST, TRAIN, Dataset
from core.data.device import pick_device
from core.data.types import Progress, ProgressFn
from core.features import onecycle, recipes, training
from core.features.embedding import EmbedConfig
from core.features.hashing import HashConfig
from core.features.recipes import AnyRecipe
from core.features.training import BUDGETS, total_steps
from core.pipelines.settings import DEFAULT_BUDGET
from core.selections.selection import Selection, empty_like, random_like

METHODS = ("semantic", "hash", "random")
DEFAULT_FRACTIONS = (1.0, 0.9, 0.8, 0.7)  # the sweep of the Experiments page and the experiment command


def default_recipe(ds: Dataset, device: str | None = None) -> AnyRecipe:
    """The converged recipe for this dataset and device (core.features.recipes.default_name)."""
    h, w, c = ds.image_shape
    return recipes.get(recipes.default_name(int((ds.split == TRAIN).sum()), min(h, w), c, device or pick_device()))


def arm_budget(recipe: AnyRecipe, budget: str) -> str:
    """The budget a run really has: the one-cycle recipes always ran equal epochs."""
    return "epochs" if isinstance(recipe, onecycle.TrainConfig) else budget


@dataclass(frozen=True)
class Arm:
    """One training run: a method at a target keep fraction, with a seed."""

    method: str  # "full", "semantic", "hash" or "random"
    fraction: float
    seed: int


@dataclass(frozen=True)
class ArmResult:
    method: str
    fraction: float  # the target
    kept_fraction: float  # what the subset really keeps
    n_train: int
    seed: int
    accuracy: float
    seconds: float
    epochs: float  # passes over the subset
    device: str
    params: str
    from_cache: bool = False
    per_class: tuple[float, ...] = ()  # test accuracy of each class
    recipe: str = ""  # the preset's name (core.features.recipes)
    budget: str = "epochs"  # "steps": the full set's optimizer steps; "epochs": the recipe's epochs over the subset
    steps: int = 0


@dataclass(frozen=True)
class ExperimentConfig:
    methods: tuple[str, ...] = METHODS
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: int = 3
    recipe: AnyRecipe = field(default_factory=lambda: recipes.get("airbench-cpu"))
    budget: str = DEFAULT_BUDGET
    hash: HashConfig = field(default_factory=HashConfig)  # the hash arm's hash
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # the network behind the semantic subset

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method {bad[0]!r}: must be among {', '.join(METHODS)}")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError("keep fractions must be in (0, 1]")
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")
        if self.budget not in BUDGETS:
            raise ValueError(f"unknown budget {self.budget!r}: must be one of {', '.join(BUDGETS)}")


def plan(cfg: ExperimentConfig) -> list[Arm]:
    """Every arm of a sweep: one full-data arm per seed, then each method at each fraction < 1."""
    arms = [Arm("full", 1.0, s) for s in range(cfg.seeds)]
    for f in sorted({float(x) for x in cfg.fractions if x < 1.0}, reverse=True):
        for m in cfg.methods:
            arms += [Arm(m, f, s) for s in range(cfg.seeds)]
    return arms


class Subsets:
    """Builds each arm's subset from the cached indexes (hash pairs, dendrograms), once each."""

    def __init__(self, ds: Dataset, cfg: ExperimentConfig, on_progress: ProgressFn | None = None) -> None:
        self.ds, self.cfg, self.on_progress = ds, cfg, on_progress
        self._semantic: Any = None
        self._index: Any = None

    def semantic(self, fraction: float) -> Selection:
        from core.selections.semantic import semantic_index, semantic_selection

        if self._semantic is None:
            self._semantic = semantic_index(self.ds, self.cfg.embed, on_progress=self.on_progress)
        emb, dendro = self._semantic
        return semantic_selection(dendro, emb.vectors, keep_fraction=fraction)

    def hash(self, fraction: float) -> Selection | None:
        """The smallest radius whose dedup keeps at most `fraction`; None if no radius gets there."""
        from core.selections.duplicates import build_index, hash_selection

        if self._index is None:
            self._index = build_index(self.ds, self.cfg.hash, self.on_progress)
        # Removals only grow with the radius (edges are only added), so the kept fraction is
        # monotone: binary search for the smallest radius that gets down to `fraction`.
        lo, hi, found = 0, self._index.max_radius, None
        while lo <= hi:
            mid = (lo + hi) // 2
            sel = hash_selection(self.ds, self._index, mid)
            if sel.kept_fraction <= fraction + 1e-9:
                found, hi = sel, mid - 1
            else:
                lo = mid + 1
        return found

    def get(self, arm: Arm) -> Selection | None:
        pool = self.ds.split == TRAIN
        if arm.method == "full":
            return empty_like(len(self.ds), pool, "full", {})
        if arm.method == "semantic":
            return self.semantic(arm.fraction)
        if arm.method == "hash":
            return self.hash(arm.fraction)
        if arm.method == "hash-random":  # random with the hash subset's count in every class
            target = self.hash(arm.fraction)
            return None if target is None else random_like(target, self.ds.labels, seed=2000 + arm.seed)
        return random_like(self.semantic(arm.fraction), self.ds.labels, seed=1000 + arm.seed)


def subset_fingerprint(indices: NDArray[np.int64]) -> str:
    return hashlib.blake2b(np.ascontiguousarray(np.sort(indices)).tobytes(), digest_size=16).hexdigest()


def arm_steps(ds: Dataset, n_kept: int, recipe: AnyRecipe, budget: str) -> int:
    """Optimizer steps of a run on `n_kept` training images under `budget` (0 for a one-cycle recipe)."""
    if isinstance(recipe, onecycle.TrainConfig):
        return 0
    return total_steps(recipe, int((ds.split == TRAIN).sum()), n_kept, budget)


def result_key(ds: Dataset, kept: NDArray[np.int64], recipe: AnyRecipe, seed: int, budget: str = DEFAULT_BUDGET) -> str:
    """The cache key of one run: a one-cycle recipe's exactly as it always was; airbench's adds budget and steps."""
    if isinstance(recipe, onecycle.TrainConfig):
        keyed = {**onecycle.recipe_key(recipe, min(ds.image_shape[:2])), "seed": seed}
    else:
        keyed = {**training.recipe_key(replace(recipe, seed=seed)), "seed": seed, "budget": budget,
                 "steps": arm_steps(ds, len(kept), recipe, budget)}
    return cache.make_key("train", keyed, ds.fingerprint, subset_fingerprint(kept))


def run_arm(ds: Dataset, arm: Arm, sel: Selection, recipe: AnyRecipe, budget: str = DEFAULT_BUDGET, *,
            on_progress: ProgressFn | None = None, stop: threading.Event | None = None) -> ArmResult:
    """Train on sel.kept and evaluate on the test split; cached, so a second call reads the result."""
    kept = sel.kept
    budget = arm_budget(recipe, budget)
    key = result_key(ds, kept, recipe, arm.seed, budget)
    seeded = replace(recipe, seed=arm.seed)
    te = ds.split == TEST
    misses = cache.stats.misses

    def compute() -> dict[str, Any]:
        images = ds.pixels("retraining")
        common: dict[str, Any] = {"x_eval": np.asarray(images[te]), "y_eval": ds.labels[te], "ids": kept,
                                  "on_progress": on_progress, "stop": stop}
        x, y = np.asarray(images[kept]), ds.labels[kept]
        if isinstance(seeded, onecycle.TrainConfig):
            _, result, _ = onecycle.train_one_cycle(x, y, len(ds.classes), seeded, **common)
        else:
            _, result, _ = training.train(x, y, len(ds.classes), seeded,
                                          steps=arm_steps(ds, len(kept), seeded, budget), **common)
        return {"accuracy": result.accuracy, "seconds": result.seconds, "epochs": result.epochs,
                "n_train": result.n_train, "device": result.device, "per_class": list(result.per_class),
                "recipe": recipes.name_of(recipe), "budget": budget, "steps": result.steps,
                "accuracy_plain": result.accuracy_plain, "losses": list(result.losses)}

    r = cache.cached_json(key, compute)
    return _arm_result(arm, sel, r, from_cache=cache.stats.misses == misses, recipe=recipe, budget=budget)


def _arm_result(arm: Arm, sel: Selection, r: dict[str, Any], from_cache: bool, recipe: AnyRecipe,
                budget: str) -> ArmResult:
    return ArmResult(arm.method, arm.fraction, sel.kept_fraction, int(r["n_train"]), arm.seed, float(r["accuracy"]),
                     float(r["seconds"]), float(r["epochs"]), str(r["device"]), sel.describe(), from_cache=from_cache,
                     per_class=tuple(float(v) for v in r.get("per_class", [])),
                     recipe=str(r.get("recipe") or recipes.name_of(recipe)), budget=budget,
                     steps=int(r.get("steps", 0)))


def peek_arm(ds: Dataset, arm: Arm, sel: Selection, recipe: AnyRecipe,
             budget: str = DEFAULT_BUDGET) -> ArmResult | None:
    """The cached result of an arm, or None if it has not been trained (never trains)."""
    budget = arm_budget(recipe, budget)
    r = cache.peek_json(result_key(ds, sel.kept, recipe, arm.seed, budget))
    return None if r is None else _arm_result(arm, sel, r, from_cache=True, recipe=recipe, budget=budget)


def seconds_per_step(ds: Dataset, recipe: AnyRecipe, device: str | None = None) -> float:
    """Seconds one optimizer step of `recipe` takes here now: a short timed run after a warm-up step.

    Not stored on disk, since a timing taken while the machine is busy would mislead later estimates.
    """
    idx = np.flatnonzero(ds.split == TRAIN)
    batch = min(recipe.batch_size, len(idx))
    x, y = np.asarray(ds.pixels("retraining")[idx[: batch * 3]]), ds.labels[idx[: batch * 3]]
    if isinstance(recipe, onecycle.TrainConfig):
        one = replace(recipe, epochs=1)
        onecycle.train_one_cycle(x[:batch], y[:batch], len(ds.classes), one, device=device)  # start-up costs
        t0 = time.perf_counter()
        onecycle.train_one_cycle(x, y, len(ds.classes), one, device=device)
        return (time.perf_counter() - t0) / max(1, len(x) // batch)
    training.train(x[:batch], y[:batch], len(ds.classes), recipe, steps=1, device=device)
    t0 = time.perf_counter()
    training.train(x, y, len(ds.classes), recipe, steps=3, device=device)
    return (time.perf_counter() - t0) / 3


def sweep_steps(ds: Dataset, cfg: ExperimentConfig, arms: list[Arm]) -> int:
    """Optimizer steps the arms take together (each arm's subset size estimated from its target fraction)."""
    n_train = int((ds.split == TRAIN).sum())
    budget = arm_budget(cfg.recipe, cfg.budget)
    if isinstance(cfg.recipe, onecycle.TrainConfig):
        per_epoch = -(-n_train // cfg.recipe.batch_size)
        return int(sum(a.fraction * per_epoch * cfg.recipe.epochs for a in arms))
    return sum(total_steps(cfg.recipe, n_train, round(a.fraction * n_train), budget) for a in arms)


def cached_results(ds: Dataset, cfg: ExperimentConfig, arms: list[Arm] | None = None,
                   subsets: Subsets | None = None) -> list[ArmResult]:
    """Every arm of `cfg` (or the given arms) whose result is cached (nothing is trained)."""
    subsets = subsets or Subsets(ds, cfg)
    found = []
    for arm in arms if arms is not None else plan(cfg):
        sel = subsets.get(arm)
        if sel is not None and (r := peek_arm(ds, arm, sel, cfg.recipe, cfg.budget)) is not None:
            found.append(r)
    return found


def run_sweep(ds: Dataset, cfg: ExperimentConfig, *, arms: list[Arm] | None = None,
              on_progress: ProgressFn | None = None, on_result: Any = None,
              stop: threading.Event | None = None) -> list[ArmResult]:
    """Every arm (or the given ones), cached results first; `on_result` sees each as it lands.

    Progress is one phase, "sweep", counting the optimizer steps of every arm still to train, so a job's
    time left covers the whole sweep, not the run under way.
    """
    subsets = Subsets(ds, cfg, on_progress)
    todo = [(arm, sel) for arm in (arms if arms is not None else plan(cfg)) if (sel := subsets.get(arm)) is not None]
    left = [(arm, sel) for arm, sel in todo if peek_arm(ds, arm, sel, cfg.recipe, cfg.budget) is None]
    steps = {arm: _arm_steps(ds, len(sel.kept), cfg) for arm, sel in left}
    total, done = sum(steps.values()), 0
    results = []
    for arm, sel in todo:
        label = f"{arm.method} keep {arm.fraction:.2f} seed {arm.seed}"

        def within(p: Progress, base: int = done, label: str = label) -> None:
            if p.phase == "train" and on_progress is not None:
                on_progress(Progress("sweep", base + p.done, total, f"{label} · {p.message}"))
            elif on_progress is not None:
                on_progress(p)

        r = run_arm(ds, arm, sel, cfg.recipe, cfg.budget, on_progress=within, stop=stop)
        done += steps.get(arm, 0)
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def _arm_steps(ds: Dataset, n_kept: int, cfg: ExperimentConfig) -> int:
    """Optimizer steps of one run (the one-cycle recipe's, by its epochs and batch)."""
    steps = arm_steps(ds, n_kept, cfg.recipe, arm_budget(cfg.recipe, cfg.budget))
    return steps or int(cfg.recipe.epochs * max(1, -(-n_kept // cfg.recipe.batch_size)))


def write_results(out: str | Path, ds: Dataset, recipe: AnyRecipe, results: list[ArmResult],
                  budget: str = DEFAULT_BUDGET) -> tuple[Path, Path]:
    """OUT/results.json (recipe, summary and every run) and OUT/results.csv (the summary), each written atomically."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = summarize(results)
    doc = {"recipe": {"name": recipes.name_of(recipe), **asdict(recipe)}, "budget": arm_budget(recipe, budget),
           "dataset": ds.name, "summary": rows, "runs": [asdict(r) for r in results]}
    js, table = folder / "results.json", folder / "results.csv"
    tmp = js.with_name(js.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(js)
    tmp = table.with_name(table.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(table)
    return js, table


def summarize(results: list[ArmResult]) -> list[dict[str, Any]]:
    """Mean ± std of test accuracy per (method, fraction), with the real kept fraction and times."""
    groups: dict[tuple[str, float], list[ArmResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.fraction), []).append(r)
    rows = []
    for (method, fraction), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        acc = np.array([r.accuracy for r in rs])
        rows.append({"method": method, "fraction": fraction, "kept_fraction": round(rs[0].kept_fraction, 4),
                     "n_train": rs[0].n_train, "seeds": len(rs), "accuracy_mean": float(acc.mean()),
                     "accuracy_std": float(acc.std(ddof=1)) if len(rs) > 1 else 0.0,
                     "seconds_mean": float(np.mean([r.seconds for r in rs])), "epochs": rs[0].epochs,
                     "steps": rs[0].steps, "recipe": rs[0].recipe, "budget": rs[0].budget, "device": rs[0].device})
    return rows
