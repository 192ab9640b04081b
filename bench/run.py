"""`make bench`: every figure as a ratio against a baseline measured in the same run, on the same data.

Each section runs in its own process (so its peak memory is its own) and prints JSON rows;
the parent writes docs/BENCHMARKS.md. CIFAR-10 comes from ../shared/data/cifar10-jpg; without
it the sections fall back to digits and the report says so. The sections live in bench/sections/.

    python -m bench.run                # all sections
    python -m bench.run --only hashing # one section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench.sections  # noqa: F401  (registers every section)
from bench.common import CIFAR, ROOT, SECTIONS, SPEC, row


def _child(name: str) -> None:
    rows = SECTIONS[name]()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r.setdefault("peak_mb", round(peak))  # a section that measures in child processes gives their figure
        r["section"] = name
    print("BENCH-JSON " + json.dumps(rows))

def _machine() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # the report must still be written
        gpu = "unknown"
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}"

def _fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    if unit == "s/image":
        return f"{x * 1e6:.1f} µs/img"
    if unit == "AP":
        return f"AP {x:.3f}"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"

def write_report(rows: list[dict[str, Any]], elapsed: float, only: list[str] | None = None) -> Path:
    rerun = sorted({r["section"] for r in rows if r.get("rerun")}) if only else []
    out = ROOT / "docs" / "BENCHMARKS.md"
    lines = [
        "# Benchmarks", "",
        f"Produced by `make bench` (`python -m bench.run`) on {time.strftime('%Y-%m-%d')}, machine: {_machine()}. "
        f"Data: `{SPEC}`. Every ratio is baseline time / our time, both measured in the same run on the same data; "
        f"peak memory is the section process's maximum RSS. No GPU was lent to this task: the CUDA preset's "
        f"accuracy and seconds per run are not measured here (the CUDA path is the CPU path plus autocast and "
        f"placement, which tests/test_device.py covers as far as a CPU allows). "
        + (f"Sections {', '.join(rerun)} were re-run on their own (`--only`); the other rows come from the last "
           f"full run (about 12 minutes)." if only else f"Whole run: {elapsed / 60:.1f} min."), "",
        "| figure | baseline | baseline | ours | ratio | peak MB | notes |", "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "–"
        lines.append(f"| {r['figure']} | {r['baseline']} | {_fmt(r['baseline_s'], r['unit'])} | "
                     f"{_fmt(r['ours_s'], r['unit'])} | {ratio} | {r.get('peak_mb', '–')} | {r['notes']} |")
    from bench.first_hour import section as first_hour

    lines += first_hour()
    lines += ["", "Sections and what they measure:", ""]
    lines += [f"- `{name}`: {' '.join((fn.__doc__ or '').split())}" for name, fn in SECTIONS.items()]
    out.write_text("\n".join(lines) + "\n")
    return out

def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", choices=list(SECTIONS))
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        _child(args.section)
        return 0
    if SPEC == "digits":
        print(f"note: {CIFAR} not found; benchmarking on digits instead")
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for name in args.only or list(SECTIONS):
        print(f"== {name}", flush=True)
        out = subprocess.run([sys.executable, "-m", "bench.run", "--section", name], cwd=ROOT, capture_output=True,
                             text=True)
        found = [line for line in out.stdout.splitlines() if line.startswith("BENCH-JSON ")]
        if out.returncode or not found:
            print(out.stdout[-2000:], out.stderr[-3000:])
            rows.append(row(name, "–", None, 0.0, notes=f"FAILED: {out.stderr.strip().splitlines()[-1:]}"))
            continue
        for r in json.loads(found[0][len("BENCH-JSON "):]):
            rows.append(r)
            ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
            print(f"  {r['figure']}: ours {_fmt(r['ours_s'], r['unit'])}, {r['baseline']} "
                  f"{_fmt(r['baseline_s'], r['unit'])}, ratio {ratio}, peak {r['peak_mb']} MB", flush=True)
    store = ROOT / "docs" / "benchmarks.json"
    if args.only:
        for r in rows:
            r["rerun"] = True
    if args.only and store.exists():  # keep the other sections' rows from the last full run
        rows = [r for r in json.loads(store.read_text()) if r.get("section") not in args.only] + rows
        order = list(SECTIONS)
        rows.sort(key=lambda r: order.index(r["section"]) if r.get("section") in order else len(order))
    store.write_text(json.dumps(rows, indent=1))
    path = write_report(rows, time.time() - t0, args.only)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
