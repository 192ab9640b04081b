"""Experiments: retrain on the pruned subsets against random subsets of the same size."""

from __future__ import annotations

import streamlit as st

from ui.state import ensure_state

ensure_state()
st.title("Experiments")
st.info("Retraining experiments arrive with the retraining work: accuracy against the fraction kept, "
        "semantic and hash subsets against random subsets of the same size. "
        "Until then: `python -m core semantic` and `python -m core duplicates` give the subsets.")
