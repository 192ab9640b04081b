"""Charts as inline SVG for the report: no script, no request, readable in a PDF (plotly's bundle is 4.8 MB)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def bars_svg(names: list[str], series: dict[str, list[float]], colors: dict[str, str], unit: str) -> str:
    """Grouped horizontal bars (one row per class), inline SVG."""
    row, label_w, width = 22, 150, 640
    top = max([v for vs in series.values() for v in vs] + [1e-9])
    height = row * len(names) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="share of each class removed">']
    bar_h = (row - 6) / max(1, len(series))
    for i, name in enumerate(names):
        y = 20 + i * row
        short = name if len(name) <= 20 else name[:19] + "…"  # the table beneath gives the whole name
        parts.append(f'<text x="{label_w - 6}" y="{y + row / 2}" text-anchor="end" font-size="12">{_e(short)}'
                     f'<title>{_e(name)}</title></text>')
        for k, (key, values) in enumerate(series.items()):
            w = (width - label_w - 70) * values[i] / top
            yy = y + k * bar_h
            parts.append(f'<rect x="{label_w}" y="{yy:.1f}" width="{w:.1f}" height="{bar_h - 1:.1f}" '
                         f'fill="{colors[key]}"><title>{_e(key)}: {values[i]:.1f}{unit}</title></rect>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{yy + bar_h - 3:.1f}" font-size="10">'
                         f'{values[i]:.1f}{unit}</text>')
    legend = " ".join(f'<tspan fill="{colors[k]}">■</tspan> {_e(k)}' for k in series)
    parts.append(f'<text x="{label_w}" y="12" font-size="12">{legend}</text></svg>')
    return "".join(parts)


def accuracy_svg(rows: list[dict[str, Any]], colors: dict[str, str]) -> str:
    """Test accuracy against the fraction kept: a line per method with ± sd bars, the full-data band."""
    width, height, left, bottom, top_pad, right = 640, 360, 60, 40, 20, 110
    accs = [r["mean"] - r["sd"] for r in rows] + [r["mean"] + r["sd"] for r in rows]
    lo, hi = min(accs), max(accs)
    pad = max(0.002, (hi - lo) * 0.15)
    lo, hi = lo - pad, hi + pad
    fracs = [r["kept"] for r in rows]
    fx_lo, fx_hi = min(fracs + [1.0]) - 0.03, 1.02

    def x(f: float) -> float:
        return float(left + (f - fx_lo) / (fx_hi - fx_lo) * (width - left - right))

    def y(a: float) -> float:
        return float(height - bottom - (a - lo) / (hi - lo) * (height - bottom - top_pad))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="test accuracy against the fraction kept">']
    full = [r for r in rows if r["method"] == "full"]
    if full:
        f = full[0]
        parts.append(f'<rect x="{left}" y="{y(f["mean"] + f["sd"]):.1f}" width="{width - left - right}" '
                     f'height="{max(1.0, y(f["mean"] - f["sd"]) - y(f["mean"] + f["sd"])):.1f}" fill="#999" '
                     'opacity="0.25"/>')
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(f["mean"]):.1f}" y2="{y(f["mean"]):.1f}" '
                     'stroke="#444" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{width - right + 4}" y="{y(f["mean"]) + 4:.1f}" font-size="11">full data '
                     f'{100 * f["mean"]:.2f}%</text>')
    for t in np.linspace(lo, hi, 5):
        parts.append(f'<line x1="{left - 4}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end">{100 * t:.1f}</text>')
    for f in sorted(set(round(v, 2) for v in fracs)):
        parts.append(f'<text x="{x(f):.1f}" y="{height - bottom + 16}" font-size="11" '
                     f'text-anchor="middle">{f:.2f}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
                 'fraction of the training set kept</text>')
    parts.append(f'<text x="14" y="{height / 2}" font-size="12" transform="rotate(-90 14 {height / 2})" '
                 'text-anchor="middle">test accuracy (%)</text>')
    for method in ("semantic", "random", "hash", "hash-random"):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["kept"])
        if not pts:
            continue
        color = colors.get(method, "#555")
        path = " ".join(f"{x(p['kept']):.1f},{y(p['mean']):.1f}" for p in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            cx = x(p["kept"])
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p["mean"] - p["sd"]):.1f}" '
                         f'y2="{y(p["mean"] + p["sd"]):.1f}" stroke="{color}"/>'
                         f'<circle cx="{cx:.1f}" cy="{y(p["mean"]):.1f}" r="4" fill="{color}">'
                         f'<title>{_e(method)} keep {p["kept"]:.3f}: {100 * p["mean"]:.2f} ± {100 * p["sd"]:.2f}% '
                         f'({p["n"]} seeds)</title></circle>')
        parts.append(f'<text x="{x(pts[-1]["kept"]) + 8:.1f}" y="{y(pts[-1]["mean"]) - 6:.1f}" font-size="11" '
                     f'fill="{color}">{_e(method)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def budget_svg(points: list[Any]) -> str:
    """semantic − random (points, with its 95% interval) against the full-set accuracy of each training budget,
    a line per keep fraction; `points` are core.pipelines.evidence.BudgetPoint."""
    width, height, left, bottom, top_pad, right = 640, 320, 60, 44, 20, 120
    pairs = [(p, d) for p in points for d in p.differences]
    ys = [100 * v for _, d in pairs for v in ((d.low, d.high) if d.n > 1 else (d.mean,))] + [0.0]
    lo, hi = min(ys), max(ys)
    pad = max(0.2, (hi - lo) * 0.1)
    lo, hi = lo - pad, hi + pad
    xs = [100 * p.full_accuracy for p in points]
    x_lo, x_hi = min(xs) - 1.0, max(xs) + 1.0

    def x(v: float) -> float:
        return float(left + (v - x_lo) / max(1e-9, x_hi - x_lo) * (width - left - right))

    def y(v: float) -> float:
        return float(height - bottom - (v - lo) / (hi - lo) * (height - bottom - top_pad))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="semantic minus random against the training budget">',
             f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#444"/>']
    for t in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end">{t:+.1f}</text>')
    for p in points:
        parts.append(f'<text x="{x(100 * p.full_accuracy):.1f}" y="{height - bottom + 16}" font-size="10" '
                     f'text-anchor="middle">{100 * p.full_accuracy:.1f}<title>{_e(p.label)}</title></text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
                 'full-set test accuracy of the budget (%)</text>')
    parts.append(f'<text x="14" y="{height / 2}" font-size="12" transform="rotate(-90 14 {height / 2})" '
                 'text-anchor="middle">semantic − random (points)</text>')
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    fractions = sorted({d.fraction for _, d in pairs}, reverse=True)
    label_y: list[float] = []  # each line's label at its last point, moved down until 13 px clear of the others
    for k, f in enumerate(fractions):
        color = colors[k % len(colors)]
        at = sorted(((p, d) for p, d in pairs if abs(d.fraction - f) < 1e-9), key=lambda pd: pd[0].full_accuracy)
        path = " ".join(f"{x(100 * p.full_accuracy):.1f},{y(100 * d.mean):.1f}" for p, d in at)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p, d in at:
            cx = x(100 * p.full_accuracy)
            if d.n > 1:
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(100 * d.low):.1f}" y2="{y(100 * d.high):.1f}" '
                             f'stroke="{color}"/>')
            parts.append(f'<circle cx="{cx:.1f}" cy="{y(100 * d.mean):.1f}" r="4" fill="{color}"><title>'
                         f'{_e(p.label)}, keep {f:.2f}: {100 * d.mean:+.2f} points ({d.n} seeds)</title></circle>')
        last_p, last_d = at[-1]
        ly = y(100 * last_d.mean) + 4
        while any(abs(ly - other) < 13 for other in label_y):
            ly += 13
        label_y.append(ly)
        parts.append(f'<text x="{x(100 * last_p.full_accuracy) + 8:.1f}" y="{ly:.1f}" '
                     f'font-size="11" fill="{color}">keep {f:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
