"""The report command: one self-contained HTML report (and a PDF through Chromium)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from core.cli.common import add_dataset, add_near_dup, add_semantic, add_training, load, settings
from core.data.types import ProgressFn
from core.pipelines.report import build_report, to_pdf, write_report


def cmd_report(args: argparse.Namespace, progress: ProgressFn) -> int:
    """One self-contained HTML report of the settings' figures (and with --pdf its PDF through Chromium)."""
    ds = load(args, progress)
    t0 = time.perf_counter()
    page = build_report(ds, settings(args), on_progress=progress)
    out = write_report(page, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.pdf:
        t1 = time.perf_counter()
        pdf = to_pdf(out, out.with_suffix(".pdf"))
        print(f"wrote {pdf} ({pdf.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t1:.1f} s")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of the redundancy and the proof")
    add_dataset(p)
    add_near_dup(p)
    add_semantic(p)
    add_training(p)
    p.add_argument("--out", default="report.html", help="the HTML file to write")
    p.add_argument("--pdf", action="store_true", help="also print it to PDF with Chromium (beside the HTML)")
    p.set_defaults(fn=cmd_report)
