"""Reviewer verdicts: validated, keyed by (item, reviewer) so nobody overwrites a colleague, saved safely by
several processes at once, refused (not overwritten) when the file is damaged, exported as CSV a
spreadsheet can not run, and summed up into the agreement the Overview shows."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mammo_sae.bundle import BundleError, locked_json
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import LatentNotes, bundle_identity
from mammo_sae.bundle.spreadsheet import neutralise_formula
from mammo_sae.bundle.verdicts import (
    CSV_COLUMNS,
    CaseVerdict,
    LatentVerdict,
    Verdicts,
    agreement,
    agreement_table,
)
from mammo_sae.demo import demo_bundle_dir


def test_a_verdict_round_trips_with_its_reviewer_and_utc_time(tmp_path: Path) -> None:
    verdicts = Verdicts(tmp_path, d_sae=50)
    started = datetime.now(UTC).replace(microsecond=0)
    saved = verdicts.save_case(
        "s1", "  Dr.   Ada ", evidence="partly", model_error="false positive", note=" x "
    )
    assert (saved.reviewer, saved.evidence, saved.model_error, saved.note) == (
        "Dr. Ada",
        "partly",
        "false positive",
        "x",
    )
    again = Verdicts(tmp_path, d_sae=50).case_verdict("s1", "dr. ada")
    assert again == saved, "read back as saved; the reviewer is found whatever the case and spacing"
    when = datetime.fromisoformat(again.updated)
    assert when.utcoffset().total_seconds() == 0 and when >= started
    latent = verdicts.save_latent(7, "Dr. Ada", "unsure")
    assert verdicts.latent_verdict(7, "DR. ADA") == latent and verdicts.latent_verdict(8, "Dr. Ada") is None
    assert verdicts.save_case("s2", "Bo", evidence=None).evidence is None, (
        "a study without a finding: not judged"
    )
    assert verdicts.reviewed_studies() == {"s1", "s2"}


def test_two_reviewers_keep_their_own_verdicts_and_a_later_save_replaces_ones_own(tmp_path: Path) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    verdicts.save_case("s1", "Ada", evidence="yes")
    verdicts.save_case("s1", "Bo", evidence="no", model_error="false negative")
    verdicts.save_case("s1", "ada", evidence="partly", note="on second look")
    by_reviewer = {v.reviewer: (v.evidence, v.note) for v in verdicts.case_verdicts("s1")}
    assert by_reviewer == {"ada": ("partly", "on second look"), "Bo": ("no", "")}
    verdicts.save_latent(3, "Ada", "yes")
    verdicts.save_latent(3, "Bo", "no")
    verdicts.save_latent(3, "Bo", "yes")
    assert [(v.reviewer, v.coherent) for v in verdicts.latent_verdicts(3)] == [("Ada", "yes"), ("Bo", "yes")]
    assert verdicts.remove_case("s1", "BO") and not verdicts.remove_case("s1", "Bo")
    assert [v.reviewer for v in verdicts.case_verdicts("s1")] == ["ada"]
    assert verdicts.remove_case("s1", "Ada") and verdicts.reviewed_studies() == set()
    assert verdicts.remove_latent(3, "Ada") and [v.reviewer for v in verdicts.latent_verdicts(3)] == ["Bo"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: v.save_case("s1", "   ", evidence="yes"), "needs the reviewer's name"),
        (lambda v: v.save_case("s1", "x" * 81, evidence="yes"), "at most 80"),
        (lambda v: v.save_case("s1", "Ada\x00", evidence="yes"), "plain text"),
        (lambda v: v.save_case("", "Ada", evidence="yes"), "study id is plain text"),
        (lambda v: v.save_case("s" * 129, "Ada", evidence="yes"), "study id is plain text"),
        (
            lambda v: v.save_case("s1", "Ada", evidence="maybe"),
            "evidence on the finding must be one of yes, partly, no",
        ),
        (lambda v: v.save_case("s1", "Ada", evidence="yes", model_error="fp"), "model error must be one of"),
        (lambda v: v.save_case("s1", "Ada", evidence="yes", note="n" * 2001), "at most 2000"),
        (lambda v: v.save_latent(10, "Ada", "yes"), r"outside 0\.\.9"),
        (lambda v: v.save_latent(-1, "Ada", "yes"), r"outside 0\.\.9"),
        (lambda v: v.save_latent(1, "Ada", "maybe"), "coherent concept must be one of yes, no, unsure"),
    ],
)
def test_bad_verdicts_are_refused_and_nothing_is_written(tmp_path: Path, call, message: str) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    with pytest.raises(BundleError, match=message):
        call(verdicts)
    assert not verdicts.path.exists()


def _review_many(folder: str, reviewer: str) -> None:
    verdicts = Verdicts(folder, d_sae=100)
    for i in range(15):
        verdicts.save_case(f"study-{i}", reviewer, evidence="yes", note=f"{reviewer} {i}")
        verdicts.save_latent(i, reviewer, "yes")


def test_several_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "fresh" / "folder"
    context = multiprocessing.get_context("fork")
    reviewers = ["Ada", "Bo", "Cy", "Di"]
    workers = [context.Process(target=_review_many, args=(str(folder), name)) for name in reviewers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    verdicts = Verdicts(folder, d_sae=100)
    assert len(verdicts.cases()) == len(verdicts.latents()) == 15 * 4
    assert {v.note for v in verdicts.case_verdicts("study-3")} == {f"{r} 3" for r in reviewers}
    assert verdicts.agreement().coherent_latents == tuple(range(15))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is unreadable"),
        ("[1, 2]", "is not a mapping"),
        ('{"cases": [], "latents": {}}', "'cases' section that is not a mapping"),
        ('{"cases": {"s1": {"ada": {"evidence": "yes"}}}}', "malformed verdict on case 's1'"),
        ('{"latents": {"x": {}}}', "latent 'x' that is not a number"),
        ('{"votes": {}}', "unknown sections"),
    ],
)
def test_a_damaged_file_says_what_to_do_and_is_never_overwritten(
    tmp_path: Path, content: str, message: str
) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    verdicts.path.write_text(content)
    with pytest.raises(BundleError, match=message) as error:
        verdicts.cases()
    assert "restore it from a backup or delete it to start afresh" in str(error.value)
    with pytest.raises(BundleError, match=message):
        verdicts.save_case("s2", "Bo", evidence="no")
    with pytest.raises(BundleError, match=message):
        verdicts.save_latent(1, "Bo", "no")
    assert verdicts.path.read_text() == content, "what was written stays for the user to restore"


def test_a_full_disk_fails_clearly_and_keeps_the_saved_verdicts(tmp_path: Path, monkeypatch) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    verdicts.save_case("s1", "Ada", evidence="yes")
    before = verdicts.path.read_bytes()

    def full(path, text) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(locked_json, "atomic_write_text", full)
    with pytest.raises(BundleError, match=r"the verdicts in .* were not saved: No space left"):
        verdicts.save_case("s2", "Ada", evidence="no")
    assert verdicts.path.read_bytes() == before


def test_the_csv_holds_both_kinds_and_no_cell_a_spreadsheet_would_run(tmp_path: Path) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    verdicts.save_case("s1", "=Eve", evidence="yes", note='=HYPERLINK("http://x", "click")')
    verdicts.save_case("s1", "@Mal", evidence="no", note="+1 then -2")
    verdicts.save_case("-s2", "Ada", evidence=None, note="plain, with a comma\nand a line")
    verdicts.save_latent(4, "Ada", "yes")
    text = verdicts.to_csv()
    table = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    assert list(table.columns) == CSV_COLUMNS
    assert sorted(table["kind"]) == ["case", "case", "case", "latent"]
    cells = table.to_numpy().ravel().tolist()
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert '\'=HYPERLINK("http://x", "click")' in cells and "'+1 then -2" in cells and "'-s2" in cells
    assert "'=Eve" in cells and "'@Mal" in cells and "plain, with a comma\nand a line" in cells
    latent_row = table[table["kind"] == "latent"].iloc[0]
    assert (latent_row["item"], latent_row["coherent"], latent_row["evidence"]) == ("4", "yes", "")
    assert [neutralise_formula(c) for c in ("\tx", "\rx", "a=b", 3)] == ["'\tx", "'\rx", "a=b", 3]


def test_the_latent_notes_csv_is_neutralised_the_same_way(tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, d_sae=10)
    notes.save(2, "=cmd|' /C calc'!A0", "mass", "@SUM(1)", author="-Eve")
    row = pd.read_csv(io.StringIO(notes.to_csv()), keep_default_na=False, dtype=str).iloc[0]
    assert (row["name"], row["note"], row["author"]) == ("'=cmd|' /C calc'!A0", "'@SUM(1)", "'-Eve")
    assert notes.get(2)["name"] == "=cmd|' /C calc'!A0", "stored as typed; only the export is neutralised"


def _case(study: str, reviewer: str, evidence: str | None, error: str = "no") -> CaseVerdict:
    return CaseVerdict(study, reviewer, evidence, error, "", "2026-12-02T08:00:00+00:00")


def _latent(latent: int, reviewer: str, coherent: str) -> LatentVerdict:
    return LatentVerdict(latent, reviewer, coherent, "2026-12-02T08:00:00+00:00")


def test_the_agreement_of_a_hand_made_set() -> None:
    cases = [
        _case("a", "Ada", "yes"),
        _case("a", "Bo", "yes"),  # a: two reviewers, agree
        _case("b", "Ada", "partly", "false positive"),
        _case("b", "Bo", "yes", "false positive"),  # b: disagree on evidence
        _case("b", "Cy", "yes", "false negative"),
        _case("c", "Ada", "no", "false positive"),  # c: one reviewer
        _case("d", "Bo", None),  # d: not judged
    ]
    latents = [
        _latent(1, "Ada", "yes"),
        _latent(1, "Bo", "yes"),  # coherent by two
        _latent(2, "Ada", "yes"),
        _latent(2, "Bo", "unsure"),  # only one yes
        _latent(5, "Ada", "yes"),
        _latent(5, "Bo", "yes"),
        _latent(5, "Cy", "no"),  # two yes, one no: still judged coherent by at least two
    ]
    summary = agreement(cases, latents)
    assert (summary.cases_reviewed, summary.case_verdicts, summary.evidence_judged) == (4, 7, 6)
    assert (summary.evidence_yes, summary.evidence_partly) == (4, 1)
    assert summary.share_yes == pytest.approx(4 / 6) and summary.share_yes_or_partly == pytest.approx(5 / 6)
    assert [(c.study, c.agree) for c in summary.per_case] == [
        ("a", True),
        ("b", False),
    ] and summary.agreed == 1
    assert summary.per_case[1].reviewers == ("Ada", "Bo", "Cy")
    assert summary.model_errors == {"false positive": 2, "false negative": 1}, "studies, not verdicts"
    assert summary.coherent_latents == (1, 5) and summary.latents_judged == 3
    assert summary.reviewers == ("Ada", "Bo", "Cy")
    table = agreement_table(summary)
    assert table.to_dict("records")[1] == {
        "study": "b",
        "reviewers": 3,
        "evidence on the finding": "partly, yes, yes",
        "model error": "false positive, false positive, false negative",
        "agree": False,
    }
    empty = agreement([], [])
    assert empty.share_yes is None and empty.cases_reviewed == 0 and agreement_table(empty).empty


def test_model_error_disagreement_counts_as_disagreement(tmp_path: Path) -> None:
    verdicts = Verdicts(tmp_path, d_sae=10)
    verdicts.save_case("s", "Ada", evidence="yes")
    verdicts.save_case("s", "Bo", evidence="yes", model_error="false positive")
    assert verdicts.agreement().per_case[0].agree is False


def test_verdicts_of_the_shipped_demo_lie_beside_its_notes_not_in_the_repository(tmp_path: Path) -> None:
    manifest = read_manifest(demo_bundle_dir())
    verdicts = Verdicts.for_bundle(manifest, tmp_path / "notes")
    notes = LatentNotes.for_bundle(manifest, tmp_path / "notes")
    assert verdicts.folder == notes.folder == tmp_path / "notes" / bundle_identity(manifest)
    assert verdicts.d_sae == int(manifest["sae"]["d_sae"])
    verdicts.save_latent(0, "Ada", "yes")
    notes.save(0, "edge", "anatomy")
    data = json.loads(verdicts.path.read_text())
    assert set(data) == {"latents"} and notes.get(0)["name"] == "edge", "two files, one folder"
    assert sorted(p.name for p in verdicts.folder.iterdir()) == [
        "latent_notes.json",
        "latent_notes.lock",
        "verdicts.json",
        "verdicts.lock",
    ]
