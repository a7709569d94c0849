"""Scan a folder of DICOM files (a PACS export: nested, any file names, DICOMDIR or not) from the headers
alone: which files are mammograms, which study each belongs to, and each image's laterality and view with
where they came from; every other file is skipped with a one-line reason.

Nothing identifying leaves the scan: studies, series and images are named by salted hashes of their UIDs
(``metadata.salted_key``), the text the orientation is read from is not kept, and a reason names the file
by its path inside the folder and a technical attribute only. Nothing is written anywhere.

    scan = scan_folder(Path("export"))
    scan.images[0].study_key, scan.images[0].orientation.view    # "3f9c...", Found("MLO", "ViewPosition", 1.0)
    scan.summary()                                                # counts, and the skipped files by reason
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mammo_sae.data.dicom.metadata import salted_key
from mammo_sae.data.dicom.orientation import Orientation, header_orientation
from mammo_sae.data.dicom.values import int_or_none

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: SOP class prefixes of files that hold no mammogram, with the reason a skipped file gets.
NON_IMAGE_CLASSES = (
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state (display settings, no image)"),
    ("1.2.840.10008.5.1.4.1.1.88.", "a structured report (no image)"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF or CDA, no image)"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw or registration data (no image)"),
    ("1.2.840.10008.5.1.4.1.1.13.1.", "a breast tomosynthesis or projection volume (multiframe)"),
)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_HEADER_WARNINGS = ("Invalid value for VR UI",)
#: The Manufacturer value of every file the phantom generator writes (phantom/config.py GENERATOR_NAME).
PHANTOM_MANUFACTURER = "mammo-sae phantom"


@dataclass(frozen=True)
class ScannedImage:
    """One mammogram found in the folder: where it is, which study and series, its size and orientation."""

    source_file: str  # the path inside the scanned folder, with "/" separators
    study_key: str
    series_key: str
    image_key: str
    rows: int
    columns: int
    orientation: Orientation
    phantom: bool = False  # written by the mammo-sae phantom generator (its Manufacturer value)


@dataclass(frozen=True)
class SkippedFile:
    source_file: str
    reason: str


@dataclass(frozen=True)
class FolderScan:
    images: tuple[ScannedImage, ...]
    skipped: tuple[SkippedFile, ...]

    def summary(self) -> dict[str, object]:
        """Counts: files, mammograms, studies, images without a laterality or a view, and skips by reason."""
        return {
            "files": len(self.images) + len(self.skipped),
            "mammograms": len(self.images),
            "studies": len({image.study_key for image in self.images}),
            "without_laterality": sum(image.orientation.laterality.value is None for image in self.images),
            "without_view": sum(image.orientation.view.value is None for image in self.images),
            "skipped": dict(Counter(skip.reason for skip in self.skipped).most_common()),
        }


def scan_folder(folder: Path, *, salt: str | None = None) -> FolderScan:
    """Every file under ``folder`` (sorted, hidden folders left out), read from its header only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder: give the folder a PACS export was written to")
    images: list[ScannedImage] = []
    skipped: list[SkippedFile] = []
    seen: dict[str, str] = {}  # image key -> the first file that held it
    for path in _files(folder):
        relative = path.relative_to(folder).as_posix()
        result = scan_file(path, relative, salt=salt)
        if isinstance(result, SkippedFile):
            skipped.append(result)
        elif result.image_key in seen:
            skipped.append(SkippedFile(relative, f"the same image as {seen[result.image_key]}"))
        else:
            seen[result.image_key] = relative
            images.append(result)
    return FolderScan(tuple(images), tuple(skipped))


def scan_file(path: Path, relative: str, *, salt: str | None = None) -> ScannedImage | SkippedFile:
    """One file: a ScannedImage when its header describes a single-frame greyscale mammogram, else why not."""
    with warnings.catch_warnings():  # pydicom converts values lazily: its warnings quote them (UIDs)
        for message in _HEADER_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _scan_file(path, relative, salt)


def _scan_file(path: Path, relative: str, salt: str | None) -> ScannedImage | SkippedFile:
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return SkippedFile(relative, "not a DICOM file")
    except Exception:  # any parser failure is this file's, and its text may hold identifying values
        return SkippedFile(relative, "a damaged DICOM header (it could not be read)")
    try:
        reason = _not_a_mammogram(ds)
        if reason:
            return SkippedFile(relative, reason)
        study_uid, series_uid, sop_uid = (str(ds.get(k, "") or "").strip() for k in _UID_KEYWORDS)
        orientation = header_orientation(ds)
        rows, columns = int_or_none(ds.get("Rows")) or 0, int_or_none(ds.get("Columns")) or 0
    except Exception:  # an element that fails to convert on first use
        return SkippedFile(relative, "a damaged DICOM header (an element could not be read)")
    folder_of_file = relative.rpartition("/")[0] or "."
    return ScannedImage(
        source_file=relative,
        study_key=salted_key(study_uid or f"folder:{folder_of_file}", salt),
        series_key=salted_key(series_uid or f"folder:{folder_of_file}", salt),
        image_key=salted_key(sop_uid or f"file:{relative}", salt),
        rows=rows,
        columns=columns,
        orientation=orientation,
        phantom=str(ds.get("Manufacturer", "") or "").strip() == PHANTOM_MANUFACTURER,
    )


_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def _not_a_mammogram(ds: Dataset) -> str | None:
    """Why a header does not describe a mammogram this project reads, or None when it does."""
    if not any(keyword in ds for keyword in ("SOPClassUID", "Modality", "Rows")):
        return "an empty or damaged DICOM header (no SOP class, modality or image size)"
    meta = getattr(ds, "file_meta", None)
    sop_class = str(
        ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "")
    ).strip()
    if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return "a DICOMDIR (an index of the folder; the folder itself is scanned)"
    for prefix, reason in NON_IMAGE_CLASSES:
        if sop_class.startswith(prefix):
            return reason
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop_class.startswith(SECONDARY_CAPTURE) and modality != "MG":
        return "a secondary capture (a screenshot or scanned page), not a mammogram"
    if modality != "MG":
        return (
            f"modality {modality or 'missing'}, not mammography (MG)"
            if len(modality) <= 16
            else "not mammography (MG)"
        )
    rows, columns = int_or_none(ds.get("Rows")), int_or_none(ds.get("Columns"))
    if not rows or not columns:
        return "no image in the file (no Rows and Columns)"
    if (int_or_none(ds.get("NumberOfFrames")) or 1) > 1:
        return "multiframe (tomosynthesis or cine), not a single mammogram"
    if (int_or_none(ds.get("SamplesPerPixel")) or 1) != 1:
        return "a colour image, not a greyscale mammogram"
    return None


def _files(folder: Path) -> list[Path]:
    """Regular files under ``folder`` sorted by their path inside it; hidden folders and files (".git", ".DS_Store") skipped."""
    out = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(top) / name for name in sorted(names) if not name.startswith("."))
    return sorted((path for path in out if path.is_file()), key=lambda p: p.relative_to(folder).as_posix())
