"""Report: the same self-contained HTML file as `python -m core report`, built in the background, to download."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from core.pipelines.report import ReportError, chromium_path, to_pdf, write_report
from ui import data
from ui.common import open_dataset
from ui.state import ensure_state, settings

ensure_state()
st.title("Report")
st.caption("One HTML file for people who will not open the app: the headline figures, what each method removes per "
           "class, example clusters, leaked test images, the retraining proof and the commands behind every number. "
           "It opens offline and requests nothing.")
ds = open_dataset()
ss = st.session_state
s = settings().resolved(ds)
st.markdown("The settings of the other pages, which every figure of the report follows:\n"
            + "\n".join(f"- {name}: {value}" for name, value in s.describe(ds)[1:]))
if st.button("Build the report", key="report_build", type="primary"):
    ss["report_build_n"] = ss.get("report_build_n", 0) + 1
if not ss.get("report_build_n"):
    st.info("Press **Build the report**; it reads every result from the cache and computes what is missing.")
    st.stop()
page = data.report_html(ds, s, ss["report_build_n"])
if page is None:
    st.stop()
name = f"redundancy-report-{Path(ds.name).name or 'dataset'}"
c1, c2 = st.columns(2)
c1.download_button("Download report.html", page, f"{name}.html", "text/html", key="report_download",
                   icon=":material/download:")
if chromium_path() is None:
    c2.caption("A PDF needs Debian's chromium (`make browser-deps`); the HTML prints from any browser.")
elif c2.button("Make the PDF", key="report_pdf"):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pdf = to_pdf(write_report(page, Path(tmp) / "report.html"), Path(tmp) / "report.pdf")
            ss["report_pdf"] = pdf.read_bytes()
        except ReportError as exc:
            st.error(str(exc), icon=":material/error:")
if ss.get("report_pdf"):
    c2.download_button("Download report.pdf", ss["report_pdf"], f"{name}.pdf", "application/pdf",
                       key="report_pdf_download", icon=":material/picture_as_pdf:")
st.caption(f"{len(page.encode()) / 1e6:.2f} MB. Preview:")
components.html(page, height=900, scrolling=True)
