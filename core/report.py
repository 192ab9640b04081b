"""The stakeholder report: one self-contained HTML file (and its PDF) with the redundancy and the proof.

The file opens offline and requests nothing: images are inlined as data: URIs, charts are inline
SVG (plotly's bundle alone would be 4.8 MB), and a Content-Security-Policy forbids any request
and any script. Every dataset, class and file name is escaped. The PDF is the page printed by
headless Chromium where it is installed.
"""

from __future__ import annotations

import html
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core import __version__, recipes
from core.datasets import SPLIT_NAMES, TEST, TRAIN, Dataset
from core.duplicates import DEFAULT_RADIUS, build_index, clamp_radius, groups_at, hash_selection, leaked_test_images
from core.embedding import EmbedConfig, missing_embeddings
from core.evidence import EvidenceConfig, cached_evidence, differences
from core.experiments import ArmResult
from core.hashing import HashConfig
from core.selection import Selection
from core.semantic import DEFAULT_KEEP_FRACTION, semantic_index, semantic_selection
from core.thumbnails import KEPT, LEAKED, REDUNDANT, STATUS_COLORS, compose, png_data_uri
from core.types import ProgressFn, report

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ReportError(RuntimeError):
    """The report cannot be made as asked (e.g. a PDF without Chromium); the message says what to do."""


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows: the settings of each method and how many examples."""

    hash: HashConfig = field(default_factory=HashConfig)
    radius: int = DEFAULT_RADIUS
    keep_fraction: float = DEFAULT_KEEP_FRACTION
    clusters: int = 4
    leaks: int = 6


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(images: NDArray[np.uint8], borders: Sequence[tuple[int, int, int] | None], labels: list[str], cols: int,
         alt: str) -> str:
    grid = compose(images, cols, borders, labels, at_least=96)
    return f'<img src="{png_data_uri(grid)}" alt="{_e(alt)}" width="{grid.width}" height="{grid.height}">'


def _bars_svg(names: list[str], series: dict[str, list[float]], colors: dict[str, str], unit: str) -> str:
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


def _accuracy_svg(rows: list[dict[str, Any]], colors: dict[str, str]) -> str:
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


def _summary_rows(results: list[ArmResult]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[ArmResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.fraction), []).append(r)
    out = []
    for (method, _), rs in groups.items():
        acc = np.array([r.accuracy for r in rs])
        out.append({"method": method, "kept": rs[0].kept_fraction, "mean": float(acc.mean()),
                    "sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, "n": len(rs)})
    return out


def measured_results(ds: Dataset, cfg: EvidenceConfig | None = None) -> list[ArmResult]:
    """The cached results of the paired sweep's arms on this machine's recipe (nothing is trained)."""
    return cached_evidence(ds, cfg or EvidenceConfig())


def _cluster_examples(ds: Dataset, sel: Selection, n: int) -> list[str]:
    """The largest semantic clusters of different classes: the kept image, then the ones it makes redundant."""
    in_pool = sel.pool & (sel.group >= 0)
    ids, counts = np.unique(sel.group[in_pool], return_counts=True)
    blocks, seen = [], set()
    for g in ids[np.argsort(-counts, kind="stable")]:
        members = np.flatnonzero(in_pool & (sel.group == g))
        cls = int(ds.labels[members[0]])
        if cls in seen or len(members) < 2:
            continue
        seen.add(cls)
        rep = members[sel.keep[members]][0]
        others = members[~sel.keep[members]]
        others = others[np.argsort(sel.distance[others])][:7]
        shown = np.concatenate([[rep], others])
        labels = ["kept"] + [f"d={sel.distance[m]:.3f}" for m in others]
        img = _img(np.asarray(ds.images[shown]), [KEPT] + [REDUNDANT] * len(others), labels, 8,
                   f"a cluster of {ds.classes[cls]}")
        rest = "the other is" if len(members) == 2 else f"the {len(members) - 1} others are"
        blocks.append(f'<figure>{img}<figcaption>{_e(ds.classes[cls])}: a cluster of {len(members)} training images; '
                      f"the first is kept, {rest} redundant (cosine distance to it shown)</figcaption></figure>")
        if len(blocks) == n:
            break
    return blocks


def build_report(ds: Dataset, cfg: ReportConfig = ReportConfig(), *, dataset_spec: str | None = None,
                 on_progress: ProgressFn | None = None) -> str:
    """The report as one HTML string (computes or reads from the cache every index it needs)."""
    t0 = time.perf_counter()
    spec = dataset_spec or ds.name
    report(on_progress, "report", 0, 5, "hashes")
    index = build_index(ds, cfg.hash, on_progress)
    radius = clamp_radius(cfg.radius, index)
    hash_sel = hash_selection(ds, index, radius)
    leaked = leaked_test_images(index, radius, ds.split)
    report(on_progress, "report", 1, 5, "embedding")
    sem_sel: Selection | None = None
    if missing_embeddings(ds) is None:
        emb, dendro = semantic_index(ds, EmbedConfig(), on_progress=on_progress)
        sem_sel = semantic_selection(dendro, emb.vectors, keep_fraction=cfg.keep_fraction)
        emb_info = emb.info
    else:
        emb_info = {}
    report(on_progress, "report", 2, 5, "results")
    results = measured_results(ds) if ds.in_memory else []
    n_train, n_test = int((ds.split == TRAIN).sum()), int((ds.split == TEST).sum())
    classes = [str(c) for c in ds.classes]
    k = len(classes)
    train_counts = np.bincount(ds.labels[ds.split == TRAIN], minlength=k)
    hash_removed = hash_sel.per_class(ds.labels, k)["removed"]
    sem_removed = sem_sel.per_class(ds.labels, k)["removed"] if sem_sel is not None else np.zeros(k, np.int64)

    s: list[str] = []
    source, _, where = ds.name.partition(":")
    title = f"Redundancy report: {Path(where).name} ({source})" if where else f"Redundancy report: {ds.name}"
    s.append(f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
             f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
             f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
             f"<style>{_STYLE}</style></head><body>")
    s.append(f'<header><h1>{_e(title)}</h1><p class="sub">{len(ds):,} images in {k} classes '
             f"({n_train:,} train, {n_test:,} test). How much of it is not needed, and what removing it costs.</p>"
             "</header>")
    # headline figures
    sem_text = (f"{len(sem_sel.removed):,} ({100 * (1 - sem_sel.kept_fraction):.1f}% of train)" if sem_sel is not None
                else "no embedding")
    s.append('<section id="summary"><h2>In one glance</h2><div class="cards">'
             f'<div class="card"><b style="color:{STATUS_COLORS["redundant"]}">{len(hash_sel.removed):,}</b>'
             f"near-duplicates ({cfg.hash.label}, radius {radius} bits): "
             f"{100 * (1 - hash_sel.kept_fraction):.2f}% of train</div>"
             f'<div class="card"><b style="color:{STATUS_COLORS["redundant"]}">{sem_text.split(" ")[0]}</b>'
             f"semantically redundant at keep {cfg.keep_fraction:.2f}: {_e(sem_text)}</div>"
             f'<div class="card"><b style="color:{STATUS_COLORS["leaked"]}">{len(leaked):,}</b>'
             f"test images with a near-duplicate in train ({100 * len(leaked) / max(1, n_test):.1f}% of test)</div>"
             "</div></section>")
    # per class
    rows = "".join(f"<tr><td>{_e(c)}</td><td>{train_counts[i]:,}</td><td>{hash_removed[i]:,}</td>"
                   f"<td>{sem_removed[i]:,}</td></tr>" for i, c in enumerate(classes))
    bars = _bars_svg(classes, {"near-duplicates": list(100 * hash_removed / np.maximum(train_counts, 1)),
                               "semantic": list(100 * sem_removed / np.maximum(train_counts, 1))},
                     {"near-duplicates": "#ff7f0e", "semantic": "#1f77b4"}, "%")
    s.append('<section id="per-class"><h2>What each method removes, per class</h2>'
             f'<div class="chart">{bars}</div>'
             "<table><thead><tr><th>class</th><th>train images</th><th>near-duplicates removed</th>"
             f"<th>semantic removed</th></tr></thead><tbody>{rows}</tbody></table></section>")
    # clusters
    s.append('<section id="clusters"><h2>Examples of semantic redundancy</h2>')
    if sem_sel is not None:
        s.append("<p>Each row is one cluster of near-identical training images by the network's embedding: "
                 f'the image framed <span style="color:{STATUS_COLORS["kept"]}">green</span> is kept, the ones framed '
                 f'<span style="color:{STATUS_COLORS["redundant"]}">red</span> are the redundant ones.</p>')
        s += _cluster_examples(ds, sem_sel, cfg.clusters) or ["<p>No cluster has two images at this setting.</p>"]
    else:
        s.append(f'<p class="box">{_e(missing_embeddings(ds))}</p>')
    s.append("</section>")
    # leakage
    s.append('<section id="leakage"><h2>Test images that leak from the training set</h2>')
    leak_groups = groups_at(index, radius, "train-test")
    if len(leak_groups):
        s.append(f'<p>Each test image (framed <span style="color:{STATUS_COLORS["leaked"]}">purple</span>) beside its '
                 f"training near-duplicate(s), with the Hamming distance of their {cfg.hash.label} hashes.</p>")
        for g in range(min(cfg.leaks, len(leak_groups))):
            members, dist = leak_groups.group(g), leak_groups.distances(g)
            order = np.argsort(ds.split[members] != TEST, kind="stable")[:6]
            shown = members[order]
            labels = [f"{SPLIT_NAMES[ds.split[m]]} {int(dist[o])} bits" for m, o in zip(shown, order)]
            borders: list[tuple[int, int, int] | None] = [LEAKED if ds.split[m] == TEST else KEPT for m in shown]
            s.append(f"<figure>{_img(np.asarray(ds.images[shown]), borders, labels, 6, 'a leaked test image')}"
                     f"<figcaption>{' · '.join(_e(ds.ids[m]) for m in shown)}</figcaption></figure>")
    else:
        s.append("<p>No test image has a near-duplicate in train at this radius.</p>")
    s.append("</section>")
    # the proof
    s.append('<section id="retraining"><h2>Retraining: what removing them costs</h2>')
    if results:
        summary = _summary_rows(results)
        colors = {"semantic": "#1f77b4", "random": "#7f7f7f", "hash": "#ff7f0e", "hash-random": "#bcbd22"}
        s.append(f'<div class="chart">{_accuracy_svg(summary, colors)}</div>')
        s.append("<p>Mean test accuracy over seeds with ± one standard deviation; the grey band is the full training "
                 "set. Arms that share a seed share the initial weights and every image's augmentation, so the "
                 "differences below are read seed by seed (95% t interval):</p><ul>")
        s += [f"<li>{_e(d.sentence())}</li>" for d in differences(results)]
        s.append("</ul>")
        evidence = EvidenceConfig()
        s.append(f"<p class=\"small\">Recipe: {_e(recipes.describe(evidence.training_recipe(ds), evidence.budget))}, "
                 f"on {_e(results[0].device)}; {len(results)} runs, "
                 f"{np.mean([r.seconds for r in results]):.0f} s per run on average.</p>")
    else:
        s.append('<div class="box"><b>Not measured yet.</b> No retraining result is cached for this dataset on this '
                 "machine. To measure it (semantic and hash subsets against random ones of the same size, 8 paired "
                 f"seeds): <code>python -m core evidence --dataset {_e(spec)} --seeds 8</code>, then build this "
                 "report again.</div>")
    s.append("</section>")
    # settings and provenance
    commands = [f"python -m core duplicates --dataset {spec} --method {cfg.hash.method} --hash-size "
                f"{cfg.hash.hash_size} --radius {radius}",
                f"python -m core semantic --dataset {spec} --keep-fraction {cfg.keep_fraction}",
                f"python -m core evidence --dataset {spec} --seeds 8",
                f"python -m core report --dataset {spec} --radius {radius} --keep-fraction {cfg.keep_fraction} "
                "--out report.html"]
    emb_line = (f"{_e(emb_info.get('arch'))} trained {_e(emb_info.get('epochs'))} epochs, test accuracy "
                f"{100 * float(emb_info.get('test_accuracy', float('nan'))):.2f}%") if emb_info else "none"
    s.append('<section id="settings"><h2>Settings, commands and versions</h2><table>'
             f"<tr><td>dataset</td><td>{_e(spec)}</td></tr>"
             f"<tr><td>dataset fingerprint</td><td><code>{_e(ds.fingerprint)}</code></td></tr>"
             f"<tr><td>near-duplicates</td><td>{_e(cfg.hash.label)}, radius {radius} bits, keep rule first, "
             "within each class</td></tr>"
             f"<tr><td>semantic</td><td>keep fraction {cfg.keep_fraction}; complete linkage on cosine distance, one "
             f"global threshold; embedding: {emb_line}</td></tr>"
             f"<tr><td>versions</td><td>Redundancy Explorer {_e(__version__)}, Python {_e(platform.python_version())}, "
             f"torch {_e(torch.__version__)}, numpy {_e(np.__version__)}</td></tr>"
             f"<tr><td>built</td><td>{_e(time.strftime('%Y-%m-%d %H:%M'))} in {time.perf_counter() - t0:.1f} s"
             "</td></tr></table><p>Every figure above comes from these commands:</p><pre>"
             + "\n".join(_e(c) for c in commands) + f"</pre><p class=\"small\">Settings: {_e(asdict(cfg))}</p>"
             "</section></body></html>")
    report(on_progress, "report", 5, 5, "done")
    return "".join(s)


def write_report(html_text: str, out: str | Path) -> Path:
    """Write the HTML to a new file, atomically (a temporary name, then a rename)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(path)
    return path


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def to_pdf(html_path: str | Path, pdf_path: str | Path) -> Path:
    """Print the report to PDF with headless Chromium (A4, backgrounds on); ReportError where Chromium is missing."""
    exe = chromium_path()
    if exe is None:
        raise ReportError("a PDF needs Chromium: install Debian's chromium (apt-get install chromium, or `make "
                          "browser-deps`), or print the HTML report from any browser")
    from playwright.sync_api import sync_playwright

    out = Path(pdf_path)
    tmp = out.with_name(f".{out.name}.tmp")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
        page.pdf(path=str(tmp), format="A4", print_background=True,
                 margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
        browser.close()
    tmp.replace(out)
    return out


_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.45}
h1{margin:0 0 4px;font-size:28px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px;font-size:20px}
.sub{color:#555;margin:0}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{flex:1 1 220px;border:1px solid #ddd;border-radius:8px;padding:12px}.card b{display:block;font-size:30px}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}
th{background:#f6f6f6}figure{margin:12px 0;break-inside:avoid}figcaption{font-size:13px;color:#444}
img{max-width:100%;height:auto;image-rendering:pixelated}.box{border:1px solid #e0c060;background:#fff8e0;
padding:10px;border-radius:6px}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;font-size:12px}
.small{font-size:12px;color:#555}.chart{margin:8px 0}section{break-inside:auto}
"""
