"""A newcomer's first hour, measured: `python -m bench.first_hour [DATASET]` (default: the shared CIFAR-10 copy).

Starts `streamlit run` on a fresh cache and a fresh judgments folder, opens the app in Debian's chromium (Playwright)
and visits the pages as a new user would, one tab, through the sidebar: Home, Near-duplicates, Review pairs,
Semantic redundancy (taking the offered embedding that needs no training while the network trains), Map,
Experiments, Report, and Semantic again until the trained embedding replaces the stand-in. For every page it
records the time from opening it, and from the first request, until its first real result (a metric, an image, a
chart or a table in the main column) and until it is complete (no progress bar left in the main column), the
progress labels it shows meanwhile, and screenshots of both moments. Writes docs/first-hour.json and
docs/screenshots/first-hour/*.png; `docs/BENCHMARKS.md` quotes the timeline.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg"
SHOTS = ROOT / "docs" / "screenshots" / "first-hour"
POLL_S = 2.0
# what the main column shows: its progress bars (a job's label and state), and whether a result is on screen
PROBE = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  const main = document.querySelector("[data-testid='stMain']");
  if (!app || !main) return null;
  const bars = [...main.querySelectorAll("[data-testid='stProgress']")].map(e => e.innerText.trim())
      .filter(t => !t.includes(' judged'));  // the Review page's own count is no job
  const results = main.querySelectorAll("[data-testid='stMetric'], [data-testid='stImage'], "
      + "[data-testid='stPlotlyChart'], [data-testid='stDataFrame'], [data-testid='stVegaLiteChart']").length;
  const errors = main.querySelectorAll("[data-testid='stException']").length;
  return {running: app.getAttribute('data-test-script-state') !== 'notRunning', bars, results, errors,
          h1: (main.querySelector('h1') || {}).innerText || ''};
}"""


def _job(label: str) -> str:
    """A progress bar's job: its label up to the first colon ('Embedding (trained): train 70/150 ...')."""
    return label.split("\n")[0].split(":")[0][:80]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Visit:
    """One page opened: polls it until complete (or `limit_s`), noting the first result and the bars seen."""

    def __init__(self, page: Any, name: str, t0: float, log: list[dict[str, Any]]) -> None:
        self.page, self.name, self.t0, self.log = page, name, t0, log
        self.opened = time.perf_counter()
        self.first: float | None = None
        self.bars_seen: dict[str, float] = {}  # each progress label's first and last sighting (from opening)
        self.bars_gone: dict[str, float] = {}

    def shot(self, when: str) -> str:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{len(self.log):02d}-{self.name}-{when}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return str(path.relative_to(ROOT))

    def until(self, done: Any, limit_s: float) -> dict[str, Any]:
        shots, last_bars, state = [], [], None
        while time.perf_counter() - self.opened < limit_s:
            state = self.page.evaluate(PROBE)
            now = time.perf_counter() - self.opened
            if state is not None:
                for label in state["bars"]:
                    key = _job(label)
                    self.bars_seen.setdefault(key, now)
                    self.bars_gone.pop(key, None)
                for key in set(self.bars_seen) - {_job(b) for b in state["bars"]}:
                    self.bars_gone.setdefault(key, now)
                last_bars = state["bars"]
                if self.first is None and state["results"] > 0 and not state["running"]:
                    self.first = now
                    shots.append(self.shot("first"))
                if not state["running"] and done(state):
                    self.page.wait_for_timeout(1500)  # let images and charts paint
                    shots.append(self.shot("complete"))
                    return self._entry(now, shots, state, last_bars)
            time.sleep(POLL_S)
        shots.append(self.shot("timeout"))
        return self._entry(None, shots, state, last_bars)

    def _entry(self, complete: float | None, shots: list[str], state: Any, bars: list[str]) -> dict[str, Any]:
        entry = {"page": self.name, "opened_at_s": round(self.opened - self.t0, 1),
                 "first_result_s": None if self.first is None else round(self.first, 1),
                 "complete_s": None if complete is None else round(complete, 1),
                 "bars": {k: {"seen_s": round(v, 1), "gone_s": round(self.bars_gone[k], 1) if k in self.bars_gone
                              else None} for k, v in self.bars_seen.items()},
                 "left_running": bars, "errors": (state or {}).get("errors", 0), "screenshots": shots}
        self.log.append(entry)
        print(json.dumps(entry), flush=True)
        return entry


def main() -> int:
    from playwright.sync_api import sync_playwright

    from bench.common import launch_chromium, stop_server, wait_healthy

    dataset = sys.argv[1] if len(sys.argv) > 1 else f"imagefolder:{CIFAR}"
    work = Path(tempfile.mkdtemp(prefix="redex-first-hour-"))
    port = _free_port()
    env = {**os.environ, "REDEX_DATASET": dataset, "REDEX_CACHE_DIR": str(work / "cache"),
           "REDEX_JUDGMENTS_DIR": str(work / "judgments")}
    server_log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=server_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    shutil.rmtree(SHOTS, ignore_errors=True)
    log: list[dict[str, Any]] = []
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            t0 = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")

            def go(title: str, name: str) -> Visit:
                before = page.evaluate(PROBE)["h1"]
                page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
                visit = Visit(page, name, t0, log)
                page.wait_for_function("(old) => { const h = document.querySelector(\"[data-testid='stMain'] h1\");"
                                       " return h && h.innerText !== old; }", arg=before, timeout=120_000)
                return visit

            def complete(state: dict[str, Any]) -> bool:
                return not state["bars"] and bool(state["h1"])

            def shown(state: dict[str, Any]) -> bool:  # a first result: the user reads it and moves on
                return state["results"] > 0

            Visit(page, "home", t0, log).until(shown, 1800)
            go("Near-duplicates", "near_duplicates").until(complete, 1800)  # every scope
            go("Review pairs", "review").until(complete, 600)
            semantic = go("Semantic redundancy", "semantic")
            offer = page.get_by_role("button", name="Show it now")
            try:
                offer.wait_for(timeout=120_000)
                semantic.shot("offer")
                offer.click()
            except Exception:  # the trained embedding was ready already: no offer
                pass
            semantic.until(shown, 1800)
            go("Map", "map").until(shown, 1800)
            go("Experiments", "experiments").until(complete, 600)
            go("Report", "report").until(complete, 1800)
            go("Semantic redundancy", "semantic_trained").until(
                lambda s: complete(s) and "Shown with" not in page.inner_text("[data-testid='stMain']"), 1800)
            go("Home", "home_again").until(complete, 900)
            browser.close()
    finally:
        stop_server(proc)
        server_log.close()
    text = (work / "server.log").read_text()
    record = {"dataset": dataset, "cores": os.cpu_count(), "visits": log,
              "server_stopped_cleanly": "terminate called" not in text and "Traceback" not in text,
              "server_log_tail": text[-2000:]}
    (ROOT / "docs" / "first-hour.json").write_text(json.dumps(record, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    _splice(ROOT / "docs" / "BENCHMARKS.md")
    return 0


def _splice(path: Path) -> None:
    """Rewrite the first-hour section of docs/BENCHMARKS.md in place (the rest is `make bench`'s)."""
    text = path.read_text().split("\n") if path.exists() else ["# Benchmarks"]
    head = "## A newcomer's first hour"
    tail = "Sections and what they measure:"
    start = next((i for i, line in enumerate(text) if line == head), None)
    end = next((i for i, line in enumerate(text) if line == tail), len(text))
    if start is not None:
        text = text[: start - 1] + text[end - 1 :]
        end = next((i for i, line in enumerate(text) if line == tail), len(text))
    text = text[: end - 1] + section() + text[end - 1 :]
    path.write_text("\n".join(text))


GOALS = {"near_duplicates": ("every scope's candidates", 300), "semantic_trained": ("the trained semantic result", 900)}
TITLES = {"home": "Home", "near_duplicates": "Near-duplicates (all three scopes)", "review": "Review pairs",
          "semantic": "Semantic redundancy (the stand-in offered while the network trains)", "map": "Map",
          "experiments": "Experiments", "report": "Report",
          "semantic_trained": "Semantic redundancy again, until the trained embedding replaces the stand-in",
          "home_again": "Home again, until every tile is final"}


def _jobs(visit: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """Each job seen on the page: when its bar first showed and when the last of its bars went (from opening)."""
    out: dict[str, tuple[float, float | None]] = {}
    for label, t in visit["bars"].items():
        job = _job(label)
        seen, gone = out.get(job, (t["seen_s"], t["gone_s"]))
        ends = [g for g in (gone, t["gone_s"]) if g is not None]
        out[job] = (min(seen, t["seen_s"]), max(ends) if ends and t["gone_s"] is not None else None)
    return out


def section(path: Path = ROOT / "docs" / "first-hour.json") -> list[str]:
    """The timeline as markdown lines for docs/BENCHMARKS.md (empty when it was never measured)."""
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    fmt = lambda s: "–" if s is None else (f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min")  # noqa: E731
    lines = ["", "## A newcomer's first hour", "",
             f"`python -m bench.first_hour` on `{record['dataset']}`, {record['cores']} cores, an empty cache and "
             "no other work on the machine: one Chromium tab visits the pages through the sidebar in the order below, "
             "moving on once a page shows a first result (Home, Semantic, Map) or is complete (the others). "
             "Times are from opening the page, and from the first request (the timeline). A first result is a "
             "metric, image, chart or table in the main column; complete means no progress bar is left there. "
             "Screenshots of both moments: docs/screenshots/first-hour/.", "",
             "| page | opened at | first result | complete | jobs seen there (bar shown → gone, from opening) |",
             "|---|---|---|---|---|"]
    for v in record["visits"]:
        jobs = "; ".join(f"{j}: {fmt(a)} → {fmt(b)}" for j, (a, b) in _jobs(v).items()) or "none"
        lines.append(f"| {TITLES.get(v['page'], v['page'])} | {fmt(v['opened_at_s'])} | {fmt(v['first_result_s'])} "
                     f"| {fmt(v['complete_s'])} | {jobs} |")
    lines.append("")
    for page, (what, goal) in GOALS.items():
        v = next((v for v in record["visits"] if v["page"] == page), None)
        if v is None or v["complete_s"] is None:
            lines.append(f"- Goal for {what}, {fmt(goal)} from the first request: not reached in this run.")
            continue
        at = v["opened_at_s"] + v["complete_s"]
        verdict = "met" if at <= goal else f"missed by {fmt(at - goal)}"
        lines.append(f"- Goal for {what}: {fmt(goal)} from the first request; reached at {fmt(at)}: {verdict}.")
    lines += [f"- {note}" for note in record.get("notes", [])]
    lines.append(f"- The server stopped cleanly (no 'terminate called', no traceback in its log): "
                 f"{'yes' if record['server_stopped_cleanly'] else 'NO'}.")
    return lines


if __name__ == "__main__":
    sys.exit(main())
