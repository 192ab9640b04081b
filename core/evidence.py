"""The proof, reproducible by one command: a paired many-seed sweep and the RESULTS.md section it writes.

Arms run seed by seed (every arm of seed 0, then of seed 1, ...), so a sweep stopped halfway
still holds complete pairs; each run is cached, so running it again resumes where it stopped.
Semantic and random subsets at each keep fraction and the full set (the hash subset against a
random one of its size on request), all by one recipe and budget (core.recipes, core.training).
The section reports each arm's mean ± sd, the paired differences semantic − random with 95%
intervals, and what each class pays: the share of it removed and the change in its test accuracy
against the full set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core import recipes
from core.datasets import TRAIN, Dataset
from core.embedding import EmbedConfig
from core.experiments import (
    DEFAULT_BUDGET,
    Arm,
    ArmResult,
    ExperimentConfig,
    Subsets,
    cached_results,
    default_recipe,
    run_sweep,
)
from core.paired import PairedDifference, by_seed, paired_difference
from core.recipes import AnyRecipe
from core.training import BUDGETS
from core.types import ProgressFn

ARMS = ("full", "semantic", "random", "hash", "hash-random")
DEFAULT_ARMS = ("full", "semantic", "random")


@dataclass(frozen=True)
class EvidenceConfig:
    """The sweep: semantic and random at `fractions` and the full set (hash at `hash_fraction` when its arms are
    asked for), `seeds` seeds, by the recipe called `recipe` ("" the dataset's default) for `epochs` (0 the
    recipe's) under `budget`."""

    fractions: tuple[float, ...] = (0.7, 0.5)
    hash_fraction: float = 0.9
    seeds: int = 5
    arms: tuple[str, ...] = DEFAULT_ARMS
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # the network behind the semantic subset
    recipe: str = ""
    epochs: float = 0
    budget: str = DEFAULT_BUDGET
    precision: str = ""  # "" the recipe's own

    def __post_init__(self) -> None:
        if not set(self.arms) <= set(ARMS):
            raise ValueError(f"arms must be among {', '.join(ARMS)}")
        if any(not 0 < f < 1 for f in (*self.fractions, self.hash_fraction)):
            raise ValueError("keep fractions must be in (0, 1)")
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")
        if self.recipe:
            recipes.get(self.recipe)
        if self.budget not in BUDGETS:
            raise ValueError(f"unknown budget {self.budget!r}: must be one of {', '.join(BUDGETS)}")

    def training_recipe(self, ds: Dataset) -> AnyRecipe:
        """The recipe this sweep trains by on `ds` (its preset, at its epochs)."""
        base = recipes.get(self.recipe) if self.recipe else default_recipe(ds)
        return recipes.with_precision(recipes.with_epochs(base, self.epochs), self.precision)


def evidence_arms(cfg: EvidenceConfig) -> list[Arm]:
    """Seed-major order, so that every finished seed is a complete set of pairs."""
    arms: list[Arm] = []
    for s in range(cfg.seeds):
        arms.append(Arm("full", 1.0, s))
        for f in cfg.fractions:
            arms += [Arm("semantic", f, s), Arm("random", f, s)]
        arms += [Arm("hash", cfg.hash_fraction, s), Arm("hash-random", cfg.hash_fraction, s)]
    return [a for a in arms if a.method in cfg.arms]


def experiment_config(cfg: EvidenceConfig, ds: Dataset) -> ExperimentConfig:
    return ExperimentConfig(fractions=tuple(sorted({*cfg.fractions, cfg.hash_fraction}, reverse=True)),
                            seeds=cfg.seeds, recipe=cfg.training_recipe(ds), budget=cfg.budget, embed=cfg.embed)


def run_evidence(ds: Dataset, cfg: EvidenceConfig, *, on_result: Callable[[ArmResult], None] | None = None,
                 on_progress: ProgressFn | None = None, stop: threading.Event | None = None) -> list[ArmResult]:
    """Every arm of the sweep, cached results first."""
    return run_sweep(ds, experiment_config(cfg, ds), arms=evidence_arms(cfg), on_progress=on_progress,
                     on_result=on_result, stop=stop)


def cached_evidence(ds: Dataset, cfg: EvidenceConfig) -> list[ArmResult]:
    """The arms of the sweep that are cached (nothing is trained)."""
    return cached_results(ds, experiment_config(cfg, ds), arms=evidence_arms(cfg))


def against_default_embedding(ds: Dataset, results: list[ArmResult], cfg: EvidenceConfig) -> list[PairedDifference]:
    """semantic with cfg's embedding minus semantic with the default one, seed by seed, at each fraction
    where both are cached (nothing is trained): how much the network behind the cut matters."""
    default = replace(cfg, arms=("semantic",), embed=EmbedConfig())
    theirs = cached_evidence(ds, default)
    rows = [(r.method, r.fraction, r.seed, r.accuracy) for r in results]
    base = [(r.method, r.fraction, r.seed, r.accuracy) for r in theirs]
    out = []
    for f in sorted(cfg.fractions, reverse=True):
        d = paired_difference(by_seed(rows, "semantic", f), by_seed(base, "semantic", f),
                              names=("semantic (this embedding)", "semantic (default embedding)"), fraction=f)
        if d is not None:
            out.append(d)
    return out


def differences(results: list[ArmResult]) -> list[PairedDifference]:
    """semantic − random at each fraction (keep fraction from high to low), then hash − random, where
    the random arm has the hash subset's size in every class."""
    rows = [(r.method, r.fraction, r.seed, r.accuracy) for r in results]
    out = []
    for method, against in (("semantic", "random"), ("hash", "hash-random")):
        for f in sorted({r.fraction for r in results if r.method == method}, reverse=True):
            d = paired_difference(by_seed(rows, method, f), by_seed(rows, against, f), names=(method, "random"),
                                  fraction=f)
            if d is not None:
                out.append(d)
    return out


def per_class_costs(ds: Dataset, results: list[ArmResult], cfg: EvidenceConfig,
                    subsets: Subsets | None = None) -> list[dict[str, Any]]:
    """Per class and fraction: the share removed, and the mean change of its test accuracy against the full set
    (paired by seed) for semantic and random. Random keeps semantic's count in every class, so the
    shares are equal and the accuracy change says which images mattered."""
    full = {r.seed: np.array(r.per_class) for r in results if r.method == "full" and r.per_class}
    if not full and results:  # a sweep without the full arm (another network's semantic arms): the cached full runs
        cached = cached_evidence(ds, replace(cfg, arms=("full",)))
        full = {r.seed: np.array(r.per_class) for r in cached if r.per_class}
    subsets = subsets or Subsets(ds, experiment_config(cfg, ds))
    n_classes = len(ds.classes)
    train_counts = np.bincount(ds.labels[ds.split == TRAIN], minlength=n_classes)
    rows = []
    for f in cfg.fractions:
        removed = subsets.semantic(f).per_class(ds.labels, n_classes)["removed"]
        change: dict[str, np.ndarray] = {}
        for method in ("semantic", "random"):
            deltas = [np.array(r.per_class) - full[r.seed] for r in results
                      if r.method == method and abs(r.fraction - f) < 1e-9 and r.seed in full and r.per_class]
            change[method] = np.mean(deltas, axis=0) if deltas else np.full(n_classes, np.nan)
        for c in range(n_classes):
            rows.append({"fraction": f, "class": ds.classes[c], "removed": float(removed[c] / max(1, train_counts[c])),
                         "semantic": float(change["semantic"][c]), "random": float(change["random"][c])})
    return rows


def _arm_table(results: list[ArmResult]) -> list[str]:
    groups: dict[tuple[str, float], list[ArmResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.fraction), []).append(r)
    order = {"full": 0, "semantic": 1, "random": 2, "hash": 3, "hash-random": 4}
    lines = ["| arm | keep (target) | kept (real) | images | seeds | test accuracy % (mean ± sd) | s/run |",
             "|---|---|---|---|---|---|---|"]
    for (method, f), rs in sorted(groups.items(), key=lambda kv: (-kv[0][1], order.get(kv[0][0], 9))):
        acc = 100 * np.array([r.accuracy for r in rs])
        sd = acc.std(ddof=1) if len(acc) > 1 else float("nan")
        lines.append(f"| {method} | {f:.2f} | {rs[0].kept_fraction:.4f} | {rs[0].n_train:,} | {len(rs)} | "
                     f"{acc.mean():.2f} ± {sd:.2f} | {np.mean([r.seconds for r in rs]):.0f} |")
    return lines


def render(ds: Dataset, results: list[ArmResult], cfg: EvidenceConfig, *, command: str,
           embedding: dict[str, Any], wall_seconds: float) -> str:
    """The markdown section: command, recipe, device, arms, paired differences in words, per-class costs."""
    device = results[0].device if results else "(no run)"
    seeds_done = sorted({r.seed for r in results})
    trained = sum(r.seconds for r in results)
    recipe = cfg.training_recipe(ds)
    lines = [f"Command: `{command}` ({len(results)} runs, {len(seeds_done)} seeds; the runs' own training and "
             f"evaluation add up to {trained / 3600:.2f} h on this device; this invocation took "
             f"{wall_seconds / 60:.1f} min, since cached runs cost nothing and an interrupted sweep resumes).",
             "",
             f"- Dataset: {ds.name} ({int((ds.split == TRAIN).sum()):,} training images, fingerprint "
             f"`{ds.fingerprint[:16]}`). Device: {device}.",
             f"- Retraining recipe: {recipes.describe(recipe, cfg.budget)}. Arms that share a seed share the initial "
             "weights and every image's augmentation; they differ only in data.",
             f"- Embedding: {embedding.get('recipe', embedding.get('arch'))} trained {embedding.get('epochs')} epochs "
             "on this dataset, test "
             f"accuracy {100 * float(embedding.get('test_accuracy', float('nan'))):.2f}%, "
             f"{float(embedding.get('train_seconds', float('nan'))) / 60:.1f} min on {embedding.get('device')}.",
             "- random keeps exactly the semantic subset's count in every class, hash-random the hash subset's; "
             "hash is pHash (64 bits) at the smallest radius that keeps at most the hash fraction.",
             "",
             *_arm_table(results),
             "",
             "Paired differences (accuracy of the first arm minus the second, seed by seed; 95% t interval):",
             ""]
    diffs = differences(results)
    lines += [f"- {d.sentence()}" for d in diffs] or ["- (no pair has finished yet)"]
    lines += ["", "What the data show: " + _verdict(diffs), ""]
    costs = per_class_costs(ds, results, cfg)
    if costs:
        lines += ["Per-class costs: the share of each class removed, and the mean change of its test accuracy "
                  "against the full set (points, paired by seed):", "",
                  "| keep | class | removed % | Δ acc semantic | Δ acc random |", "|---|---|---|---|---|"]
        lines += [f"| {c['fraction']:.2f} | {c['class']} | {100 * c['removed']:.1f} | {100 * c['semantic']:+.2f} | "
                  f"{100 * c['random']:+.2f} |" for c in costs]
    return "\n".join(lines) + "\n"


def _verdict(diffs: list[PairedDifference]) -> str:
    shown = [d for d in diffs if d.shown]
    if not diffs:
        return "nothing yet."
    if not shown:
        return ("no paired difference excludes zero at this number of seeds: this run does not show that either "
                "selection beats random (nor that it trails it).")
    parts = [f"{d.a} {'beats' if d.mean > 0 else 'trails'} {d.b} at keep {d.fraction:.2f}" for d in shown]
    rest = [f"{d.fraction:.2f} ({d.a})" for d in diffs if not d.shown]
    tail = f"; at {', '.join(rest)} no difference is shown" if rest else ""
    return "; ".join(parts) + tail + "."


def write_section(path: Path, name: str, title: str, body: str) -> None:
    """Replace (or append) the section between `<!-- evidence:NAME -->` markers of a markdown file."""
    start, end = f"<!-- evidence:{name}:start -->", f"<!-- evidence:{name}:end -->"
    block = f"{start}\n## {title}\n\n{body}{end}"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
