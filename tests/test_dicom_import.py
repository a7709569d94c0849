"""Importing a PACS-like export (phantoms re-encoded with tagged, misplaced, text-only, untagged and mirrored
orientations, identifying attributes filled with a marker, and non-mammography files) into an unlabelled
root: the right studies, laterality and view with where each came from, links to the right files, nothing
identifying written, nothing written next to the sources, safe replacement, clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread

from mammo_sae.core.errors import DataError
from mammo_sae.data.__main__ import main as data_main
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.dicom.orientation import TEXT_ATTRIBUTES, header_orientation
from mammo_sae.data.folder_import import (
    IMPORT_MANIFEST,
    PROVENANCE_CSV,
    UNLABELLED_SPLIT,
    ImportReport,
    import_folder,
)
from mammo_sae.data.image_orientation import image_orientation
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.data.phantom.pacs_export import VARIANTS, write_pacs_export
from mammo_sae.data.vindr import VindrIndex

MARK = "ZQXMARK"
STUDIES = 5  # 20 mammograms: each variant four times
EXPECTED_SOURCES = {  # variant -> (laterality source, view source)
    "tagged": ("ImageLaterality", "ViewPosition"),
    "misplaced": ("Laterality", "ViewCodeSequence"),
    "text-only": ("SeriesDescription", "SeriesDescription"),
    "untagged": ("image", "image"),
    "mirrored": ("ImageLaterality", "ViewPosition"),
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    generate_dataset(root, PhantomConfig(studies=STUDIES, seed=31, height=320, width=256), workers=1)
    return root


@pytest.fixture(scope="module")
def export(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("export")
    truth = write_pacs_export(phantoms, folder, mark=MARK)
    return folder, truth


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` (links not followed) with its size and modification time."""
    out = {}
    for top, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(top) / name
            info = path.lstat()
            out[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def imported(export, tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, dict, dict]:
    folder, _ = export
    before = _files(folder)
    report = import_folder(folder, tmp_path_factory.mktemp("imported") / "root", salt="import-test")
    return report, before, _files(folder)


def test_every_mammogram_gets_its_study_laterality_and_view(export, imported) -> None:
    folder, truth = export
    report, _, _ = imported
    table = pd.read_csv(report.root / "breast-level_annotations.csv", dtype=str, keep_default_na=False)
    assert len(table) == len(truth) == 4 * STUDIES
    joined = truth.merge(table, on="source_file", validate="one_to_one")
    assert (joined["laterality_x"] == joined["laterality_y"]).all()
    assert (joined["view"] == joined["view_position"]).all()
    assert joined.groupby("image_id_x")["image_id_y"].nunique().eq(1).all()
    assert table["study_id"].nunique() == STUDIES, "the four views of a study share its salted key"
    assert (table.groupby("study_id").size() == 4).all()
    assert set(table["split"]) == {UNLABELLED_SPLIT}
    assert (table[["breast_birads", "breast_density"]] == "").all().all(), "labels are left empty"
    for row in table.itertuples():  # each image links to its own source file
        link = report.root / "images" / row.study_id / f"{row.image_id}.dicom"
        assert link.is_symlink() and link.resolve() == (folder / row.source_file).resolve()


def test_provenance_says_where_each_value_came_from(export, imported) -> None:
    _, truth = export
    report, _, _ = imported
    table = pd.read_csv(report.root / "breast-level_annotations.csv", dtype=str, keep_default_na=False)
    provenance = pd.read_csv(report.root / PROVENANCE_CSV, dtype=str, keep_default_na=False)
    joined = truth.merge(table[["source_file", "image_id"]], on="source_file", suffixes=("_truth", ""))
    joined = joined.merge(provenance, on="image_id")
    assert set(joined["variant"]) == set(VARIANTS)
    for row in joined.itertuples():
        assert (row.laterality_source, row.view_source) == EXPECTED_SOURCES[row.variant], row.variant
        assert 0.5 <= float(row.laterality_confidence) <= 1 and 0.5 <= float(row.view_confidence) <= 1
        if row.variant == "untagged":
            assert float(row.view_confidence) < 1, "an answer from the pixels is never fully trusted"
    manifest = json.loads((report.root / IMPORT_MANIFEST).read_text())
    assert manifest["orientation"]["laterality from image"] == manifest["orientation"]["view from image"] == 4


def test_other_files_are_skipped_with_their_reason(imported) -> None:
    report, _, _ = imported
    reasons = {skip.source_file: skip.reason for skip in report.skipped}
    assert reasons["DICOMDIR"].startswith("a DICOMDIR")
    assert "presentation state" in reasons["PAT000/ST000/PR/ps0001"]
    assert "structured report" in reasons["PAT000/ST000/SR/sr0001"]
    assert "encapsulated document" in reasons["PAT000/ST000/DOC/report.dcm"]
    assert reasons["PAT001/ST001/CT/ct0001"] == "modality CT, not mammography (MG)"
    assert "secondary capture" in reasons["PAT001/ST001/SC/screen.dcm"]
    assert "tomosynthesis" in reasons["PAT001/ST001/TOMO/bt0001"]
    assert reasons["PAT000/README.TXT"] == "not a DICOM file"
    assert report.summary["files_skipped"] == len(reasons) == 8


def test_nothing_identifying_is_written_and_the_export_is_untouched(export, imported) -> None:
    folder, truth = export
    report, before, after = imported
    source = (folder / truth["source_file"][0]).read_bytes()
    assert MARK.encode() in source and b"19600101" in source, "the sources do hold identifying values"
    assert before == after, "no file of the export was added, removed or changed"
    written = [path for path in report.root.rglob("*") if path.is_file() and not path.is_symlink()]
    assert {path.name for path in written} == {
        "breast-level_annotations.csv",
        PROVENANCE_CSV,
        IMPORT_MANIFEST,
    }
    for path in written:
        text = path.read_text()
        assert MARK not in text.upper(), path.name
        for value in ("19600101", "20240102", "1.2.826.0.1.3680043.8.498"):
            assert value not in text, (path.name, value)


def test_the_index_reads_an_imported_root_without_labels(imported) -> None:
    report, _, _ = imported
    index = VindrIndex.load(report.root)
    assert not index.labelled and index.splits == (UNLABELLED_SPLIT,)
    assert index.missing == [] and len(index.findings) == 0
    assert index.images[list(index.categories)].isna().all().all(), "unknown, not negative"
    summary = index.summary()
    assert summary["labelled"] is False and summary["images"] == 4 * STUDIES
    assert summary["views"] == {"R CC": STUDIES, "R MLO": STUDIES, "L CC": STUDIES, "L MLO": STUDIES}
    with pytest.raises(DataError, match="imported from DICOM files and has no labels"):
        index.labels()


def test_a_previous_import_is_replaced_and_other_folders_are_refused(export, tmp_path: Path) -> None:
    folder, truth = export
    out = tmp_path / "root"
    import_folder(folder, out, salt="one")
    first = pd.read_csv(out / "breast-level_annotations.csv", dtype=str)
    import_folder(folder, out, salt="two", placement="copy")
    second = pd.read_csv(out / "breast-level_annotations.csv", dtype=str)
    assert set(first["image_id"]).isdisjoint(second["image_id"]), "another salt, other keys"
    copied = out / "images" / second["study_id"][0] / f"{second['image_id'][0]}.dicom"
    assert copied.is_file() and not copied.is_symlink()
    old_uids = [uid.encode() for uid in truth["image_id"]] + [b"1.2.826.0.1.3680043.8.498.424242"]
    for path in (out / "images").rglob("*.dicom"):  # copies keep the image, nothing identifying
        data = path.read_bytes()
        assert MARK.encode() not in data and b"19600101" not in data and b"20240102" not in data, path
        assert b"SYNTHETIC^PHANTOM" not in data and not any(uid in data for uid in old_uids), path
    source = folder / second["source_file"][0]
    original, copy = read_mammogram(source), read_mammogram(copied)
    assert np.array_equal(original.stored, copy.stored) and original.photometric == copy.photometric
    assert [w.name for w in original.window_presets] == [w.name for w in copy.window_presets]
    tag_kept = 0
    for row in second.itertuples():  # orientation tags are kept; descriptions (free text) are not
        was = header_orientation(dcmread(folder / row.source_file))
        now = header_orientation(dcmread(out / "images" / row.study_id / f"{row.image_id}.dicom"))
        if was.laterality.source in ("ImageLaterality", "Laterality"):
            assert now.laterality == was.laterality
            tag_kept += 1
        assert now.laterality.source not in TEXT_ATTRIBUTES and now.view.source not in TEXT_ATTRIBUTES
    assert tag_kept == 12, "tagged, misplaced and mirrored files keep their tags"
    assert not list(tmp_path.glob(".root.*")), "no staging folder is left behind"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not a previous import"):
        import_folder(folder, foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    with pytest.raises(DataError, match="inside the imported folder"):
        import_folder(folder, folder / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no mammogram to import"):
        import_folder(empty, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_the_command_prints_skips_and_the_summary(export, tmp_path: Path, capsys) -> None:
    folder, _ = export
    assert data_main(["import", str(folder), "--out", str(tmp_path / "root"), "--list-skipped", "2"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["mammograms"] == 4 * STUDIES and summary["studies"] == STUDIES
    assert summary["phantom_images"] == 4 * STUDIES, "the generator's files are known as phantoms"
    lines = err.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("skipped ") and lines[-1] == "... and 6 more skipped files"
    assert data_main(["import", str(tmp_path / "absent"), "--out", str(tmp_path / "r2")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_the_pixels_tell_the_side_and_the_view_either_way_round(phantoms: Path) -> None:
    from mammo_sae.data.dicom import read_mammogram
    from mammo_sae.data.preprocess import to_uint8

    table = pd.read_csv(phantoms / "breast-level_annotations.csv", dtype=str)
    for row in table.itertuples():
        dicom = read_mammogram(phantoms / "images" / row.study_id / f"{row.image_id}.dicom")
        image = to_uint8(dicom.stored, dicom.photometric)
        found = image_orientation(image)
        assert (found.laterality.value, found.view.value) == (row.laterality, row.view_position)
        assert found.laterality.source == found.view.source == "image"
        flipped = image_orientation(np.ascontiguousarray(image[:, ::-1]))
        assert flipped.laterality.value == ("L" if row.laterality == "R" else "R"), "stored mirrored: fooled"
        assert flipped.view.value == row.view_position, "the view does not depend on the side"
    blank = image_orientation(np.zeros((300, 240), np.uint8))
    assert blank.laterality.value is None and blank.view.value is None
