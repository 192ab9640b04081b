"""Judgments of candidate pairs: saved atomically per dataset, read back after a restart, never half
written; what they mean (precision of the list, the cleaned test list, the training removals); the
Review page judging with its buttons and the CLI's --judgments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import page
from streamlit.testing.v1 import AppTest

from core.data.datasets import TEST, TRAIN, make_dataset
from core.data.judgments import JudgmentsError, JudgmentStore
from core.selections.candidates import Candidates
from core.selections.review import cleaned_test_list, judged_rows, precision, queue, read_judgments, training_removals


@pytest.fixture
def small():  # type: ignore[no-untyped-def]
    """8 images: 0-5 train (classes 0,0,0,1,1,1), 6-7 test (classes 0, 1)."""
    images = np.arange(8 * 4 * 4 * 3, dtype=np.uint8).reshape(8, 4, 4, 3)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    split = np.array([TRAIN] * 6 + [TEST] * 2, np.int8)
    ids = np.array([f"img{i}.png" for i in range(8)])
    return make_dataset("small", images, labels, split, ("cat", "dog"), ids)


def _cands(pairs: list[tuple[int, int]], scope: str = "within") -> Candidates:
    n = len(pairs)
    a, b = (np.array(x, np.int64) for x in zip(*pairs))
    return Candidates(scope, a, b, np.ones(n, np.float32), np.linspace(1, 0.5, n, dtype=np.float32),
                      np.full(n, "pixels16"))


def test_judgments_survive_a_new_store_and_change_in_place(tmp_path: Path) -> None:
    store = JudgmentStore("fp", tmp_path)
    store.judge(6, 0, "same", "leakage")
    store.judge(1, 2, "near", "within")
    store.judge(0, 6, "different", "leakage")  # the same pair shown the other way round: one judgment, changed
    again = JudgmentStore("fp", tmp_path).load()  # a restarted server reads the file anew
    assert {k: j.label for k, j in again.items()} == {(0, 6): "different", (1, 2): "near"}
    JudgmentStore("fp", tmp_path).forget(2, 1)
    assert list(JudgmentStore("fp", tmp_path).load()) == [(0, 6)]
    assert JudgmentStore("other", tmp_path).load() == {}  # one file per dataset fingerprint
    with pytest.raises(ValueError, match="unknown judgment"):
        store.judge(1, 2, "maybe", "within")


def test_a_write_killed_halfway_leaves_the_previous_judgments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JudgmentStore("fp", tmp_path)
    store.judge(1, 2, "same", "within")
    before = store.path.read_bytes()

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # the process dies between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.judge(3, 4, "near", "within")
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert list(store.load()) == [(1, 2)]


def test_an_unreadable_judgments_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    store = JudgmentStore("fp", tmp_path)
    store.path.write_text('{"format": 1, "judgments": [{"a": 1')
    with pytest.raises(JudgmentsError, match="left as it is"):
        store.load()
    with pytest.raises(JudgmentsError):
        store.judge(1, 2, "same", "within")  # never overwrites what it cannot read
    assert store.path.read_text() == '{"format": 1, "judgments": [{"a": 1'
    store.path.write_text(json.dumps({"format": 1, "judgments": [{"a": 1, "b": 2, "label": "yes", "scope": "x",
                                                                   "at": 0}]}))
    with pytest.raises(JudgmentsError, match="label"):
        store.load()


def test_precision_counts_only_judged_pairs_within_the_top(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cands = _cands([(0, 1), (0, 2), (3, 4), (4, 5)])
    store = JudgmentStore(small.fingerprint, tmp_path)
    store.judge(0, 1, "same", "within")
    store.judge(2, 0, "similar", "within")
    store.judge(5, 4, "near", "within")
    p2, p4 = precision(cands, store.load(), (2, 4))
    assert (p2.top, p2.judged, p2.duplicates, p2.value) == (2, 2, 1, 0.5)
    assert (p4.judged, p4.duplicates) == (3, 2)
    assert "1 not judged yet" in str(p4)
    assert list(queue(small, cands, {1})) == [2, 3]  # the class filter keeps pairs with a dog in them


def test_removals_keep_one_per_duplicate_group_drop_conflicts_and_never_merge_different(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = JudgmentStore(small.fingerprint, tmp_path)
    store.judge(1, 0, "same", "within")
    store.judge(2, 1, "different", "within")  # 2 is not a duplicate of 1: it stays
    store.judge(3, 0, "near", "cross")  # a cat and a dog that are the same photo: both go
    store.judge(4, 5, "similar", "within")
    store.judge(6, 2, "same", "leakage")
    store.judge(7, 3, "different", "leakage")
    judged = store.load()
    rm = training_removals(small, judged)
    assert rm.duplicates.tolist() == [1] and rm.conflicts.tolist() == [0, 3] and rm.all.tolist() == [0, 1, 3]
    assert cleaned_test_list(small, judged).tolist() == [6]


def test_the_judged_csv_reads_back_as_the_same_judgments(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    store = JudgmentStore(small.fingerprint, tmp_path)
    store.judge(6, 2, "same", "leakage")
    store.judge(1, 0, "similar", "within")
    cands = _cands([(6, 2), (5, 4)], "leakage")
    rows = judged_rows(small, store.load(), cands)
    assert rows[0]["rank"] == 1 and rows[0]["image_split"] == "test" and rows[1]["rank"] == ""
    path = tmp_path / "judged.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    back = read_judgments(path, small)
    assert {k: j.label for k, j in back.items()} == {k: j.label for k, j in store.load().items()}
    assert {k: j.label for k, j in read_judgments(store.path, small).items()} == {(2, 6): "same", (0, 1): "similar"}


def test_the_cli_reports_the_precision_of_the_list_from_a_judgments_file(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from core.cli import main
    from core.data.datasets import load_digits
    from core.selections.candidates import cached_candidates

    ds = load_digits()
    cands = cached_candidates(ds, "leakage")
    store = JudgmentStore(ds.fingerprint, tmp_path)
    for r, label in enumerate(["same", "same", "different"]):
        store.judge(int(cands.a[r]), int(cands.b[r]), label, "leakage")
    assert main(["candidates", "--dataset", "digits", "--top", "3", "--judgments", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "top 3: 2 of 3 judged pairs are duplicates (66.7%)" in out


def test_the_review_page_judges_advances_and_a_restarted_app_keeps_every_judgment() -> None:
    def review() -> AppTest:
        return page("views/review.py").run()

    at = review()
    assert not at.exception  # digits: the leakage list holds each of the 450 test images once
    assert "0 of 450 judged" in at.get("progress")[0].proto.text
    at.button(key="judge_same").click().run()
    at.button(key="judge_different").click().run()
    assert at.session_state["review_pos"] == 2
    assert "2 of 450 judged" in at.get("progress")[0].proto.text
    at.button(key="review_back").click().run()
    assert "judged **Different**" in at.markdown[1].value
    at.button(key="review_undo").click().run()
    assert "not judged yet" in at.markdown[1].value

    again = review()  # a new session, as after a restart: the store on disk is the truth
    assert "1 of 450 judged" in again.get("progress")[0].proto.text
    assert again.session_state["review_pos"] == 1  # it opens at the first pair not judged yet
    assert "**Pair 2 of 450**" in again.markdown[1].value


def test_judgments_override_the_minimum_score_in_every_scope(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from core.selections.review import accepted, leaked, pair_selection

    within = _cands([(0, 1), (1, 2), (3, 4), (4, 5)])  # scores 1.0, 0.83, 0.67, 0.5
    store = JudgmentStore(small.fingerprint, tmp_path)
    unjudged = accepted(within, {}, 0.8)
    assert list(zip(unjudged.a.tolist(), unjudged.b.tolist())) == [(0, 1), (1, 2)]
    store.judge(1, 2, "different", "within")  # above the minimum, but judged: never merged
    store.judge(5, 4, "near", "within")  # below it, but judged a duplicate: merged
    judged = store.load()
    took = accepted(within, judged, 0.8)
    assert list(zip(took.a.tolist(), took.b.tolist())) == [(0, 1), (4, 5)]
    sel = pair_selection(small, within, judged, 0.8)
    assert sel.removed.tolist() == [1, 5] and sel.representative[1] == 0 and sel.representative[5] == 4
    assert sel.kept.tolist() == [0, 2, 3, 4]
    store.judge(2, 0, "same", "within")  # not in the list: a duplicate judgment still joins the group
    again = pair_selection(small, within, store.load(), 0.8)
    assert again.removed.tolist() == [1, 2, 5] and again.representative[2] == 0 and again.distance[2] == 0.0
    judged = store.load()
    leak = _cands([(6, 0), (7, 3)], "leakage")  # scores 1.0, 0.5
    assert leaked(small, leak, judged, 0.8).tolist() == [6]
    store.judge(0, 6, "similar", "leakage")
    store.judge(7, 3, "same", "leakage")
    assert leaked(small, leak, store.load(), 0.8).tolist() == [7]
    store.judge(6, 2, "same", "leakage")  # not in the list (its best match is image 0): a duplicate still counts
    assert leaked(small, leak, store.load(), 0.8).tolist() == [6, 7]


def test_the_near_duplicates_page_counts_judged_pairs_as_judged(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from core.data.datasets import load_digits
    from core.selections.candidates import cached_candidates

    monkeypatch.setenv("REDEX_JUDGMENTS_DIR", str(tmp_path))
    ds = load_digits()
    top = cached_candidates(ds, "within")
    at = page("views/near_duplicates.py")
    at.session_state["dup_method"] = "pair score"
    at.session_state["min_score"] = float(top.score[0]) - 1e-6  # only the best pair is above the minimum
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs (within class)"] == "1" and metrics["Images removed"] == "1"
    JudgmentStore(ds.fingerprint).judge(int(top.a[0]), int(top.b[0]), "different", "within")
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs (within class)"] == "0" and metrics["Images removed"] == "0"


def test_accepted_equals_the_rule_pair_by_pair(tmp_path: Path) -> None:
    """The vectorised rule against its definition, on random pairs and random judgments."""
    from core.data.judgments import LABELS, Judgment
    from core.selections.review import accepted

    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    cands = Candidates("within", a, b, np.ones(2000, np.float32), rng.random(2000).astype(np.float32),
                       np.full(2000, "pixels16"))
    judged = {}
    for r in rng.choice(2000, 300, replace=False):
        x, y = (int(cands.b[r]), int(cands.a[r])) if r % 2 else (int(cands.a[r]), int(cands.b[r]))
        judged[(min(x, y), max(x, y))] = Judgment(x, y, str(rng.choice(LABELS)), "within", 0.0)
    expected = [r for r in range(2000)
                if (j := judged.get((min(a[r], b[r]), max(a[r], b[r])))) is not None and j.is_duplicate
                or j is None and cands.score[r] >= 0.6]
    got = accepted(cands, judged, 0.6)
    assert list(zip(got.a.tolist(), got.b.tolist())) == [(int(a[r]), int(b[r])) for r in expected]


def test_home_shows_the_near_duplicates_pages_figures_when_the_pair_score_is_the_method(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One source of truth: Home's within-class and leakage figures are the Near-duplicates page's, judged
    pairs included, whenever that page's method is the pair score."""
    from core.data.datasets import load_digits
    from core.selections.candidates import cached_candidates

    monkeypatch.setenv("REDEX_JUDGMENTS_DIR", str(tmp_path))
    ds = load_digits()
    top = cached_candidates(ds, "within")
    state = {"dup_method": "pair score", "min_score": float(top.score[0]) - 1e-6}
    pages = {}
    for name in ("near_duplicates", "home"):
        pages[name] = page(f"views/{name}.py", timeout=300)
        for k, v in state.items():
            pages[name].session_state[k] = v
        pages[name].run()
        assert not pages[name].exception, [e.value for e in pages[name].exception]
    home = {m.label: m.value for m in pages["home"].metric}
    near = {m.label: m.value for m in pages["near_duplicates"].metric}
    label = "Near-duplicates (pair score)"
    assert home[label] == f"{near['Images removed']} removed" == "1 removed"
    JudgmentStore(ds.fingerprint).judge(int(top.a[0]), int(top.b[0]), "different", "within")
    pages["home"].run()
    assert {m.label: m.value for m in pages["home"].metric}[label] == "0 removed"
