"""One truth from the page to the report: the same settings give the same figures on Home, Near-duplicates,
Export, in the report and from the CLI, whichever near-duplicate method and parameters are chosen."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, metric, page

from core.cli import build_parser
from core.cli.common import settings as cli_settings
from core.data.datasets import load_digits
from core.features.hashing import HashConfig
from core.pipelines.report import build_report
from core.pipelines.settings import DUP_METHODS, NearDupSettings, Settings

CASES = [({"dup_method": "pair score", "min_score": 0.97}, NearDupSettings(method="pair score", min_score=0.97),
          ["--dup-method", "pair-score", "--min-score", "0.97"]),
         ({"dup_method": "hash", "radius": 6, "hash_method": "dhash"},
          NearDupSettings(method="hash", radius=6, hash=HashConfig("dhash")),
          ["--dup-method", "hash", "--radius", "6", "--method", "dhash"])]


def _report_figures(html: str) -> tuple[int, int]:
    removed = re.search(r'<div class="card"><b[^>]*>([\d,]+)</b>near-duplicates', html)
    leaked = re.search(r'id="leaked-count">([\d,]+)</b>', html)
    assert removed and leaked
    return int(removed.group(1).replace(",", "")), int(leaked.group(1).replace(",", ""))


@pytest.mark.parametrize("state, near, flags", CASES, ids=["pair score at 0.97", "dHash within 6 bits"])
def test_one_setting_gives_the_same_figures_everywhere(state, near, flags, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDEX_JUDGMENTS_DIR", str(tmp_path))
    pages = {name: page(f"views/{name}.py", **state).run() for name in ("home", "near_duplicates", "export")}
    for name, at in pages.items():
        assert not at.exception, (name, [e.value for e in at.exception])
    removed, leaked = metric(pages["near_duplicates"], "Images removed"), metric(pages["near_duplicates"],
                                                                                 "Leaked test images")
    assert metric(pages["home"], "Near-duplicates") == removed
    assert metric(pages["home"], "Train/test leakage") == leaked
    said = next(m.value for m in pages["export"].markdown if "The current settings keep" in m.value)
    assert f"remove **{int(removed):,}**" in said

    html = build_report(load_digits(), Settings("digits", near))
    assert _report_figures(html) == (removed, leaked)
    assert near.describe() in html.replace("&#x27;", "'"), "the settings block names the method and its parameters"

    out = subprocess.run([sys.executable, "-m", "core", "duplicates", "--dataset", "digits", *flags], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "REDEX_JUDGMENTS_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert f"removes {int(removed):,} of" in out.stdout and f"leakage: {int(leaked):,} of" in out.stdout


def test_the_cli_and_the_defaults_build_one_settings_object() -> None:
    args = build_parser().parse_args(["report", "--dataset", "digits", "--dup-method", "pair-score", "--min-score",
                                      "0.95", "--keep-fraction", "0.8", "--budget", "epochs"])
    s = cli_settings(args)
    assert s.near_dup == NearDupSettings(method=DUP_METHODS[0], min_score=0.95)
    assert s.semantic.keep_fraction == 0.8 and s.training.budget == "epochs"
    assert cli_settings(build_parser().parse_args(["report"])) == Settings(), "every default is the Settings default"
    with pytest.raises(ValueError, match="between 0 and 12"):
        NearDupSettings(method="hash", radius=13)
