"""Commands that retrain: experiment (a sweep of methods and fractions) and evidence (the paired proof)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.cli.common import DEFAULTS, add_dataset, add_training, fractions, load, renamed, settings, timed
from core.data.device import pick_device
from core.data.types import ProgressFn
from core.features import recipes
from core.features.embedding import EmbedConfig, embed
from core.pipelines.evidence import ARMS as EVIDENCE_ARMS
from core.pipelines.evidence import (
    BUDGET_CURVE,
    DEFAULT_ARMS,
    EvidenceConfig,
    against_default_embedding,
    budget_curve,
    differences,
    render,
    run_evidence,
    where_it_turns,
    write_budget,
    write_section,
)
from core.pipelines.experiments import (
    DEFAULT_FRACTIONS,
    ArmResult,
    ExperimentConfig,
    arm_budget,
    plan,
    run_sweep,
    seconds_per_step,
    summarize,
    sweep_steps,
)
from core.pipelines.experiments import write_results as write_experiment_results


def show_run(r: ArmResult) -> None:
    print(f"  seed {r.seed} {r.method:>11} keep {r.fraction:.2f} (real {r.kept_fraction:.4f}, {r.n_train:,} images): "
          f"{100 * r.accuracy:.2f}% in {r.seconds:.1f} s" + (" (cached)" * r.from_cache), flush=True)


def cmd_experiment(args: argparse.Namespace, progress: ProgressFn) -> int:
    ds = load(args, progress)
    s = settings(args)
    recipe = s.training.recipe_for(ds)
    cfg = ExperimentConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                           fractions=fractions(args.keep_fractions), seeds=args.seeds, recipe=recipe,
                           budget=s.training.budget, hash=s.near_dup.hash, embed=s.semantic.embedding)
    arms = plan(cfg)
    estimate = seconds_per_step(ds, recipe) * sweep_steps(ds, cfg, arms)
    print(f"recipe: {recipes.describe(recipe, arm_budget(recipe, cfg.budget))}")
    print(f"{len(arms)} arms; estimated {estimate / 60:.1f} min if none is cached")
    results = run_sweep(ds, cfg, arms=arms, on_progress=progress, on_result=show_run)
    rows = summarize(results)
    print(f"{'method':>8} {'keep':>5} {'real':>7} {'n':>7} {'seeds':>5} {'accuracy':>16} {'s/run':>7}")
    for r in rows:
        print(f"{r['method']:>8} {r['fraction']:>5.2f} {r['kept_fraction']:>7.4f} {r['n_train']:>7,} {r['seeds']:>5} "
              f"{100 * r['accuracy_mean']:>8.2f} ± {100 * r['accuracy_std']:>5.2f} {r['seconds_mean']:>7.1f}")
    for d in differences(results):
        print(d.sentence())
    if args.out:
        js, table = write_experiment_results(args.out, ds, recipe, results, cfg.budget)
        print(f"wrote {table} and {js}")
    return 0


def cmd_evidence(args: argparse.Namespace, progress: ProgressFn) -> int:
    """The paired many-seed sweep; prints each run and the paired verdicts, and rewrites a RESULTS.md section."""
    ds = load(args, progress)
    embed_cfg = EmbedConfig(arch=args.embedding_arch, epochs=args.embedding_epochs)
    cfg = EvidenceConfig(fractions=fractions(args.keep_fractions), hash_fraction=args.hash_keep_fraction,
                         seeds=args.seeds, arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
                         embed=embed_cfg, training=settings(args).training)
    emb = timed("embedding network + embeddings", lambda: embed(ds, embed_cfg, on_progress=progress))
    print(f"embedding: {emb.info.get('recipe', emb.info.get('arch'))}, "
          f"test accuracy {100 * emb.info.get('test_accuracy', float('nan')):.2f}%")
    print(f"recipe: {recipes.describe(cfg.training_recipe(ds), cfg.budget)}")
    t0 = time.perf_counter()
    results = run_evidence(ds, cfg, on_result=show_run, on_progress=progress)
    if args.curve_seeds:  # the shorter budgets of the curve, after the sweep itself
        for training in BUDGET_CURVE:
            at = replace(cfg, training=training, seeds=args.curve_seeds, arms=DEFAULT_ARMS)
            if at.training_recipe(ds) != cfg.training_recipe(ds) or at.budget != cfg.budget:
                print(f"budget curve: {recipes.describe(at.training_recipe(ds), at.budget)}")
                run_evidence(ds, at, on_result=show_run, on_progress=progress)
    wall = time.perf_counter() - t0
    for d in differences(results):
        print(d.sentence())
    other = embed_cfg != EmbedConfig()
    against = against_default_embedding(ds, results, cfg) if other else []
    for d in against:
        print(d.sentence())
    if args.write:
        command = "python -m core evidence " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        body = render(ds, results, cfg, command=command, embedding=emb.info, wall_seconds=wall)
        if against:
            body += ("\nAgainst the default embedding (semantic with this network minus semantic with the default "
                     "one, seed by seed, same recipe):\n\n" + "\n".join(f"- {d.sentence()}" for d in against) + "\n")
        device, label = pick_device(), Path(ds.name.partition(":")[2] or ds.name).name  # not the machine's path
        name, title = f"{label}:{device}", f"{label}: the paired sweep on {device}"
        default = replace(cfg, training=replace(cfg.training, recipe="", epochs=0, precision="", budget="steps"))
        variant = cfg.training_recipe(ds) != default.training_recipe(ds) or cfg.budget != default.budget
        if variant:  # its own section: a shorter or older recipe never replaces the converged one
            tag = recipes.name_of(cfg.training_recipe(ds))
            name += ":" + "-".join(tag.replace(",", "").split()) + f":{cfg.budget}"
            title += f", {tag}, equal {cfg.budget}"
        if other:
            arch = emb.info.get("arch")
            name, title = f"{name}:{arch}-{emb.info.get('epochs')}", f"{title}, semantic subset from {arch}"
        write_section(Path(args.write), name, title, body)
        print(f"wrote the {label} ({device}) section of {args.write}")
        if not other and not variant:
            points = budget_curve(ds, cfg)
            chart = write_budget(Path(args.write), f"{label}:{device}:budget",
                                 f"{label}: the budget that decides the verdict on {device}", points)
            if chart is not None:
                print(f"wrote the budget chart {chart}")
            print(where_it_turns(points))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("experiment", help="retrain on pruned and random subsets; accuracy vs fraction kept")
    add_dataset(p)
    p.add_argument("--methods", default="semantic,hash,random")
    p.add_argument("--keep-fractions", default=",".join(map(str, DEFAULT_FRACTIONS)),
                   help="keep fractions, comma-separated")
    renamed(p, "--keep", "--keep-fractions", "keep_fractions")
    p.add_argument("--seeds", type=int, default=ExperimentConfig().seeds)
    add_training(p)
    p.add_argument("--out", help="folder for results.csv and results.json")
    p.set_defaults(fn=cmd_experiment)
    p = sub.add_parser("evidence", help="the paired many-seed sweep: semantic (and hash) against random, per class")
    add_dataset(p)
    p.add_argument("--keep-fractions", default=",".join(map(str, EvidenceConfig().fractions)),
                   help="keep fractions for semantic and random, comma-separated")
    renamed(p, "--keep", "--keep-fractions", "keep_fractions")
    p.add_argument("--hash-keep-fraction", type=float, default=EvidenceConfig().hash_fraction,
                   help="keep fraction for the hash arm")
    renamed(p, "--hash-keep", "--hash-keep-fraction", "hash_keep_fraction", float)
    p.add_argument("--seeds", type=int, default=EvidenceConfig().seeds)
    p.add_argument("--arms", default=",".join(EvidenceConfig().arms), help="which arms to run, comma-separated: "
                   f"{', '.join(EVIDENCE_ARMS)}")
    add_training(p)
    p.add_argument("--embedding-arch", default=DEFAULTS.semantic.embedding.arch,
                   help="the network behind the semantic subset (auto: the default for the dataset)")
    p.add_argument("--embedding-epochs", type=int, default=DEFAULTS.semantic.embedding.epochs,
                   help="its epochs (0: the default)")
    p.add_argument("--curve-seeds", type=int, default=0,
                   help="also train the budget curve's shorter budgets (the former 4-epoch recipe, the recipe at 2 "
                        "and 4 epochs) with this many seeds; 0: only draw what is cached")
    p.add_argument("--write", help="a markdown file whose section for this dataset and device is rewritten")
    p.set_defaults(fn=cmd_evidence)
