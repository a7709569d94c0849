"""Latent names and notes: validated, saved atomically, safe with several writers, exported as CSV, kept
in the user's data folder under the bundle's identity (never in the bundle) with their author and time."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mammo_sae.bundle import BundleError
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import LatentNotes, bundle_identity, notes_folder
from mammo_sae.demo import demo_bundle_dir


def test_save_read_label_and_export(tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, d_sae=100)
    notes.save(7, "bright specks", "calcification", "fires on clusters")
    notes.save(3, "<script>alert(1)</script>", "artifact / marker")
    assert notes.label(7) == "#7 bright specks" and notes.label(8) == "#8"
    assert notes.get(3)["name"] == "<script>alert(1)</script>", "stored verbatim; the app shows it as text"
    csv = notes.to_csv().splitlines()
    assert csv[0] == "latent,name,category,note,author,updated" and csv[1].startswith("3,")
    notes.save(7, "", "unclear", "")
    assert notes.get(7) is None, "clearing every field removes the entry"


def test_bad_entries_are_refused(tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, d_sae=10)
    with pytest.raises(BundleError, match=r"outside 0\.\.9"):
        notes.save(10, "x", "mass")
    with pytest.raises(BundleError, match="category must be one of"):
        notes.save(1, "x", "tumour")
    with pytest.raises(BundleError, match="at most 80"):
        notes.save(1, "x" * 81, "mass")
    (tmp_path / "latent_notes.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a mapping"):
        notes.all()


def _write_many(folder: str, start: int) -> None:
    notes = LatentNotes(folder, d_sae=1000)
    for latent in range(start, start + 40):
        notes.save(latent, f"name {latent}", "anatomy")


def test_concurrent_writers_keep_every_edit(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), start)) for start in (0, 100, 200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    data = json.loads((tmp_path / "latent_notes.json").read_text())
    assert len(data) == 120


def test_a_save_from_a_stale_form_keeps_the_fields_others_changed(tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, d_sae=10)
    base_a, base_b = {}, {}  # both editors opened latent 4 before either saved
    notes.save(4, "specks", "unclear", "", base=base_a)
    notes.save(4, "", "calcification", "clustered, fine", base=base_b)
    entry = notes.get(4)
    assert (entry["name"], entry["category"], entry["note"]) == ("specks", "calcification", "clustered, fine")
    stale = {"name": "specks", "category": "unclear", "note": ""}
    notes.save(4, "fine specks", "unclear", "", base=stale)
    assert notes.get(4)["note"] == "clustered, fine" and notes.get(4)["category"] == "calcification"
    notes.save(4, "", "unclear", "")
    assert notes.get(4) is None, "without a base the form's values are written as they are"


def test_a_labeller_reads_the_notes_once_and_labels_like_label(tmp_path: Path) -> None:
    notes = LatentNotes(tmp_path, d_sae=8)
    notes.save(3, "spiculated edge", "mass")
    label = notes.labeller()
    assert [label(t) for t in (3, 4)] == [notes.label(3), notes.label(4)] == ["#3 spiculated edge", "#4"]
    notes.save(4, "marker", "artifact / marker")
    assert label(4) == "#4" and notes.labeller()(4) == "#4 marker"  # a snapshot of one read


def tree_listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_note_on_the_shipped_demo_goes_to_the_data_folder_with_author_and_time(tmp_path: Path) -> None:
    demo = demo_bundle_dir()
    manifest = read_manifest(demo)
    before = tree_listing(demo.parent)
    notes = LatentNotes.for_bundle(manifest, tmp_path / "notes")
    started = datetime.now(UTC).replace(microsecond=0)
    notes.save(12, "specks", "calcification", "fine, clustered", author="  Dr.  Ada  ")
    assert tree_listing(demo.parent) == before, "nothing is written into the repository's weights/demo"
    assert notes.path == tmp_path / "notes" / bundle_identity(manifest) / "latent_notes.json"
    again = LatentNotes.for_bundle(read_manifest(demo), tmp_path / "notes").get(12)
    assert (again["name"], again["author"]) == ("specks", "Dr. Ada")
    saved = datetime.fromisoformat(again["updated"])
    assert saved.tzinfo is not None and saved.utcoffset().total_seconds() == 0 and saved >= started
    assert notes.table().loc[0, "author"] == "Dr. Ada"


def test_the_identity_ignores_locations_and_follows_the_inputs() -> None:
    manifest = read_manifest(demo_bundle_dir())
    moved = copy.deepcopy(manifest)
    moved["inputs"]["dataset"]["root"] = "/somewhere/else"
    moved["inputs"]["sae"]["path"] = "../../elsewhere/sae"
    moved["created"], moved["command"] = "2030-01-01T00:00:00+00:00", "python -m mammo_sae.analyze ..."
    assert bundle_identity(moved) == bundle_identity(manifest), "a moved or copied bundle keeps its notes"
    other = copy.deepcopy(manifest)
    other["inputs"]["sae"]["weights_sha256"] = "0" * 64
    assert bundle_identity(other) != bundle_identity(manifest), "another SAE is another bundle"
    assert notes_folder(manifest, "~/n") == Path(os.path.expanduser("~/n")) / bundle_identity(manifest)


def test_concurrent_writers_in_a_fresh_notes_folder_keep_every_edit(tmp_path: Path) -> None:
    folder = tmp_path / "not-yet" / "made"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(str(folder), start)) for start in (0, 100)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(json.loads((folder / "latent_notes.json").read_text())) == 80
