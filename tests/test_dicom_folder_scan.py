"""Scanning a PACS-export-like folder from headers only: mammograms found in nested folders under any name,
grouped into studies by salted UID hashes, laterality and view from stripped, misplaced and text-only tags;
every other file skipped with its reason; no identifying value in anything the scan returns."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from mammo_sae.data.dicom import write_mammogram
from mammo_sae.data.dicom.folder_scan import FolderScan, scan_folder
from mammo_sae.data.dicom.metadata import salted_key

MARK = "ZQXMARK"  # put in every identifying attribute; must appear in nothing the scan returns
STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def mammogram(path: Path, study: str, image: int, laterality: str, view: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = np.full((64, 48), 900, np.uint16)
    tags = {
        "StudyInstanceUID": study, "SeriesInstanceUID": f"{study}.{image}", "SOPInstanceUID": f"{study}.{image}.1",
        "PatientName": f"{MARK}^ADA", "PatientID": f"{MARK}-ID", "InstitutionName": f"{MARK} HOSPITAL",
        "StudyDate": "20240101", "SeriesDescription": f"{laterality} {view}",
    }  # fmt: skip
    write_mammogram(path, stored, laterality=laterality, view=view, tags=tags)
    return path


def edited(path: Path, *, remove: tuple[str, ...] = (), **values: object) -> Path:
    ds = dcmread(path)
    for keyword in remove:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def header_only(path: Path, sop_class: str, **values: object) -> Path:
    """A small non-image DICOM file (presentation state, report, ...) with a Part-10 header."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, f"{STUDY_A}.99.{len(values)}", "PR"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        sop_class,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    mammogram(root / "PAT1" / "STUDY" / "IM0001", STUDY_A, 1, "R", "CC")  # no suffix, as PACS write them
    misplaced = mammogram(root / "PAT1" / "STUDY" / "IM0002.dcm", STUDY_A, 2, "L", "MLO")
    edited(misplaced, remove=("ImageLaterality", "ViewPosition"), Laterality="L",
           ViewCodeSequence=[_code("R-10226", "medio-lateral oblique")])  # fmt: skip
    text_only = mammogram(root / "PAT1" / "STUDY" / "sub" / "x.bin", STUDY_A, 3, "L", "CC")
    edited(
        text_only, remove=("ImageLaterality", "ViewPosition", "ViewCodeSequence"), SeriesDescription="LEFT_CC"
    )
    unknown = mammogram(root / "PAT2" / "a.dcm", STUDY_B, 1, "R", "MLO")
    edited(unknown, remove=("ImageLaterality", "ViewPosition", "ViewCodeSequence", "SeriesDescription"))
    shutil.copy(root / "PAT1" / "STUDY" / "IM0001", root / "PAT1" / "copy-of-IM0001")
    (root / "PAT2" / "notes.txt").write_text(f"{MARK} free text")
    ct = mammogram(root / "PAT2" / "ct.dcm", STUDY_B, 2, "R", "CC")
    edited(ct, Modality="CT")
    tomo = mammogram(root / "PAT2" / "tomo.dcm", STUDY_B, 3, "R", "CC")
    edited(tomo, NumberOfFrames=40)
    capture = mammogram(root / "PAT2" / "screen.dcm", STUDY_B, 4, "R", "CC")
    edited(capture, Modality="OT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    header_only(root / "PAT2" / "ps.dcm", "1.2.840.10008.5.1.4.1.1.11.1")
    header_only(root / "PAT2" / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.22")
    header_only(root / "DICOMDIR", "1.2.840.10008.1.3.10")
    cut = mammogram(root / "PAT2" / "cut.dcm", STUDY_B, 5, "L", "CC")
    cut.write_bytes(cut.read_bytes()[:200])  # the transfer ended inside the file meta
    hidden = root / ".thumbs"
    hidden.mkdir()
    (hidden / "t.jpg").write_bytes(b"\xff\xd8\xff")
    return root


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SRT", meaning
    return item


@pytest.fixture(scope="module")
def scan(export: Path) -> FolderScan:
    return scan_folder(export, salt="test-salt")


def test_mammograms_are_found_under_any_name_and_grouped_by_study(scan: FolderScan) -> None:
    found = {image.source_file: image for image in scan.images}
    assert sorted(found) == [
        "PAT1/STUDY/IM0001",
        "PAT1/STUDY/IM0002.dcm",
        "PAT1/STUDY/sub/x.bin",
        "PAT2/a.dcm",
    ]
    assert {found[f].study_key for f in found if f.startswith("PAT1")} == {salted_key(STUDY_A, "test-salt")}
    assert found["PAT2/a.dcm"].study_key == salted_key(STUDY_B, "test-salt")
    assert (found["PAT1/STUDY/IM0001"].rows, found["PAT1/STUDY/IM0001"].columns) == (64, 48)
    assert scan.summary()["studies"] == 2


def test_laterality_and_view_come_from_wherever_the_file_put_them(scan: FolderScan) -> None:
    found = {image.source_file: image.orientation for image in scan.images}
    tagged, misplaced, text_only, unknown = (found[f] for f in sorted(found))
    assert (tagged.laterality.value, tagged.laterality.source) == ("R", "ImageLaterality")
    assert (tagged.view.value, tagged.view.source) == ("CC", "ViewPosition")
    assert (misplaced.laterality.value, misplaced.laterality.source) == ("L", "Laterality")
    assert (misplaced.view.value, misplaced.view.source) == ("MLO", "ViewCodeSequence")
    assert (text_only.laterality.source, text_only.view.source) == ("SeriesDescription", "SeriesDescription")
    assert (text_only.laterality.value, text_only.view.value) == ("L", "CC")
    assert not unknown.complete, "nothing in the header: left for the image itself to tell"
    assert scan.summary()["without_laterality"] == scan.summary()["without_view"] == 1


def test_every_other_file_is_skipped_with_its_reason(scan: FolderScan) -> None:
    reasons = {skip.source_file: skip.reason for skip in scan.skipped}
    assert reasons == {
        "DICOMDIR": "a DICOMDIR (an index of the folder; the folder itself is scanned)",
        "PAT1/copy-of-IM0001": "the same image as PAT1/STUDY/IM0001",
        "PAT2/ct.dcm": "modality CT, not mammography (MG)",
        "PAT2/cut.dcm": "an empty or damaged DICOM header (no SOP class, modality or image size)",
        "PAT2/notes.txt": "not a DICOM file",
        "PAT2/ps.dcm": "a presentation state (display settings, no image)",
        "PAT2/screen.dcm": "a secondary capture (a screenshot or scanned page), not a mammogram",
        "PAT2/sr.dcm": "a structured report (no image)",
        "PAT2/tomo.dcm": "multiframe (tomosynthesis or cine), not a single mammogram",
    }, "hidden folders are not scanned"
    summary = scan.summary()
    assert summary["files"] == 13 and summary["mammograms"] == 4 and sum(summary["skipped"].values()) == 9


def test_nothing_identifying_is_returned_and_nothing_is_written(export: Path, scan: FolderScan) -> None:
    returned = repr(scan) + repr(scan.summary())
    for value in (MARK, STUDY_A, STUDY_B, "20240101"):
        assert value not in returned
    before = sorted(p.relative_to(export).as_posix() for p in export.rglob("*"))
    scan_folder(export)
    assert sorted(p.relative_to(export).as_posix() for p in export.rglob("*")) == before


def test_another_salt_gives_other_keys_and_a_file_is_not_a_folder(export: Path, scan: FolderScan) -> None:
    other = scan_folder(export, salt="another-salt")
    assert {i.study_key for i in other.images}.isdisjoint({i.study_key for i in scan.images})
    with pytest.raises(NotADirectoryError, match="not a folder"):
        scan_folder(export / "PAT2" / "notes.txt")


def test_the_phantom_generator_s_constant_is_the_scan_s():
    from mammo_sae.data.dicom.folder_scan import PHANTOM_MANUFACTURER
    from mammo_sae.data.phantom import GENERATOR_NAME

    assert PHANTOM_MANUFACTURER == GENERATOR_NAME
