"""Every setting a user makes, in one frozen object: the pages, the CLI, Export and the report read the same one.

Each field's default is written here once; ui.state builds a Settings from the widgets once per page
run, the CLI from its arguments, and every figure is computed from it, so a page and the report
built with the same settings cannot disagree. `describe()` names every setting a figure depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from core.data.datasets import TRAIN, Dataset
from core.features import recipes
from core.features.embedding import MODELS, EmbedConfig
from core.features.hashing import HashConfig
from core.features.recipes import AnyRecipe
from core.features.training import BUDGETS, PRECISIONS
from core.selections.candidates import has_candidates
from core.selections.duplicates import DEFAULT_KEEP_RULE, DEFAULT_RADIUS, KEEP_RULES, max_radius
from core.selections.review import DEFAULT_MIN_SCORE
from core.selections.selection import Selection
from core.selections.semantic import DEFAULT_KEEP_FRACTION, POLICIES, Dendrograms, semantic_selection

PAIR_SCORE, HASH, AUTO = "pair score", "hash", "auto"
DUP_METHODS = (PAIR_SCORE, HASH)
DUP_METHOD_TEXT = {PAIR_SCORE: "Pair score (candidates)", HASH: "Perceptual hash (CE-Dedup)"}
PAIR_SCORE_MIN_SIDE = 16  # the pair score's minimum is calibrated on 32-pixel photos; on 8-pixel digits most
# images of a class correlate above it, so smaller images get hashes by default
DEFAULT_BUDGET = "steps"


@dataclass(frozen=True)
class NearDupSettings:
    """How near-duplicates are found: the pair score at a minimum (judged pairs as judged), or a hash and radius."""

    method: str = AUTO  # "pair score", "hash", or "auto": the pair score for images of 16 px and more
    min_score: float = DEFAULT_MIN_SCORE
    hash: HashConfig = field(default_factory=HashConfig)
    radius: int = DEFAULT_RADIUS
    keep_rule: str = DEFAULT_KEEP_RULE  # hash groups: which image stays (pair-score groups keep the lowest index)

    def __post_init__(self) -> None:
        if self.method not in (*DUP_METHODS, AUTO):
            raise ValueError(f"unknown near-duplicate method {self.method!r}: must be one of "
                             f"{', '.join((*DUP_METHODS, AUTO))}")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"the minimum pair score must be between 0 and 1, got {self.min_score}")
        if self.keep_rule not in KEEP_RULES:
            raise ValueError(f"unknown keep rule {self.keep_rule!r}: must be one of {', '.join(KEEP_RULES)}")
        if not 0 <= self.radius <= max_radius(self.hash.bits):
            raise ValueError(f"the Hamming radius must be between 0 and {max_radius(self.hash.bits)} for "
                             f"{self.hash.label}, got {self.radius}")

    def resolved(self, image_side: int, pair_score_possible: bool = True) -> NearDupSettings:
        """'auto' made concrete: the pair score for images of `image_side` >= 16 pixels where it can run (the pixels
        are here, or a Ray job left its candidates), else hashes."""
        if self.method != AUTO:
            return self
        pair = image_side >= PAIR_SCORE_MIN_SIDE and pair_score_possible
        return replace(self, method=PAIR_SCORE if pair else HASH)

    def describe(self) -> str:
        if self.method == PAIR_SCORE:
            return (f"pair score at least {self.min_score:.2f} (a pair judged a duplicate always counts, one judged "
                    "similar or different never)")
        if self.method == HASH:
            return f"{self.hash.label} within {self.radius} bits, keep rule {self.keep_rule}"
        return f"auto (the pair score at {self.min_score:.2f} for images of {PAIR_SCORE_MIN_SIDE} px and more, else " \
               f"{self.hash.label} within {self.radius} bits)"


@dataclass(frozen=True)
class SemanticSettings:
    """The semantic cut: which embedding, then a keep fraction (or a cosine distance) and the representative."""

    embedding: EmbedConfig = field(default_factory=EmbedConfig)
    keep_fraction: float = DEFAULT_KEEP_FRACTION
    distance: float | None = None  # when set, clusters are cut at this cosine distance instead of a keep fraction
    per_class: bool = False  # keep the fraction within every class
    policy: str = "mean"  # which member represents a cluster

    def __post_init__(self) -> None:
        if not 0 < self.keep_fraction <= 1:
            raise ValueError(f"the keep fraction must be in (0, 1], got {self.keep_fraction}")
        if self.distance is not None and not 0 <= self.distance <= 2:
            raise ValueError(f"the cosine distance must be between 0 and 2, got {self.distance}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown representative rule {self.policy!r}: must be one of {', '.join(POLICIES)}")
        if self.embedding.model not in MODELS:
            raise ValueError(f"unknown embedding {self.embedding.model!r}")

    def cut(self, dendro: Dendrograms, vectors: NDArray[np.float32]) -> Selection:
        """The semantic subset these settings make from the per-class dendrograms."""
        keep = None if self.distance is not None else self.keep_fraction
        return semantic_selection(dendro, vectors, threshold=self.distance, keep_fraction=keep,
                                  per_class=self.per_class, policy=self.policy, seed=self.embedding.seed)

    def describe(self) -> str:
        cut = (f"clusters cut at cosine distance {self.distance:g}" if self.distance is not None
               else f"keep {self.keep_fraction:.2f} of the training set" + (" in every class" * self.per_class))
        return f"{self.embedding.model} embedding, {cut}, representative: {self.policy}"


@dataclass(frozen=True)
class TrainingSettings:
    """The retraining: a recipe by name ("" the dataset's converged default), its epochs (0 its own), the budget
    (steps: every subset trains the full set's number of steps; epochs: the recipe's epochs over the subset),
    and the precision ("" the recipe's)."""

    recipe: str = ""
    epochs: float = 0
    budget: str = DEFAULT_BUDGET
    precision: str = ""

    def __post_init__(self) -> None:
        if self.recipe:
            recipes.get(self.recipe)
        if self.budget not in BUDGETS:
            raise ValueError(f"unknown budget {self.budget!r}: must be one of {', '.join(BUDGETS)}")
        if self.precision and self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        if self.epochs < 0:
            raise ValueError("epochs must be 0 (the recipe's) or more")

    def recipe_for(self, ds: Dataset, device: str | None = None) -> AnyRecipe:
        """The recipe these settings train by on `ds`."""
        from core.data.device import pick_device

        h, w, c = ds.image_shape
        name = self.recipe or recipes.default_name(int((ds.split == TRAIN).sum()), min(h, w), c,
                                                   device or pick_device())
        return recipes.with_precision(recipes.with_epochs(recipes.get(name), self.epochs), self.precision)

    def describe(self, ds: Dataset) -> str:
        return recipes.describe(self.recipe_for(ds), self.budget)


@dataclass(frozen=True)
class Settings:
    """Everything a user sets, by computation."""

    dataset: str = "digits"  # a spec for core.data.datasets.load_dataset
    near_dup: NearDupSettings = field(default_factory=NearDupSettings)
    semantic: SemanticSettings = field(default_factory=SemanticSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def resolved(self, ds: Dataset) -> Settings:
        """These settings with every 'auto' made concrete for `ds`."""
        possible = ds.missing_pixels("the pair score") is None or has_candidates(ds)
        return replace(self, near_dup=self.near_dup.resolved(min(ds.image_shape[:2]), possible))

    def describe(self, ds: Dataset) -> list[tuple[str, str]]:
        """(setting, value) for every setting the figures depend on, for the report and the export manifest."""
        s = self.resolved(ds)
        return [("dataset", s.dataset), ("near-duplicate method", s.near_dup.describe()),
                ("semantic redundancy", s.semantic.describe()), ("retraining", s.training.describe(ds))]
