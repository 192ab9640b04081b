"""Redundancy Explorer: the frame. Navigation from ui.pages, the current dataset and a footer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

from core.data.device import describe
from ui.data import cache_status
from ui.pages import PAGES
from ui.state import ensure_state
from ui.steps import sidebar_jobs

if os.environ.get("REDEX_LOG"):  # e.g. REDEX_LOG=INFO: each step's phases, epochs and cache use, on stderr
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("redex").setLevel(os.environ["REDEX_LOG"].upper())
ICON = Path(__file__).parent / "assets" / "icon.png"  # served by the app itself: no request leaves the machine
st.set_page_config(page_title="Redundancy Explorer", page_icon=str(ICON), layout="wide")
ensure_state()
nav = st.navigation([st.Page(path, title=title, icon=icon) for path, title, icon in PAGES])
with st.sidebar:
    st.caption("Dataset")
    st.text(st.session_state["dataset"])
    st.caption(f"Device: {describe()}")
    st.caption(cache_status())
    jobs = st.container()
try:
    nav.run()
finally:  # after the page, so the list holds the jobs it just started (a page may stop early: st.stop)
    with jobs:
        sidebar_jobs()
