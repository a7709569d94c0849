"""Turn a folder of DICOM files (a PACS export) into a root the rest of the pipeline reads.

The root has the VinDr layout without labels: ``breast-level_annotations.csv`` (VinDr columns, BI-RADS and
density empty, split ``unlabelled``, plus ``source_file``: the image's path inside the imported folder),
``orientation_provenance.csv`` (where every laterality and view came from: tag, text or image, with its
confidence), ``import.json`` (counts and skip reasons) and ``images/<study>/<image>.dicom``: links to the
source files, or de-identified copies (``data/dicom/deidentify.py``). Studies, series and images are named by salted hashes; no identifying value of
a source file is written. Nothing is written in or next to the imported folder.

    report = import_folder(Path("export"), Path("my-exams"))
    report.summary["mammograms"], report.skipped[0].reason
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.errors import DataError
from mammo_sae.data.csv_tables import BREAST_COLUMNS, BREAST_CSV, IMAGE_SUFFIX, IMAGES_DIR, table_text
from mammo_sae.data.dicom.deidentify import write_deidentified_copy
from mammo_sae.data.dicom.errors import DicomReadError, ForProcessingWarning
from mammo_sae.data.dicom.folder_scan import ScannedImage, SkippedFile, scan_folder
from mammo_sae.data.dicom.orientation import TEXT_ATTRIBUTES, Found, Orientation
from mammo_sae.data.dicom.read import read_mammogram
from mammo_sae.data.image_orientation import image_orientation
from mammo_sae.data.preprocess import to_uint8

IMPORT_MANIFEST = "import.json"
PROVENANCE_CSV = "orientation_provenance.csv"
IMPORT_FORMAT = "mammo-sae dicom import"
IMPORT_VERSION = 1
#: The split every imported image gets: they carry no labels and belong to no training or test split.
UNLABELLED_SPLIT = "unlabelled"
IMPORT_COLUMNS = (*BREAST_COLUMNS, "source_file")
PROVENANCE_COLUMNS = (
    "image_id",
    "laterality",
    "laterality_source",
    "laterality_confidence",
    "view_position",
    "view_source",
    "view_confidence",
)
Placement = Literal["link", "copy"]


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote and skipped."""

    root: Path
    images: tuple[ScannedImage, ...]
    skipped: tuple[SkippedFile, ...]
    summary: dict[str, object]


def is_imported_root(root: Path) -> bool:
    """Whether ``root`` was written by :func:`import_folder` (it then holds no labels)."""
    manifest = Path(root) / IMPORT_MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == IMPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def import_folder(
    folder: Path, out: Path, *, salt: str | None = None, placement: Placement = "link"
) -> ImportReport:
    """Scan ``folder``, complete every orientation from the pixels where the header is silent, write ``out``.

    ``out`` must be new, empty or a previous import (replaced whole, only once the new one is complete) and
    must lie outside ``folder``. ``placement``: symbolic links to the source files, or de-identified copies.
    """
    folder, out = Path(folder).expanduser().resolve(), Path(out).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give the folder a PACS export was written to")
    if out == folder or out.is_relative_to(folder):
        raise DataError(
            f"{out} lies inside the imported folder {folder}: nothing is written next to the source files; "
            "give an output folder elsewhere"
        )
    _check_output(out)
    scan = scan_folder(folder, salt=salt)
    images, skipped = [], list(scan.skipped)
    for image in scan.images:
        completed = _complete(folder / image.source_file, image)
        if isinstance(completed, SkippedFile):
            skipped.append(completed)
        else:
            images.append(completed)
    if not images:
        reasons = Counter(skip.reason for skip in skipped).most_common(3)
        said = "; ".join(f"{count} x {reason}" for reason, count in reasons) or "the folder is empty"
        raise DataError(f"no mammogram to import in {folder} ({said}); nothing was written")
    summary = _summary(images, skipped, placement)
    _write_root(folder, out, images, summary, placement, salt)
    return ImportReport(out, tuple(images), tuple(skipped), summary)


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file: give a new or empty folder for the imported root")
    if out.is_dir() and any(out.iterdir()) and not is_imported_root(out):
        raise DataError(
            f"{out} holds files that are not a previous import; give a new or empty folder (nothing was written)"
        )


def _complete(path: Path, image: ScannedImage) -> ScannedImage | SkippedFile:
    """Fill a missing laterality or view from the pixels; skip the file when even they cannot say."""
    if image.orientation.complete:
        return image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForProcessingWarning)
            dicom = read_mammogram(path)
        seen = image_orientation(to_uint8(dicom.stored, dicom.photometric))
    except (DicomReadError, DataError):
        return SkippedFile(
            image.source_file, "its pixels could not be decoded (and its header names no orientation)"
        )
    laterality = _first(image.orientation.laterality, seen.laterality)
    view = _first(image.orientation.view, seen.view)
    if laterality.value is None or view.value is None:
        return SkippedFile(
            image.source_file, "no laterality or view in its header, and no breast found in its pixels"
        )
    return replace(image, orientation=Orientation(laterality, view))


def _first(*candidates: Found) -> Found:
    return next((found for found in candidates if found.value is not None), candidates[-1])


def _summary(
    images: list[ScannedImage], skipped: list[SkippedFile], placement: Placement
) -> dict[str, object]:
    sources = Counter()
    for image in images:
        for name, found in (("laterality", image.orientation.laterality), ("view", image.orientation.view)):
            sources[f"{name} from {source_kind(found.source)}"] += 1
    return {
        "format": IMPORT_FORMAT,
        "version": IMPORT_VERSION,
        "mammograms": len(images),
        "studies": len({image.study_key for image in images}),
        "phantom_images": sum(image.phantom for image in images),  # the generator's own files
        "files_skipped": len(skipped),
        "skipped": dict(Counter(skip.reason for skip in skipped).most_common()),
        "orientation": dict(sorted(sources.items())),
        "placement": placement,
        "labels": "none (an imported folder; BI-RADS, density and findings are empty)",
    }


def source_kind(source: str) -> str:
    """'tag', 'text' or 'image': the kind of place a value came from."""
    if source == "image":
        return "image"
    return "text" if source in TEXT_ATTRIBUTES else "tag"


def _write_root(
    folder: Path,
    out: Path,
    images: list[ScannedImage],
    summary: dict[str, object],
    placement: Placement,
    salt: str | None,
) -> None:
    """Build the root in a sibling staging folder, then put it in place of ``out`` in one rename."""
    staging = out.parent / f".{out.name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for image in images:
            target = staging / IMAGES_DIR / image.study_key / f"{image.image_key}{IMAGE_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            source = folder / image.source_file
            if placement == "copy":
                write_deidentified_copy(source, target, salt=salt)
            else:
                target.symlink_to(source)
        atomic_write_text(staging / BREAST_CSV, table_text(IMPORT_COLUMNS, map(_breast_row, images)))
        atomic_write_text(
            staging / PROVENANCE_CSV, table_text(PROVENANCE_COLUMNS, map(_provenance_row, images))
        )
        atomic_write_text(staging / IMPORT_MANIFEST, json.dumps(summary, indent=2) + "\n")
        if out.exists():
            retired = out.parent / f".{out.name}.replaced-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _breast_row(image: ScannedImage) -> dict[str, object]:
    return {
        "study_id": image.study_key,
        "series_id": image.series_key,
        "image_id": image.image_key,
        "laterality": image.orientation.laterality.value,
        "view_position": image.orientation.view.value,
        "height": image.rows,
        "width": image.columns,
        "breast_birads": "",
        "breast_density": "",
        "split": UNLABELLED_SPLIT,
        "source_file": image.source_file,
    }


def _provenance_row(image: ScannedImage) -> dict[str, object]:
    laterality, view = image.orientation.laterality, image.orientation.view
    return {
        "image_id": image.image_key,
        "laterality": laterality.value,
        "laterality_source": laterality.source,
        "laterality_confidence": laterality.confidence,
        "view_position": view.value,
        "view_source": view.source,
        "view_confidence": view.confidence,
    }
