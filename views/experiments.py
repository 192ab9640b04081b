"""Experiments: retrain on the pruned subsets against random subsets of the same size, and draw
the papers' figure live: test accuracy against the fraction of the training set kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import recipes
from core.datasets import TRAIN, Dataset
from core.device import describe
from core.evidence import EvidenceConfig, differences, per_class_costs
from core.experiments import (
    DEFAULT_FRACTIONS,
    METHODS,
    ArmResult,
    ExperimentConfig,
    Subsets,
    cached_results,
    default_recipe,
    plan,
    run_sweep,
    summarize,
    sweep_steps,
)
from ui import data
from ui.common import open_dataset, ready, text
from ui.state import ensure_state
from ui.steps import experiment_registry, job_row

SWEEP = DEFAULT_FRACTIONS
COLORS = {"full": "#444444", "semantic": "#1f77b4", "hash": "#ff7f0e", "random": "#7f7f7f"}

ensure_state()
st.title("Experiments")
st.caption("Every arm uses the same recipe and seeds; only the data differ. Results are cached, so a curve "
           "grows point by point and nothing is trained twice.")
ds = open_dataset()
if not ds.in_memory:
    st.info("Retraining needs every training image decoded on this machine, and this Ray result folder reads its "
            "images on demand. Export the pruned subset (Export page) and train on it, or open the source itself "
            "as the dataset (Home).", icon=":material/info:")
    st.stop()
n_train = int((ds.split == TRAIN).sum())
if st.session_state["retrain_on_change"] is None:
    st.session_state["retrain_on_change"] = n_train <= 10_000
registry = experiment_registry()

c1, c2, c3 = st.columns([2, 1, 1])
c1.multiselect("Methods", list(METHODS), key="exp_methods")
c2.number_input("Seeds", 1, 10, key="exp_seeds")
c3.number_input("Epochs (0: the recipe's)", 0, 200, key="exp_epochs")
recipe = default_recipe(ds)
if int(st.session_state["exp_epochs"]):
    recipe = dataclasses.replace(recipe, epochs=int(st.session_state["exp_epochs"]))


def config(fractions: tuple[float, ...]) -> ExperimentConfig:
    methods = tuple(m for m in st.session_state["exp_methods"] if m in METHODS) or ("semantic",)
    return ExperimentConfig(methods=methods, fractions=fractions, seeds=int(st.session_state["exp_seeds"]),
                            recipe=recipe)


def queue(fractions: tuple[float, ...], group: str) -> None:
    """Queue the arms for `fractions`; a newer slider position supersedes queued older ones."""
    cfg = config(fractions)
    key = f"exp:{ds.fingerprint}:{dataclasses.asdict(cfg)}"

    def work(job):  # type: ignore[no-untyped-def]
        return run_sweep(ds, cfg, on_progress=job.progress, stop=job.stop)

    registry.submit(key, work, group=group, label=f"keep {', '.join(f'{f:.2f}' for f in fractions)}")


def on_slider() -> None:
    if st.session_state["retrain_on_change"]:
        queue((1.0, float(st.session_state["keep_fraction"])), group=f"slider:{ds.fingerprint}")


st.slider("Keep this fraction of the training set", 0.05, 1.0, step=0.01, key="keep_fraction", on_change=on_slider)
b1, b2, b3 = st.columns([1, 1, 2])
if b1.button("Retrain at this setting", key="exp_retrain", type="primary"):
    queue((1.0, float(st.session_state["keep_fraction"])), group="")
if b2.button(f"Sweep {', '.join(map(str, SWEEP))}", key="exp_sweep"):
    queue(SWEEP, group="")
b3.toggle("Retrain when the slider is let go", key="retrain_on_change")


arms_now = plan(config((1.0, float(st.session_state["keep_fraction"]))))
speed = data.training_speed(ds, recipe)
minutes = None if speed is None else speed * sweep_steps(ds, config(()), arms_now) / 60
eta = "" if minutes is None else f", about {minutes:.0f} min if none is cached"
st.caption(f"Recipe: {recipes.describe(recipe, 'steps')}, on {describe()}. "
           f"This setting: {len(arms_now)} runs{eta}.")


@st.fragment(run_every=1.0 if registry.active() else None)
def progress_panel() -> None:
    for job in registry.jobs()[-6:]:
        if job.active:
            job_row(job, registry, key_prefix="exp")
        else:
            st.caption(f"{job.label}: {job.status}" + (f" ({job.error})" if job.error else ""))
    if not registry.active() and st.session_state.get("_had_active"):
        st.session_state["_had_active"] = False
        st.rerun()
    st.session_state["_had_active"] = bool(registry.active())


progress_panel()


def collected(ds: Dataset) -> list[ArmResult]:
    """Every cached result for the sweep fractions and the current one (nothing is trained here).

    The subsets need the embedding, the dendrograms and the hashes: each is a background step,
    whose progress shows here until it is ready.
    """
    cfg_now = config(())
    if {"semantic", "random"} & set(cfg_now.methods):
        emb = ready(data.embeddings(ds, "trained"))
        ready(data.dendrograms(ds, emb))
    if "hash" in cfg_now.methods:
        ready(data.dup_index(ds, cfg_now.hash_method, cfg_now.hash_size))
    cfg = config(tuple(sorted({*SWEEP, float(st.session_state["keep_fraction"])}, reverse=True)))
    return cached_results(ds, cfg, subsets=subsets)


subsets = Subsets(ds, config(()))  # one per run: the semantic index is loaded once for the results and the costs
found = collected(ds)
rows = summarize(found)
if not rows:
    st.info("No results yet for this recipe: press **Retrain at this setting** or **Sweep**.")
    st.stop()
frame = pd.DataFrame(rows)
fig = go.Figure()
full = frame[frame.method == "full"]
if len(full):
    mean, std = float(full.accuracy_mean.iloc[0]), float(full.accuracy_std.iloc[0])
    fig.add_hrect(y0=100 * (mean - std), y1=100 * (mean + std), fillcolor="#999999", opacity=0.25, line_width=0)
    fig.add_hline(y=100 * mean, line_dash="dot", line_color=COLORS["full"],
                  annotation_text=f"full data {100 * mean:.2f}%")
for method in METHODS:
    part = frame[frame.method == method].sort_values("kept_fraction")
    if len(part):
        fig.add_trace(go.Scatter(x=part.kept_fraction, y=100 * part.accuracy_mean, mode="lines+markers", name=method,
                                 error_y=dict(type="data", array=100 * part.accuracy_std),
                                 line=dict(color=COLORS[method])))
fig.update_layout(height=420, xaxis_title="fraction of the training set kept", yaxis_title="test accuracy (%)",
                  margin=dict(l=10, r=10, t=10, b=10))
st.plotly_chart(fig, key="exp_chart")
show = frame.assign(accuracy=[f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(frame.accuracy_mean,
                                                                                 frame.accuracy_std)])
st.dataframe(show[["method", "fraction", "kept_fraction", "n_train", "seeds", "accuracy", "seconds_mean", "device"]],
             hide_index=True, key="exp_table", width="stretch")

st.subheader("What the data say")
st.caption("Arms that share a seed share the initial weights and every image's augmentation, so the difference "
           "is read seed by seed; the interval is a 95% t interval over the seeds both arms ran.")
diffs = differences(found)
for d in diffs:
    st.markdown(f"- {d.sentence()}")
if not diffs:
    st.info("Retrain the semantic and random arms at a fraction (two seeds or more) to see their paired difference.")

keep = float(st.session_state["keep_fraction"])
costs = [c for c in per_class_costs(ds, found, EvidenceConfig(fractions=(keep,), seeds=1), subsets) if keep < 1
         and np.isfinite(c["semantic"])]
if costs:
    st.subheader(f"Which classes pay, at keep {keep:.2f}")
    per = pd.DataFrame(costs)
    chart = go.Figure()
    for method in ("semantic", "random"):
        chart.add_trace(go.Bar(x=[text(c) for c in per["class"]], y=100 * per[method], name=method,
                               marker_color=COLORS[method], customdata=100 * per["removed"],
                               hovertemplate="%{x}: %{y:+.2f} points, %{customdata:.1f}% of the class removed"))
    chart.update_layout(barmode="group", height=300, yaxis_title="change in test accuracy (points)",
                        margin=dict(l=10, r=10, t=10, b=10), xaxis_type="category")
    st.plotly_chart(chart, key="exp_per_class")
    st.caption("Mean change of each class's test accuracy against the full set, paired by seed. Random removes the "
               "same share of every class as semantic, so the bars differ only in which images went.")
