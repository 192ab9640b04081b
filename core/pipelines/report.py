"""The stakeholder report: one self-contained HTML file (and its PDF) with the redundancy and the proof.

It is built from the same `Settings` as the pages and through the same functions (near-duplicates
from core.pipelines.near_duplicates, the semantic cut, the paired sweep), so it says what the app
says: the leakage figure is Home's. The file opens offline and requests nothing: images are inlined
as data: URIs, charts are inline SVG, and a Content-Security-Policy forbids any request and any
script. Every dataset, class and file name is escaped. The PDF is the page printed by headless
Chromium where it is installed.
"""

from __future__ import annotations

import html
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core import __version__
from core.data.datasets import SPLIT_NAMES, TEST, TRAIN, Dataset, DatasetError
from core.data.judgments import LABEL_TEXT, pair_key
from core.data.scope import SCOPES, Scope
from core.data.thumbnails import KEPT, LEAKED, REDUNDANT, STATUS_COLORS, compose, png_data_uri
from core.data.types import ProgressFn, report
from core.features.embedding import EmbeddingUnavailable
from core.pipelines.charts import accuracy_svg, bars_svg, budget_svg
from core.pipelines.evidence import EvidenceConfig, budget_curve, cached_evidence, differences, where_it_turns
from core.pipelines.experiments import ArmResult
from core.pipelines.near_duplicates import NearDuplicates, near_duplicates
from core.pipelines.settings import PAIR_SCORE, Settings
from core.selections.duplicates import groups_at
from core.selections.review import cleaned_test_list, precision, training_removals
from core.selections.selection import Selection
from core.selections.semantic import semantic_index

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ReportError(RuntimeError):
    """The report cannot be made as asked (e.g. a PDF without Chromium); the message says what to do."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(images: NDArray[np.uint8], borders: Sequence[tuple[int, int, int] | None], labels: list[str], cols: int,
         alt: str) -> str:
    grid = compose(images, cols, borders, labels, at_least=96)
    return f'<img src="{png_data_uri(grid)}" alt="{_e(alt)}" width="{grid.width}" height="{grid.height}">'


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


def evidence_config(settings: Settings) -> EvidenceConfig:
    """The paired sweep these settings read: `make evidence`'s arms, with the settings' embedding and training."""
    return EvidenceConfig(embed=settings.semantic.embedding, training=settings.training)


def measured_results(ds: Dataset, settings: Settings) -> list[ArmResult]:
    """The cached results of the paired sweep at these settings (nothing is trained)."""
    try:
        return cached_evidence(ds, evidence_config(settings))
    except (DatasetError, EmbeddingUnavailable):  # no embedding to cut (a result folder without one): no sweep
        return []


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


def _semantic(ds: Dataset, settings: Settings, on_progress: ProgressFn | None) -> tuple[
        Selection | None, dict[str, Any], str]:
    """The semantic subset at the settings, the embedding's description, or why there is none."""
    s = settings.semantic
    try:
        emb, dendro = semantic_index(ds, s.embedding, on_progress=on_progress)
    except (DatasetError, EmbeddingUnavailable) as exc:
        return None, {}, str(exc)
    return s.cut(dendro, emb.vectors), emb.info, ""


def _leak_examples(ds: Dataset, near: NearDuplicates, n: int) -> list[str]:
    """Leaked test images beside their training twins: the best pairs (pair score) or the hash groups."""
    out = []
    pairs = near.accepted(Scope.LEAKAGE) if near.settings.method == PAIR_SCORE else None
    if pairs is not None:
        for r in range(min(n, len(pairs))):
            a, b = int(pairs.a[r]), int(pairs.b[r])
            test, train = (a, b) if ds.split[a] == TEST else (b, a)
            j = near.judgments.get(pair_key(a, b))
            said = f", judged {LABEL_TEXT[j.label].lower()}" if j is not None else ""
            labels = [f"test · {pairs.score[r]:.3f}", "train"]
            img = _img(np.asarray(ds.images[[test, train]]), [LEAKED, KEPT], labels, 2, "a leaked test image")
            out.append(f"<figure>{img}<figcaption>{_e(ds.ids[test])} · {_e(ds.ids[train])} (pair score "
                       f"{pairs.score[r]:.3f}{_e(said)})</figcaption></figure>")
    elif near.index is not None and near.radius is not None:
        groups = groups_at(near.index, near.radius, Scope.LEAKAGE)
        for g in range(min(n, len(groups))):
            members, dist = groups.group(g), groups.distances(g)
            order = np.argsort(ds.split[members] != TEST, kind="stable")[:6]
            shown = members[order]
            labels = [f"{SPLIT_NAMES[ds.split[m]]} {int(dist[o])} bits" for m, o in zip(shown, order)]
            borders: list[tuple[int, int, int] | None] = [LEAKED if ds.split[m] == TEST else KEPT for m in shown]
            out.append(f"<figure>{_img(np.asarray(ds.images[shown]), borders, labels, 6, 'a leaked test image')}"
                       f"<figcaption>{' · '.join(_e(ds.ids[m]) for m in shown)}</figcaption></figure>")
    return out


def _judged_section(ds: Dataset, near: NearDuplicates) -> str:
    """How many pairs a person judged, the precision of the top of the leakage list, the cleaned lists."""
    if near.settings.method != PAIR_SCORE:
        return ""
    leak = near.candidates.get(Scope.LEAKAGE)
    if not near.judged or leak is None:
        return ('<section id="judged"><h2>Judged pairs</h2><p>No pair has been judged yet: the figures above count the '
                f"pairs whose score reaches {near.settings.min_score:.2f}. Judge the list on the Review pairs page to "
                "measure its precision.</p></section>")
    rows = "".join(f"<tr><td>top {p.top}</td><td>{p.judged}</td><td>{p.duplicates}</td><td>"
                   f"{'' if p.value is None else f'{100 * p.value:.1f}%'}</td></tr>"
                   for p in precision(leak, near.judgments))
    cleaned = cleaned_test_list(ds, near.judgments)
    removals = training_removals(ds, near.judgments)
    return ('<section id="judged"><h2>Judged pairs</h2>'
            f"<p>{near.judged:,} pairs judged by a person. A pair judged a duplicate always counts, one judged similar "
            "or different never; the other pairs count when their score reaches the minimum.</p>"
            "<table><thead><tr><th>leakage list</th><th>judged</th><th>duplicates</th><th>precision so far</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
            f"<p>Cleaned test list: {len(cleaned):,} test images judged to duplicate a training image (drop or replace "
            f"them). Training removals by judgment: {len(removals.duplicates):,} duplicates within a class, "
            f"{len(removals.conflicts):,} copies of photos judged the same under two labels.</p></section>")


def _flags(settings: Settings) -> str:
    """The CLI options that reproduce these settings."""
    n, sem, t = settings.near_dup, settings.semantic, settings.training
    parts = [f"--dup-method {n.method.replace(' ', '-')}"]
    parts += [f"--min-score {n.min_score:g}"] if n.method == PAIR_SCORE else [
        f"--method {n.hash.method} --hash-size {n.hash.hash_size} --radius {n.radius} --keep-rule {n.keep_rule}"]
    parts.append(f"--distance {sem.distance:g}" if sem.distance is not None
                 else f"--keep-fraction {sem.keep_fraction:g}")
    parts += ["--per-class"] * sem.per_class + [f"--policy {sem.policy}", f"--embedding {sem.embedding.model}"]
    parts += [f"--recipe {t.recipe}"] * bool(t.recipe) + [f"--train-epochs {t.epochs:g}"] * bool(t.epochs)
    parts += [f"--budget {t.budget}"] + [f"--precision {t.precision}"] * bool(t.precision)
    return " ".join(parts)


def build_report(ds: Dataset, settings: Settings | None = None, *, on_progress: ProgressFn | None = None,
                 clusters: int = 4, leaks: int = 6) -> str:
    """The report as one HTML string (computes or reads from the cache everything it needs)."""
    t0 = time.perf_counter()
    settings = (settings or Settings(dataset=ds.name)).resolved(ds)
    spec, near_s = settings.dataset, settings.near_dup
    report(on_progress, "report", 0, 4, "near-duplicates")
    near = near_duplicates(ds, near_s, on_progress=on_progress)
    assert near.selection is not None and near.leaked is not None
    dup_sel, leaked = near.selection, near.leaked
    report(on_progress, "report", 1, 4, "semantic redundancy")
    sem_sel, emb_info, no_semantic = _semantic(ds, settings, on_progress)
    report(on_progress, "report", 2, 4, "results")
    results = measured_results(ds, settings)
    n_train, n_test = int((ds.split == TRAIN).sum()), int((ds.split == TEST).sum())
    classes = [str(c) for c in ds.classes]
    k = len(classes)
    train_counts = np.bincount(ds.labels[ds.split == TRAIN], minlength=k)
    dup_removed = dup_sel.per_class(ds.labels, k)["removed"]
    sem_removed = sem_sel.per_class(ds.labels, k)["removed"] if sem_sel is not None else np.zeros(k, np.int64)
    method = "pair score" if near_s.method == PAIR_SCORE else f"{near_s.hash.label}, radius {near.radius} bits"

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
    sem_text = (f"{len(sem_sel.removed):,} ({100 * (1 - sem_sel.kept_fraction):.1f}% of train)" if sem_sel is not None
                else "no embedding")
    after = " after your judgments" if near.judgments_changed_leakage else ""
    s.append('<section id="summary"><h2>In one glance</h2><div class="cards">'
             f'<div class="card"><b style="color:{STATUS_COLORS["redundant"]}">{len(dup_sel.removed):,}</b>'
             f"near-duplicates within a class ({_e(method)}): {100 * (1 - dup_sel.kept_fraction):.2f}% of train</div>"
             f'<div class="card"><b style="color:{STATUS_COLORS["redundant"]}">{sem_text.split(" ")[0]}</b>'
             f"semantically redundant ({_e(settings.semantic.describe())}): {_e(sem_text)}</div>"
             f'<div class="card"><b style="color:{STATUS_COLORS["leaked"]}" id="leaked-count">{len(leaked):,}</b>'
             f"test images with a near-duplicate in train ({100 * len(leaked) / max(1, n_test):.1f}% of test"
             f"{after})</div></div>")
    s.append("<table><thead><tr><th>scope</th><th>pairs</th><th>groups</th><th>images</th></tr></thead><tbody>"
             + "".join(f"<tr><td>{_e(sc.label)}</td><td>{f.pairs:,}</td><td>{f.groups:,}</td><td>{f.images:,}</td></tr>"
                       for sc in SCOPES if (f := near.scopes.get(sc)) is not None) + "</tbody></table></section>")
    rows = "".join(f"<tr><td>{_e(c)}</td><td>{train_counts[i]:,}</td><td>{dup_removed[i]:,}</td>"
                   f"<td>{sem_removed[i]:,}</td></tr>" for i, c in enumerate(classes))
    bars = bars_svg(classes, {"near-duplicates": list(100 * dup_removed / np.maximum(train_counts, 1)),
                              "semantic": list(100 * sem_removed / np.maximum(train_counts, 1))},
                    {"near-duplicates": "#ff7f0e", "semantic": "#1f77b4"}, "%")
    s.append('<section id="per-class"><h2>What each method removes, per class</h2>'
             f'<div class="chart">{bars}</div>'
             "<table><thead><tr><th>class</th><th>train images</th><th>near-duplicates removed</th>"
             f"<th>semantic removed</th></tr></thead><tbody>{rows}</tbody></table></section>")
    s.append('<section id="clusters"><h2>Examples of semantic redundancy</h2>')
    if sem_sel is not None:
        s.append("<p>Each row is one cluster of near-identical training images by the network's embedding: "
                 f'the image framed <span style="color:{STATUS_COLORS["kept"]}">green</span> is kept, the ones framed '
                 f'<span style="color:{STATUS_COLORS["redundant"]}">red</span> are the redundant ones.</p>')
        s += _cluster_examples(ds, sem_sel, clusters) or ["<p>No cluster has two images at this setting.</p>"]
    else:
        s.append(f'<p class="box">{_e(no_semantic)}</p>')
    s.append("</section>")
    s.append('<section id="leakage"><h2>Test images that leak from the training set</h2>')
    examples = _leak_examples(ds, near, leaks)
    if examples:
        s.append(f'<p>Each test image (framed <span style="color:{STATUS_COLORS["leaked"]}">purple</span>) beside its '
                 f"training near-duplicate, by the {_e(method)}.</p>")
        s += examples
    else:
        s.append("<p>No test image has a near-duplicate in train at these settings.</p>")
    s.append("</section>")
    s.append(_judged_section(ds, near))
    s.append(_retraining_section(ds, settings, results))
    commands = [f"python -m core duplicates --dataset {spec} {_flags(settings)}",
                f"python -m core semantic --dataset {spec} {_flags(settings)}",
                f"python -m core evidence --dataset {spec} --seeds {evidence_config(settings).seeds}",
                f"python -m core report --dataset {spec} {_flags(settings)} --out report.html"]
    emb_line = (f"{_e(emb_info.get('recipe', emb_info.get('arch')))}, test accuracy "
                f"{100 * float(emb_info.get('test_accuracy', float('nan'))):.2f}%") if emb_info else "none"
    settings_rows = "".join(f"<tr><td>{_e(name)}</td><td>{_e(value)}</td></tr>"
                            for name, value in settings.describe(ds))
    s.append('<section id="settings"><h2>Settings, commands and versions</h2><table>'
             f"{settings_rows}<tr><td>dataset fingerprint</td><td><code>{_e(ds.fingerprint)}</code></td></tr>"
             f"<tr><td>embedding network</td><td>{emb_line}</td></tr>"
             f"<tr><td>versions</td><td>Redundancy Explorer {_e(__version__)}, Python {_e(platform.python_version())}, "
             f"torch {_e(torch.__version__)}, numpy {_e(np.__version__)}</td></tr>"
             f"<tr><td>built</td><td>{_e(time.strftime('%Y-%m-%d %H:%M'))} in {time.perf_counter() - t0:.1f} s"
             "</td></tr></table><p>Every figure above comes from these commands:</p><pre>"
             + "\n".join(_e(c) for c in commands) + "</pre></section></body></html>")
    report(on_progress, "report", 4, 4, "done")
    return "".join(s)


def _retraining_section(ds: Dataset, settings: Settings, results: list[ArmResult]) -> str:
    """The paired sweep at these settings: accuracy against the fraction kept, the paired differences, the recipe."""
    cfg = evidence_config(settings)
    s = ['<section id="retraining"><h2>Retraining: what removing them costs</h2>']
    if results:
        summary = _summary_rows(results)
        colors = {"semantic": "#1f77b4", "random": "#7f7f7f", "hash": "#ff7f0e", "hash-random": "#bcbd22"}
        seeds = len({r.seed for r in results})
        s.append(f'<div class="chart">{accuracy_svg(summary, colors)}</div>')
        s.append(f"<p>Mean test accuracy over {seeds} seed{'s' * (seeds != 1)} with ± one standard deviation; the grey "
                 "band is the full training set. Arms that share a seed share the initial weights and every image's "
                 "augmentation, so the differences below are read seed by seed (95% t interval):</p><ul>")
        s += [f"<li>{_e(d.sentence())}</li>" for d in differences(results)]
        s.append("</ul>")
        s.append(f'<p class="small">Recipe: {_e(settings.training.describe(ds))}; on {_e(results[0].device)}; '
                 f"{len(results)} runs, {np.mean([r.seconds for r in results]):.0f} s per run on average.</p>")
        points = budget_curve(ds, cfg)
        if points:
            s.append("<h3>The training budget decides the verdict</h3>"
                     f'<div class="chart">{budget_svg(points)}</div><p>{_e(where_it_turns(points))}</p>')
    else:
        s.append('<div class="box"><b>Not measured yet.</b> No run of the paired sweep is cached for this dataset and '
                 f"these settings on this machine. To measure it: <code>python -m core evidence --dataset "
                 f"{_e(settings.dataset)} --seeds {cfg.seeds}</code>, then build this report again.</div>")
    s.append("</section>")
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
