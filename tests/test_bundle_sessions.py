"""Review sessions: named worklists saved beside the notes, with names that make a safe key on any file
system, kept in order with a note per study, safe with several writers, renamed without clobbering another,
and opened with the studies a bundle lacks marked missing rather than refused."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from mammo_sae.bundle import BundleError
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import notes_folder
from mammo_sae.bundle.sessions import ReviewSessions, SessionItem, session_key, session_name
from mammo_sae.demo import demo_bundle_dir


def test_a_session_round_trips_in_order_with_its_notes_author_and_times(tmp_path: Path) -> None:
    sessions = ReviewSessions(tmp_path)
    saved = sessions.save(
        "Tuesday audit",
        [
            "s3",
            ("s1", " look at the marker "),
            {"study": "s2", "note": float("nan")},
            SessionItem("s9", "last"),
        ],
        author=" Dr.  Ada ",
    )
    again = ReviewSessions(tmp_path).load("Tuesday audit")
    assert again == saved and again.studies == ["s3", "s1", "s2", "s9"]
    assert again.note("s1") == "look at the marker" and again.note("s2") == "" and again.author == "Dr. Ada"
    assert again.created == again.updated and again.created.endswith("+00:00")
    resaved = sessions.save("tuesday  AUDIT", ["s1"], author="Bo")
    assert resaved.created == saved.created and resaved.name == "tuesday AUDIT", (
        "one session, renamed by case"
    )
    assert sessions.names() == ["tuesday AUDIT"] and sessions.load("Tuesday Audit").studies == ["s1"]
    table = sessions.table()
    assert table.to_dict("records")[0]["studies"] == 1 and list(table.columns) == [
        "name",
        "studies",
        "author",
        "created",
        "updated",
    ]


@pytest.mark.parametrize(
    "name",
    ["", "   ", "...", "../etc/passwd", "a/b", "a\\b", "nul\x00", "<b>x</b>", "x" * 61, "ok?", "semi;colon"],
)
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BundleError, match="session"):
        ReviewSessions(tmp_path).save(name, ["s1"])
    assert not (tmp_path / "review_sessions.json").exists()


def test_good_names_normalise_to_one_key() -> None:
    assert session_name("  Week  12 - cals_v1.2 ") == "Week 12 - cals_v1.2"
    assert session_key("Week 12 - CALS_v1.2") == session_key("week 12 -  cals_V1.2")
    assert session_name("Überprüfung 3") == "Überprüfung 3", "letters are not only ASCII ones"
    assert session_name("x" * 60) == "x" * 60


def test_bad_worklists_are_refused(tmp_path: Path) -> None:
    sessions = ReviewSessions(tmp_path)
    with pytest.raises(BundleError, match="twice"):
        sessions.save("a", ["s1", "s2", "s1"])
    with pytest.raises(BundleError, match="at most 500"):
        sessions.save("a", [("s1", "n" * 501)])
    with pytest.raises(BundleError, match="study id"):
        sessions.save("a", [""])
    with pytest.raises(BundleError, match="a session item is"):
        sessions.save("a", [("s1", "n", "extra")])
    with pytest.raises(BundleError, match="author"):
        sessions.save("a", ["s1"], author="x" * 81)
    assert sessions.names() == []
    assert sessions.save("empty", []).studies == [], "an empty worklist is a start a presenter fills later"


def test_overwrite_rename_and_delete(tmp_path: Path) -> None:
    sessions = ReviewSessions(tmp_path)
    sessions.save("one", ["s1"])
    sessions.save("two", ["s2"])
    with pytest.raises(BundleError, match="exists already"):
        sessions.save("ONE", ["s3"], overwrite=False)
    with pytest.raises(BundleError, match="exists already"):
        sessions.rename("one", "Two")
    with pytest.raises(BundleError, match="no review session called 'three'"):
        sessions.rename("three", "four")
    renamed = sessions.rename("one", "First round")
    assert renamed.studies == ["s1"] and sessions.names() == ["First round", "two"]
    assert sessions.rename("first round", "FIRST round").name == "FIRST round", "a change of case only"
    with pytest.raises(BundleError, match=r"no review session called 'one' \(saved: FIRST round, two\)"):
        sessions.load("one")
    assert sessions.delete("TWO") and not sessions.delete("two") and sessions.names() == ["FIRST round"]
    assert sessions.exists("first ROUND") and not sessions.exists("two")


def test_a_session_naming_studies_the_bundle_lacks_opens_with_them_marked(tmp_path: Path) -> None:
    sessions = ReviewSessions(tmp_path)
    sessions.save("mixed", ["s1", "gone", "s2"])
    session = sessions.load("mixed", known_studies={"s1", "s2", "s3"})
    assert session.missing == ["gone"] and session.present == ["s1", "s2"]
    assert [item.missing for item in session.items] == [False, True, False]
    assert sessions.load("mixed").missing == [], "without the bundle's studies nothing is marked"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is unreadable"),
        ('["a"]', "is not a mapping"),
        ('{"a": {"name": "a"}}', "malformed session 'a'"),
    ],
)
def test_a_damaged_file_says_what_to_do_and_is_never_overwritten(
    tmp_path: Path, content: str, message: str
) -> None:
    sessions = ReviewSessions(tmp_path)
    sessions.path.write_text(content)
    with pytest.raises(BundleError, match=message) as error:
        sessions.names()
    assert "restore it from a backup or delete it" in str(error.value)
    with pytest.raises(BundleError, match=message):
        sessions.save("new", ["s1"])
    with pytest.raises(BundleError, match=message):
        sessions.delete("a")
    assert sessions.path.read_text() == content


def _save_many(folder: str, prefix: str) -> None:
    sessions = ReviewSessions(folder)
    for i in range(12):
        sessions.save(f"{prefix} {i}", [f"{prefix}-{i}-{j}" for j in range(3)], author=prefix)


def _in_three_processes(target, folder: Path) -> None:
    """``target(folder, who)`` for three writers at once, each in its own process; all must succeed."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=(str(folder), who)) for who in ("ada", "bo", "cy")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0


def test_several_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    _in_three_processes(_save_many, tmp_path)
    sessions = ReviewSessions(tmp_path)
    assert len(sessions.names()) == 36
    assert sessions.load("bo 7").studies == ["bo-7-0", "bo-7-1", "bo-7-2"]


def test_sessions_of_the_shipped_demo_lie_in_its_notes_folder(tmp_path: Path) -> None:
    manifest = read_manifest(demo_bundle_dir())
    sessions = ReviewSessions.for_bundle(manifest, tmp_path)
    sessions.save("demo", ["x"])
    assert sessions.path.parent == notes_folder(manifest, tmp_path)
    assert json.loads(sessions.path.read_text())["demo"]["items"] == [{"study": "x", "note": ""}]


def test_adding_a_study_appends_it_once_and_keeps_its_place(tmp_path: Path) -> None:
    sessions = ReviewSessions(tmp_path)
    sessions.add("Tuesday", "s1", "first", author="Dr. Ada")
    sessions.add("Tuesday", "s2")
    again = sessions.add("tuesday", "s1", "look at the marker")  # the same session, the same study
    assert again.studies == ["s1", "s2"] and again.items[0].note == "look at the marker"
    assert again.name == "Tuesday" and again.author == "Dr. Ada", "the first save named and signed it"
    with pytest.raises(BundleError, match="at most"):
        sessions.add("Tuesday", "s3", "x" * 10_000)
    assert sessions.load("Tuesday").studies == ["s1", "s2"], "a refused add changes nothing"


def _add_many(folder: str, who: str) -> None:
    sessions = ReviewSessions(folder)
    for i in range(15):
        sessions.add("shared", f"{who}-{i}")


def test_several_processes_adding_to_one_session_lose_nothing(tmp_path: Path) -> None:
    _in_three_processes(_add_many, tmp_path)
    studies = ReviewSessions(tmp_path).load("shared").studies
    assert sorted(studies) == sorted(f"{w}-{i}" for w in ("ada", "bo", "cy") for i in range(15))
    assert [s for s in studies if s.startswith("bo")] == [f"bo-{i}" for i in range(15)], "each in its order"
