"""Experiments: retrain on the pruned subsets against random subsets of the same size; the papers' figure
(test accuracy against the fraction kept) and the one this product adds: semantic − random against the
training budget, which decides the verdict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.device import describe
from core.features import recipes
from core.features.training import BUDGETS
from core.pipelines.evidence import EvidenceConfig, budget_curve, differences, per_class_costs, where_it_turns
from core.pipelines.experiments import (
    METHODS,
    ArmResult,
    ExperimentConfig,
    Subsets,
    cached_results,
    plan,
    run_sweep,
    sweep_steps,
)
from ui import data
from ui.common import open_dataset, ready, text
from ui.state import ensure_state, settings
from ui.steps import experiment_registry, job_row

SWEEP = (1.0, 0.9, 0.7, 0.5)
SHOWN_SEEDS = 10  # cached runs of up to this many seeds are shown (the evidence sweep's among them)
COLORS = {"full": "#444444", "semantic": "#1f77b4", "hash": "#ff7f0e", "random": "#7f7f7f"}
BUDGET_TEXT = {"steps": "equal steps (do the images matter?)", "epochs": "equal epochs (compute saved)"}

ensure_state()
st.title("Experiments")
st.caption("Every arm trains by the same recipe, budget and seed; only the data differ. Results are cached, so a "
           "curve grows point by point and nothing is trained twice.")
ds = open_dataset()
reason = ds.missing_pixels("Retraining")
if reason:
    st.info(f"{reason}. Or export the pruned subset (Export) and train on it.", icon=":material/info:")
    st.stop()
registry = experiment_registry()
if st.session_state["retrain_on_change"] is None:
    st.session_state["retrain_on_change"] = True

c1, c2, c3 = st.columns([2, 2, 1])
default_name = recipes.name_of(dataclasses.replace(settings().training, recipe="").recipe_for(ds))
c1.selectbox("Recipe", ["", *recipes.PRESETS], key="train_recipe",
             format_func=lambda n: n or f"converged default ({default_name})")
c2.radio("Budget", BUDGETS, key="train_budget", horizontal=True, format_func=BUDGET_TEXT.get,
         help="Equal steps: every subset trains the full set's number of optimizer steps, so the arms differ only "
              "in the images they see. Equal epochs: a subset trains the recipe's epochs over itself, fewer steps.")
c3.number_input("Seeds", 1, 10, key="exp_seeds", help="Seeds of Retrain and Sweep (the slider trains one)")
s = settings().resolved(ds)
recipe = s.training.recipe_for(ds)
methods = tuple(m for m in st.session_state["exp_methods"] if m in METHODS) or ("semantic", "random")


def config(fractions: tuple[float, ...], seeds: int) -> ExperimentConfig:
    return ExperimentConfig(methods=methods, fractions=fractions, seeds=seeds, recipe=recipe, budget=s.training.budget,
                            hash=s.near_dup.hash, embed=s.semantic.embedding)


def queue(fractions: tuple[float, ...], seeds: int, group: str, label: str) -> None:
    """Queue the arms; a newer slider position supersedes queued older ones."""
    cfg = config(fractions, seeds)
    key = f"exp:{ds.fingerprint}:{dataclasses.asdict(cfg)}"

    def work(job):  # type: ignore[no-untyped-def]
        return run_sweep(ds, cfg, on_progress=job.progress, stop=job.stop)

    registry.submit(key, work, group=group, label=label)


def on_slider() -> None:
    keep = float(st.session_state["keep_fraction"])
    if st.session_state["retrain_on_change"] and keep < 1:
        queue((1.0, keep), 1, f"slider:{ds.fingerprint}", f"keep {keep:.2f}: {' and '.join(methods)}, seed 0")


keep = float(st.session_state["keep_fraction"])
seeds = int(st.session_state["exp_seeds"])
st.slider("Keep this fraction of the training set", 0.05, 1.0, step=0.01, key="keep_fraction", on_change=on_slider)
b1, b2, b3 = st.columns([1, 1, 2])
if b1.button(f"Retrain at {keep:.2f} ({seeds} seed{'s' * (seeds > 1)})", key="exp_retrain", type="primary"):
    queue((1.0, keep), seeds, "", f"keep {keep:.2f}: {' and '.join(methods)}, {seeds} seeds")
if b2.button(f"Sweep {', '.join(map(str, SWEEP[1:]))}", key="exp_sweep"):
    queue(SWEEP, seeds, "", f"sweep {', '.join(map(str, SWEEP[1:]))}, {seeds} seeds")
b3.toggle("Retrain when the slider is let go", key="retrain_on_change",
          help="Trains the semantic and random arms at the new fraction, one seed, in the background")
b3.multiselect("Methods", list(METHODS), key="exp_methods", label_visibility="collapsed")


@st.fragment(run_every=1.0 if registry.active() else None)
def progress_panel() -> None:
    for job in registry.jobs()[-6:]:
        if job.active:
            registry.touch(job.key)  # this page shows it: it goes first
            job_row(job, registry, key_prefix="exp")
        else:
            st.caption(f"{job.label}: {job.status}" + (f" ({job.error})" if job.error else ""))
    if not registry.active() and st.session_state.get("_had_active"):
        st.session_state["_had_active"] = False
        st.rerun()
    st.session_state["_had_active"] = bool(registry.active())


progress_panel()
emb = ready(data.embeddings(ds, s.semantic.embedding.model))  # the subsets need the embedding and the dendrograms
ready(data.dendrograms(ds, emb))
subsets = Subsets(ds, config((), 1))  # one per run: the semantic index is loaded once for results and costs
found: list[ArmResult] = cached_results(ds, config(tuple(sorted({*SWEEP, keep}, reverse=True)), SHOWN_SEEDS),
                                        subsets=subsets)
timed = [r for r in found if r.steps and not np.isnan(r.seconds)]
per_step = float(np.median([r.seconds / r.steps for r in timed])) if timed else None
arms_now = plan(config((1.0, keep), 1))
eta = "" if per_step is None else f", about {per_step * sweep_steps(ds, config((1.0, keep), 1), arms_now) / 60:.0f} " \
                                  "min if none is cached (from the cached runs' pace)"
st.caption(f"Recipe: {s.training.describe(ds)}; on {describe()}. The slider's setting: {len(arms_now)} runs{eta}.")

if not found:
    st.info("No result yet for this recipe and budget: let go of the slider, or press **Retrain** or **Sweep**.")
    st.stop()
frame = pd.DataFrame([dataclasses.asdict(r) for r in found])
summary = frame.groupby(["method", "fraction"], as_index=False).agg(
    kept_fraction=("kept_fraction", "first"), n_train=("n_train", "first"), seeds=("seed", "count"),
    mean=("accuracy", "mean"), sd=("accuracy", "std"), seconds=("seconds", "mean"), budget=("budget", "first"),
    recipe=("recipe", "first"), device=("device", "first")).fillna({"sd": 0.0})
fig = go.Figure()
full = summary[summary.method == "full"]
if len(full):
    mean, sd = float(full["mean"].iloc[0]), float(full["sd"].iloc[0])
    fig.add_hrect(y0=100 * (mean - sd), y1=100 * (mean + sd), fillcolor="#999999", opacity=0.25, line_width=0)
    fig.add_hline(y=100 * mean, line_dash="dot", line_color=COLORS["full"],
                  annotation_text=f"full data {100 * mean:.2f}%")
for method in METHODS:
    part = summary[summary.method == method].sort_values("kept_fraction")
    if len(part):
        fig.add_trace(go.Scatter(x=part.kept_fraction, y=100 * part["mean"], mode="lines+markers", name=method,
                                 error_y=dict(type="data", array=100 * part.sd), line=dict(color=COLORS[method])))
fig.update_layout(height=400, xaxis_title="fraction of the training set kept", yaxis_title="test accuracy (%)",
                  margin=dict(l=10, r=10, t=10, b=10))
st.plotly_chart(fig, key="exp_chart")
show = summary.assign(accuracy=[f"{100 * m:.2f} ± {100 * d:.2f}" for m, d in zip(summary["mean"], summary.sd)])
st.dataframe(show[["method", "fraction", "kept_fraction", "n_train", "seeds", "accuracy", "seconds", "recipe",
                   "budget", "device"]], hide_index=True, key="exp_table", width="stretch")

st.subheader("What the data say")
st.caption("Arms that share a seed share the initial weights and every image's augmentation, so the difference "
           "is read seed by seed; the interval is a 95% t interval over the seeds both arms ran.")
for d in differences(found):
    st.markdown(f"- {d.sentence()}")
if not differences(found):
    st.info("Retrain the semantic and random arms at a fraction to see their paired difference.")

points = budget_curve(ds, EvidenceConfig(embed=s.semantic.embedding, training=s.training))
if points:
    st.subheader("The training budget decides the verdict")
    chart = go.Figure()
    for f in sorted({d.fraction for p in points for d in p.differences}, reverse=True):
        at = [(p, d) for p in points for d in p.differences if abs(d.fraction - f) < 1e-9]
        chart.add_trace(go.Scatter(
            x=[100 * p.full_accuracy for p, _ in at], y=[100 * d.mean for _, d in at], mode="lines+markers",
            name=f"keep {f:.2f}", text=[text(p.label) for p, _ in at],
            error_y=dict(type="data", symmetric=False, array=[100 * (d.high - d.mean) if d.n > 1 else 0 for _, d in at],
                         arrayminus=[100 * (d.mean - d.low) if d.n > 1 else 0 for _, d in at]),
            hovertemplate="%{text}: full set %{x:.1f}%, semantic − random %{y:+.2f} points"))
    chart.add_hline(y=0, line_color="#999999")
    chart.update_layout(height=340, xaxis_title="full-set test accuracy of the budget (%): how far training converges",
                        yaxis_title="semantic − random (points)", margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(chart, key="exp_budget")
    st.caption(where_it_turns(points))

costs = [] if keep >= 1 else [c for c in per_class_costs(ds, found, EvidenceConfig(fractions=(keep,), seeds=1),
                                                          subsets) if np.isfinite(c["semantic"])]
if costs:
    st.subheader(f"Which classes pay, at keep {keep:.2f}")
    per = pd.DataFrame(costs)
    bars = go.Figure()
    for method in ("semantic", "random"):
        bars.add_trace(go.Bar(x=[text(c) for c in per["class"]], y=100 * per[method], name=method,
                              marker_color=COLORS[method], customdata=100 * per["removed"],
                              hovertemplate="%{x}: %{y:+.2f} points, %{customdata:.1f}% of the class removed"))
    bars.update_layout(barmode="group", height=300, yaxis_title="change in test accuracy (points)",
                       margin=dict(l=10, r=10, t=10, b=10), xaxis_type="category")
    st.plotly_chart(bars, key="exp_per_class")
    st.caption("Mean change of each class's test accuracy against the full set, paired by seed. Random removes the "
               "same share of every class as semantic, so the bars differ only in which images went.")
