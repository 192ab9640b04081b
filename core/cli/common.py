"""What every command shares: the progress bars, loading the dataset, and the options that build `Settings`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

from core.data import cache
from core.data.datasets import Dataset, load_dataset
from core.data.types import Progress, ProgressFn
from core.features import recipes
from core.features.embedding import MODELS, EmbedConfig
from core.features.hashing import HASH_SIZES, METHODS, HashConfig
from core.features.training import BUDGETS, PRECISIONS
from core.pipelines.settings import (
    AUTO,
    DUP_METHODS,
    NearDupSettings,
    SemanticSettings,
    Settings,
    TrainingSettings,
)
from core.selections.duplicates import KEEP_RULES
from core.selections.semantic import POLICIES

T = TypeVar("T")
DEFAULTS = Settings()


class TqdmProgress:
    """Renders Progress reports as one tqdm bar per phase, on stderr."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm[Any]] = {}

    def __call__(self, p: Progress) -> None:
        bar = self._bars.get(p.phase)
        if bar is None:
            bar = self._bars[p.phase] = tqdm(total=p.total or None, desc=p.phase, file=sys.stderr, leave=False)
        if p.message:
            bar.set_postfix_str(p.message[:60], refresh=False)
        bar.update(p.done - bar.n)  # tqdm throttles the redraws itself
        if p.total and p.done >= p.total:
            bar.close()
            del self._bars[p.phase]


def timed(label: str, fn: Callable[[], T], disk_cached: bool = True) -> T:
    """Run one step, printing its time and (for disk-cached steps) whether it came from the cache."""
    t0, misses = time.perf_counter(), cache.stats.misses
    out = fn()
    status = (" (computed)" if cache.stats.misses > misses else " (from cache)") if disk_cached else ""
    print(f"{label}: {time.perf_counter() - t0:.2f} s{status}")
    return out


def load(args: argparse.Namespace, progress: ProgressFn) -> Dataset:
    ds = timed("load", lambda: load_dataset(args.dataset, download=args.download, image_size=args.image_size,
                                            on_progress=progress))
    counts = ds.counts()
    print(f"dataset {ds.name}: {len(ds):,} images {ds.image_shape}, {len(ds.classes)} classes, "
          f"train {sum(counts['train'].values()):,}, test {sum(counts['test'].values()):,}, "
          f"skipped {len(ds.skipped)}")
    for s in ds.skipped[:20]:
        print(f"  skipped {s.path}: {s.reason}")
    if len(ds.skipped) > 20:
        print(f"  ... and {len(ds.skipped) - 20} more skipped files")
    return ds


def fractions(text: str) -> tuple[float, ...]:
    return tuple(float(f) for f in text.split(",") if f.strip())


class _Renamed(argparse.Action):
    """An old spelling of an option: still accepted, with a note naming the one that replaces it."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def renamed(p: argparse.ArgumentParser, old: str, new: str, dest: str, type: Callable[[str], Any] = str) -> None:
    p.add_argument(old, dest=dest, action=_Renamed, new=new, type=type, help=argparse.SUPPRESS)


# --- options, each with the one default Settings holds ---------------------------------------------------


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=DEFAULTS.dataset,
                   help="digits | cifar10:ROOT | ... | imagefolder:PATH | scale:FOLDER")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    p.add_argument("--image-size", type=int, default=None, help="resize image-folder images to this square side")


def add_hash_method(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=DEFAULTS.near_dup.hash.method, choices=METHODS, help="the perceptual hash")
    p.add_argument("--hash-size", type=int, default=DEFAULTS.near_dup.hash.hash_size, choices=HASH_SIZES)


def add_radius(p: argparse.ArgumentParser) -> None:
    p.add_argument("--radius", type=int, default=DEFAULTS.near_dup.radius,
                   help="Hamming radius: pairs at most this many bits apart are near-duplicates")
    renamed(p, "--threshold", "--radius", "radius", int)


def _dup_method(text: str) -> str:
    value = text.replace("-", " ")
    if value not in (*DUP_METHODS, AUTO):
        raise argparse.ArgumentTypeError(f"must be one of pair-score, hash, auto (got {text!r})")
    return value


def add_near_dup(p: argparse.ArgumentParser) -> None:
    """The near-duplicate method and its parameters (the Near-duplicates page's settings)."""
    p.add_argument("--dup-method", type=_dup_method, default=DEFAULTS.near_dup.method,
                   help="pair-score (candidates and their pair score, judged pairs as judged), hash (CE-Dedup), or "
                        "auto: the pair score for images of 16 px and more, else hashes")
    p.add_argument("--min-score", type=float, default=DEFAULTS.near_dup.min_score,
                   help="pair score: unjudged pairs at or above it are near-duplicates")
    add_hash_method(p)
    add_radius(p)
    p.add_argument("--keep-rule", default=DEFAULTS.near_dup.keep_rule, choices=KEEP_RULES,
                   help="hash: which image of a group stays")
    renamed(p, "--keep", "--keep-rule", "keep_rule")


def add_embedding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding", default=DEFAULTS.semantic.embedding.model, choices=MODELS,
                   help="trained: the paper's own-classifier features")
    p.add_argument("--epochs", type=int, default=DEFAULTS.semantic.embedding.epochs,
                   help="epochs for the trained embedding (0: its recipe's)")
    p.add_argument("--seed", type=int, default=DEFAULTS.semantic.embedding.seed)


def add_semantic(p: argparse.ArgumentParser) -> None:
    add_embedding(p)
    p.add_argument("--keep-fraction", type=float, default=DEFAULTS.semantic.keep_fraction,
                   help="keep this fraction of the training set")
    p.add_argument("--distance", type=float, default=None, help="or: cut clusters at this cosine distance")
    p.add_argument("--per-class", action="store_true", help="keep the fraction within every class")
    p.add_argument("--policy", default=DEFAULTS.semantic.policy, choices=POLICIES,
                   help="which member represents a cluster")


def add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=DEFAULTS.training.recipe, choices=["", *recipes.PRESETS],
                   help="the training recipe by name (default: the converged one for the dataset and device)")
    p.add_argument("--train-epochs", type=float, default=DEFAULTS.training.epochs,
                   help="run the recipe this many epochs (0: its own)")
    p.add_argument("--precision", default=DEFAULTS.training.precision, choices=["", *PRECISIONS],
                   help="airbench recipes: bf16 or float32 (default: the recipe's, auto: bf16 where native)")
    p.add_argument("--budget", default=DEFAULTS.training.budget, choices=BUDGETS,
                   help="steps: every subset trains the full set's optimizer steps (default); epochs: the recipe's "
                        "epochs over the subset (the compute pruning saves)")


def settings(args: argparse.Namespace) -> Settings:
    """The Settings these arguments give; an option a command does not take keeps its default."""
    a = vars(args)
    d = DEFAULTS

    def get(name: str, default: Any) -> Any:
        return a.get(name, default) if a.get(name) is not None else default

    hash_cfg = HashConfig(get("method", d.near_dup.hash.method), get("hash_size", d.near_dup.hash.hash_size))
    near = NearDupSettings(method=get("dup_method", d.near_dup.method),
                           min_score=get("min_score", d.near_dup.min_score), hash=hash_cfg,
                           radius=get("radius", d.near_dup.radius), keep_rule=get("keep_rule", d.near_dup.keep_rule))
    embed = EmbedConfig(model=get("embedding", d.semantic.embedding.model), epochs=get("epochs", 0),
                        seed=get("seed", 0))
    semantic = SemanticSettings(embed, keep_fraction=get("keep_fraction", d.semantic.keep_fraction),
                                distance=a.get("distance"), per_class=bool(a.get("per_class", False)),
                                policy=get("policy", d.semantic.policy))
    training = TrainingSettings(recipe=get("recipe", ""), epochs=get("train_epochs", 0),
                                budget=get("budget", d.training.budget), precision=get("precision", ""))
    return Settings(get("dataset", d.dataset), near, semantic, training)
