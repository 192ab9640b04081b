"""The proof, reproducible by one command: a paired many-seed sweep and the RESULTS.md section it writes.

Arms run seed by seed (every arm of seed 0, then of seed 1, ...), so a sweep stopped halfway
still holds complete pairs; each run is cached, so running it again resumes where it stopped.
Semantic and random subsets at each keep fraction and the full set (the hash subset against a
random one of its size on request), all by one recipe and budget (core.features.recipes, core.features.training).
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

from core.data.datasets import TRAIN, Dataset
from core.data.types import ProgressFn
from core.features import recipes
from core.features.embedding import EmbedConfig
from core.features.recipes import AnyRecipe
from core.pipelines.experiments import (
    Arm,
    ArmResult,
    ExperimentConfig,
    Subsets,
    cached_results,
    run_sweep,
)
from core.pipelines.paired import PairedDifference, by_seed, paired_difference
from core.pipelines.settings import TrainingSettings

ARMS = ("full", "semantic", "random", "hash", "hash-random")
DEFAULT_ARMS = ("full", "semantic", "random")


@dataclass(frozen=True)
class EvidenceConfig:
    """The sweep: semantic and random at `fractions` and the full set (hash at `hash_fraction` when its arms are
    asked for), `seeds` seeds, trained as `training` says."""

    fractions: tuple[float, ...] = (0.7, 0.5)
    hash_fraction: float = 0.9
    seeds: int = 5
    arms: tuple[str, ...] = DEFAULT_ARMS
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # the network behind the semantic subset
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def __post_init__(self) -> None:
        if not set(self.arms) <= set(ARMS):
            raise ValueError(f"arms must be among {', '.join(ARMS)}")
        if any(not 0 < f < 1 for f in (*self.fractions, self.hash_fraction)):
            raise ValueError("keep fractions must be in (0, 1)")
        if self.seeds < 1:
            raise ValueError("seeds must be at least 1")

    def training_recipe(self, ds: Dataset) -> AnyRecipe:
        """The recipe this sweep trains by on `ds` (its preset, at its epochs)."""
        return self.training.recipe_for(ds)

    @property
    def budget(self) -> str:
        return self.training.budget


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
    check = precision_check(ds, cfg)
    if check is not None:
        lines += [check.sentence(), ""]
    costs = per_class_costs(ds, results, cfg)
    if costs:
        lines += ["Per-class costs: the share of each class removed, and the mean change of its test accuracy "
                  "against the full set (points, paired by seed):", "",
                  "| keep | class | removed % | Δ acc semantic | Δ acc random |", "|---|---|---|---|---|"]
        lines += [f"| {c['fraction']:.2f} | {c['class']} | {100 * c['removed']:.1f} | {100 * c['semantic']:+.2f} | "
                  f"{100 * c['random']:+.2f} |" for c in costs]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PrecisionCheck:
    """The full set trained in the recipe's precision here (bf16) minus float32, seed by seed: does the faster
    arithmetic cost accuracy? (Not its speed: a cached run's seconds count any pause of the sweep around it; the
    benchmarks time precision alone.)"""

    difference: PairedDifference

    def sentence(self) -> str:
        d = self.difference
        if d.n < 2:
            said = f"{100 * d.mean:+.2f} points from one seed; no interval yet"
        else:
            said = (f"{100 * d.mean:+.2f} points (95% interval {100 * d.low:+.2f} to {100 * d.high:+.2f}, {d.n} "
                    "paired seeds): " + ("a difference is shown" if d.shown else "no difference is shown at this "
                                         "number of seeds"))
        return f"Precision: the full set in bf16 minus the same runs in float32 (same seeds, same recipe): {said}."


def precision_check(ds: Dataset, cfg: EvidenceConfig) -> PrecisionCheck | None:
    """bf16 − float32 on the full set where both are cached (nothing is trained); None where the recipe does not
    train in bf16 here (float32 machines, the one-cycle recipes) or no float32 run is cached."""
    from core.data.device import pick_device
    from core.features.training import resolve_precision

    here = cfg.training_recipe(ds)
    if resolve_precision(getattr(here, "precision", "float32"), pick_device()) != "bf16":
        return None
    full = replace(cfg, arms=("full",))
    mine = cached_evidence(ds, full)
    theirs = cached_evidence(ds, replace(full, training=replace(cfg.training, precision="float32")))
    d = paired_difference({r.seed: r.accuracy for r in mine}, {r.seed: r.accuracy for r in theirs},
                          names=("bf16", "float32"), fraction=1.0)
    return None if d is None else PrecisionCheck(d)


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
    _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    """A half-written file never replaces the previous one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- the budget that decides the verdict ---------------------------------------------------------------------

# The budgets of the curve, shortest first: the former 4-epoch one-cycle recipe (equal epochs, as its sweep ran),
# the converged recipe cut to 2 and 4 epochs, and the converged recipe itself (equal steps).
BUDGET_CURVE: tuple[TrainingSettings, ...] = (
    TrainingSettings(recipe="onecycle-cpu", budget="epochs"),
    TrainingSettings(epochs=2),
    TrainingSettings(epochs=4),
    TrainingSettings(),
)


@dataclass(frozen=True)
class BudgetPoint:
    """One training budget of the curve: its recipe, how well it trains the full set, and semantic − random."""

    label: str  # the recipe's name, e.g. "airbench-cpu, 2 epochs"
    budget: str
    seeds: int  # seeds with a full-set run
    full_accuracy: float  # mean test accuracy of the full training set (how far this budget converges)
    differences: tuple[PairedDifference, ...]  # semantic − random at each fraction, high to low


def budget_curve(ds: Dataset, cfg: EvidenceConfig,
                 budgets: tuple[TrainingSettings, ...] = BUDGET_CURVE) -> list[BudgetPoint]:
    """The cached sweep at each budget (nothing is trained): a point per budget with a full-set run and a pair."""
    points = []
    for training in budgets:
        at = replace(cfg, training=training, arms=DEFAULT_ARMS)
        try:
            results = cached_evidence(ds, at)
        except ValueError:  # a recipe that does not apply on this device or dataset
            continue
        full = [r.accuracy for r in results if r.method == "full"]
        diffs = tuple(d for d in differences(results) if d.a == "semantic")
        if full and diffs:
            recipe = at.training_recipe(ds)
            points.append(BudgetPoint(recipes.name_of(recipe), at.budget, len(full), float(np.mean(full)), diffs))
    return sorted(points, key=lambda p: p.full_accuracy)


def where_it_turns(points: list[BudgetPoint]) -> str:
    """A sentence per keep fraction: semantic − random from the shortest budget to the longest, and where the sign
    turns."""
    if not points:
        return "No training budget has both a full-set run and a semantic-random pair cached yet."
    out = []
    fractions = sorted({d.fraction for p in points for d in p.differences}, reverse=True)
    for f in fractions:
        seq = [(p, d) for p in points for d in p.differences if abs(d.fraction - f) < 1e-9]
        said = "; ".join(f"{100 * d.mean:+.2f} at {100 * p.full_accuracy:.1f}% ({p.label}, {d.n} seeds"
                         f"{', shown' if d.shown else ''})" for p, d in seq)
        turn = next((k for k in range(1, len(seq)) if (seq[k - 1][1].mean < 0) != (seq[k][1].mean < 0)), None)
        if len(seq) == 1:
            verdict = ("only this budget is measured so far, so the curve says nothing yet about where the verdict "
                       "turns (the shorter budgets: evidence --curve-seeds 3)")
        elif turn is None:
            verdict = ("semantic stays " + ("behind" if seq[0][1].mean < 0 else "ahead") +
                       " of random at every budget measured")
        else:
            (p0, _), (p1, d1) = seq[turn - 1], seq[turn]
            verdict = (f"the verdict turns between {100 * p0.full_accuracy:.1f}% and {100 * p1.full_accuracy:.1f}% "
                       f"full-set accuracy ({p0.label} → {p1.label}): semantic is "
                       + ("ahead" if d1.mean > 0 else "behind") + " from there on")
        if len(seq) > 1:  # a sign read from means alone: say where the seeds support it
            shown = [p.label for p, d in seq if d.shown]
            if len(shown) == len(seq):
                where = "at every budget"
            else:
                where = (f"only at {', '.join(shown)}" if shown else "at none of them") + ", the rest is within noise"
            verdict += "; the 95% interval excludes 0 " + where
        out.append(f"At keep {f:.2f}, semantic − random in points against how far the full set trains: {said}. "
                   f"{verdict[0].upper()}{verdict[1:]}.")
    return " ".join(out)


def render_budget(points: list[BudgetPoint]) -> str:
    """The markdown of the budget curve: a table and the sentence of where the verdict turns."""
    if not points:
        return where_it_turns(points) + "\n"
    fractions = sorted({d.fraction for p in points for d in p.differences}, reverse=True)
    head = "| budget | full-set accuracy % | seeds | " + " | ".join(
        f"semantic − random at {f:.2f} (95% interval)" for f in fractions) + " |"
    lines = [head, "|" + "---|" * (3 + len(fractions))]
    for p in points:
        cells = []
        for f in fractions:
            d = next((d for d in p.differences if abs(d.fraction - f) < 1e-9), None)
            cells.append("" if d is None else f"{100 * d.mean:+.2f}" + (
                "" if d.n < 2 else f" ({100 * d.low:+.2f} to {100 * d.high:+.2f}, {d.n} seeds)"))
        lines.append(f"| {p.label} (budget {p.budget}) | {100 * p.full_accuracy:.2f} | {p.seeds} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + where_it_turns(points) + "\n"


def write_budget(path: Path, name: str, title: str, points: list[BudgetPoint]) -> Path | None:
    """Write the budget section into `path`, and its chart beside it as an SVG (named after the section, written
    atomically, linked from the section); the chart's path, or None when no budget is cached yet."""
    from core.pipelines.charts import budget_svg

    body = render_budget(points)
    chart = None
    if points:
        chart = path.with_name(re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".svg")
        _write_atomic(chart, budget_svg(points))
        body = (f"![semantic − random against the full-set accuracy of each training budget]({chart.name})\n\n"
                + body)
    write_section(path, name, title, body)
    return chart
