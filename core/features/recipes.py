"""Every training recipe by name, and which one a dataset and device get by default.

The airbench94 presets differ only in widths, epochs and, for small gray images, batch and
augmentation (core.features.training.Recipe); the former one-cycle recipes (core.features.onecycle.TrainConfig) keep
their names so that results cached by them, and the sweeps written with them, still read.
Measured accuracies and times: docs/RESULTS.md and docs/BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import replace

from core.features.onecycle import TrainConfig
from core.features.training import Recipe

AnyRecipe = Recipe | TrainConfig

PRESETS: dict[str, AnyRecipe] = {
    # airbench94 at its own widths: the GPU recipe (about 10 epochs, a few seconds there)
    "airbench-cuda": Recipe(widths=(64, 256, 256), epochs=10),
    # the CPU preset: narrower last blocks, the whole recipe otherwise (89.1% on the JPEG CIFAR-10 copy in
    # about 5 minutes on 2 cores with bf16; docs/RESULTS.md)
    "airbench-cpu": Recipe(widths=(64, 128, 128), epochs=10),
    # the embedding network on a CPU: longer, since one network serves every semantic cut (89.4%, about 6 minutes)
    "airbench-embed-cpu": Recipe(widths=(64, 128, 128), epochs=12),
    # MNIST-sized gray sets (28x28, tens of thousands of images): no mirror (it changes a digit)
    "airbench-gray": Recipe(widths=(32, 64, 128), epochs=6, flip=False, tta=0),
    # digits-sized sets (a few thousand images of 8-16 px): small batches, so an epoch has several steps;
    # 99.0 ± 0.1% on digits in under 2 s a run on one core
    "airbench-small": Recipe(widths=(32, 64, 64), epochs=15, batch_size=128, flip=False, tta=0, translate=1),
    # the former one-cycle recipes, by the names their results were computed under
    "onecycle-cpu": TrainConfig(arch="airnet-small", epochs=4, batch_size=512, lr=0.4),
    "onecycle-cuda": TrainConfig(arch="auto", epochs=30, batch_size=512, lr=0.4),
    "onecycle-small": TrainConfig(arch="cnn", epochs=8, batch_size=64, lr=0.05),
}

SMALL_SET = 10_000  # training images at or under which a set counts as digits-sized


def get(name: str) -> AnyRecipe:
    """The recipe called `name`, or a ValueError listing the names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}: must be one of {', '.join(PRESETS)}") from None


def default_name(n_train: int, side: int, channels: int, device: str) -> str:
    """The converged retraining recipe for a set of `n_train` images of `side` pixels on `device`."""
    if n_train <= SMALL_SET:
        return "airbench-small"
    if channels == 1 or side < 24:
        return "airbench-gray"
    return "airbench-cuda" if device == "cuda" else "airbench-cpu"


def embedding_name(n_train: int, side: int, channels: int, device: str) -> str:
    """The recipe of the embedding network: the retraining default, but the wider CPU network on a CPU."""
    name = default_name(n_train, side, channels, device)
    return "airbench-embed-cpu" if name == "airbench-cpu" else name


def name_of(recipe: AnyRecipe) -> str:
    """The preset a recipe is (up to its seed and epochs), e.g. 'airbench-cpu' or 'airbench-cpu, 4 epochs'."""
    for name, preset in PRESETS.items():
        if type(preset) is type(recipe) and replace(preset, seed=recipe.seed) == recipe:  # type: ignore[type-var]
            return name
    for name, preset in PRESETS.items():
        if type(preset) is type(recipe) and with_epochs(replace(preset, seed=recipe.seed), recipe.epochs) == recipe:
            return f"{name}, {recipe.epochs:g} epochs"
    if isinstance(recipe, Recipe):
        for name, preset in PRESETS.items():
            if isinstance(preset, Recipe) and replace(preset, seed=recipe.seed, epochs=recipe.epochs,
                                                      precision=recipe.precision) == recipe:
                epochs = f", {recipe.epochs:g} epochs" if recipe.epochs != preset.epochs else ""
                return f"{name}{epochs}, {recipe.precision}"
    return "custom recipe"


def with_epochs(recipe: AnyRecipe, epochs: float) -> AnyRecipe:
    """The same recipe run for another number of epochs (a shorter budget); 0 keeps it."""
    if not epochs:
        return recipe
    if isinstance(recipe, TrainConfig):
        return replace(recipe, epochs=int(epochs))
    return replace(recipe, epochs=float(epochs))


def with_precision(recipe: AnyRecipe, precision: str) -> AnyRecipe:
    """The same airbench recipe in another precision ("" keeps it); the one-cycle recipes have their own rule."""
    if not precision or precision == getattr(recipe, "precision", precision):
        return recipe
    if isinstance(recipe, TrainConfig):
        raise ValueError("the one-cycle recipes set their precision by device (float32 on a CPU, bf16 on CUDA)")
    return replace(recipe, precision=precision)


def describe(recipe: AnyRecipe, budget: str) -> str:
    """One sentence: the recipe's name and settings and how long a subset trains under `budget`."""
    name = name_of(recipe)
    if isinstance(recipe, TrainConfig):
        return (f"{name}: {recipe.arch}, {recipe.epochs} epochs, batch {recipe.batch_size}, one-cycle peak lr "
                f"{recipe.lr}, label smoothing {recipe.label_smoothing}, flip + translate; every subset trains the "
                "same epochs (budget epochs: a smaller subset takes fewer steps)")
    widths = "/".join(map(str, recipe.widths))
    aug = ("alternating flips, " if recipe.flip else "") + f"{recipe.translate}-pixel translations"
    tta = {0: "no test-time augmentation", 1: "mirror test-time augmentation",
           2: "mirror and translate test-time augmentation"}[recipe.tta]
    length = ("every subset trains the full set's number of optimizer steps (budget steps)" if budget == "steps"
              else "every subset trains the recipe's epochs over its own images (budget epochs)")
    return (f"{name}: airbench94's recipe at widths {widths}, {recipe.epochs:g} epochs of the full set, batch "
            f"{recipe.batch_size}, {aug}, {tta}, lookahead, precision {recipe.precision}; {length}")
