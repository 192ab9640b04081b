"""The CLI end to end on digits: duplicates, then export; errors are one line and exit 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", "--cache-dir", str(cache), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_duplicates_then_export(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    out = run("duplicates", "--dataset", "digits", "--radius", "4", cache=cache)
    assert out.returncode == 0, out.stderr
    assert "train/test leakage:" in out.stdout and "Within class:" in out.stdout
    removed = int(out.stdout.split("dedup (within class, train): removes ")[1].split(" ")[0].replace(",", ""))
    target = tmp_path / "export"
    exp = run("export", "--dataset", "digits", "--radius", "4", "--out", str(target), "--images", cache=cache)
    assert exp.returncode == 0, exp.stderr
    assert "(from cache)" in exp.stdout  # the index was not recomputed
    rows = list(csv.DictReader(open(target / "manifest.csv", encoding="utf-8")))
    doc = json.loads((target / "manifest.json").read_text())
    assert len(rows) == 1347 == doc["kept"] + doc["removed"]
    assert sum(r["status"] == "removed" for r in rows) == removed == doc["removed"]
    assert all(r["representative"] and r["reason"].startswith("redundant") for r in rows if r["status"] == "removed")
    assert len(list((target / "images").rglob("*.png"))) == doc["kept"]


def test_export_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    out = run("export", "--out", str(tmp_path), cache=tmp_path / "c")
    assert out.returncode == 2 and "not empty" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_bad_arguments_are_one_clear_line(tmp_path: Path) -> None:
    for args, words in [(("duplicates", "--radius", "99"), "between 0 and 12"),
                        (("duplicates", "--dataset", "nope"), "unknown dataset"),
                        (("hash", "--dataset", f"imagefolder:{tmp_path}/absent"), "not found")]:
        out = run(*args, cache=tmp_path / "c")
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_an_old_option_spelling_still_works_and_names_its_replacement(tmp_path: Path) -> None:
    old = run("duplicates", "--dataset", "digits", "--threshold", "4", "--keep", "largest", cache=tmp_path / "c")
    new = run("duplicates", "--dataset", "digits", "--radius", "4", "--keep-rule", "largest", cache=tmp_path / "c")
    assert old.returncode == 0 == new.returncode, old.stderr
    assert "note: --threshold is now --radius" in old.stderr and "note: --keep is now --keep-rule" in old.stderr
    summary = [line for line in old.stdout.splitlines() if line.startswith("dedup")]
    assert summary and summary[0].split(", cut in")[0] == [
        line for line in new.stdout.splitlines() if line.startswith("dedup")][0].split(", cut in")[0]


def test_candidates_prints_the_ranked_pairs_and_writes_them_all(tmp_path: Path) -> None:
    out = run("candidates", "--dataset", "digits", "--scope", "leakage", "--top", "5", "--csv",
              str(tmp_path / "pairs.csv"), cache=tmp_path / "c")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()[:1].isdigit() and "digits/test/" in line]
    assert len(lines) == 5 and [int(line.split()[0]) for line in lines] == [1, 2, 3, 4, 5]
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    rows = list(csv.DictReader(open(tmp_path / "pairs.csv", encoding="utf-8")))
    assert len(rows) > 5 and rows[0]["image"].startswith("digits/test/")
    assert rows[0]["match"].startswith("digits/train/")
