"""Several uploaded files (the four views of an exam, or a zip of them), kept in memory, become one study:
each readable mammogram placed in its hanging slot by its laterality and view (tags, then text, then the
pixels), every other file named with the reason it was left out.

    study = study_from_uploads([("IM1", b"..."), ("views.zip", b"...")])
    study.views["R CC"].laterality    # Found("R", "ImageLaterality", 1.0)
    study.refused                     # (("notes.txt", "not a DICOM file or a PNG ..."), ...)
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom import dcmread

from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom.errors import ForProcessingWarning
from mammo_sae.data.dicom.metadata import salted_key
from mammo_sae.data.dicom.orientation import Found, Orientation, header_orientation
from mammo_sae.data.dicom.read import MammogramDicom, read_mammogram
from mammo_sae.data.image_orientation import image_orientation
from mammo_sae.data.png import PNG_MAGIC, decode_png
from mammo_sae.data.preprocess import to_uint8

#: The hanging slots, in reading order.
SLOTS = ("R CC", "L CC", "R MLO", "L MLO")
MAX_FILES = 16  # a study's views with room for repeats; more is not one exam
#: A zip may unpack to this much at most (four large mammograms are well below it).
MAX_ZIP_BYTES = 1 << 30
MAX_ZIP_RATIO = 200  # compressed -> uncompressed; more is a zip bomb, not DICOMs
ZIP_MAGIC = b"PK\x03\x04"
#: The Manufacturer value of every file the phantom generator writes (phantom/config.py GENERATOR_NAME).
PHANTOM_MANUFACTURER = "mammo-sae phantom"


@dataclass(frozen=True)
class UploadedView:
    """One readable mammogram of the upload, with where its orientation came from."""

    name: str  # the name it was uploaded under (a zip member: "views.zip/IM0001"); untrusted text
    orientation: Orientation
    dicom: MammogramDicom | None = None  # a DICOM upload
    png: np.ndarray | None = None  # a PNG upload (taken as a Mammo-CLIP frame)
    study_key: str | None = None  # salted StudyInstanceUID of a DICOM
    phantom: bool = False  # a DICOM the mammo-sae phantom generator wrote (its Manufacturer); a PNG never is
    digest: str = (
        ""  # sha256 of the file's bytes: a key for what is computed from it (never written anywhere)
    )

    @property
    def inferred_from_image(self) -> bool:
        """Whether the laterality or the view was read from the pixels (the app says so beside the view)."""
        return "image" in (self.orientation.laterality.source, self.orientation.view.source)


@dataclass(frozen=True)
class UploadedStudy:
    views: dict[str, UploadedView]  # slot ("R CC", ...) -> view, in SLOTS order
    refused: tuple[tuple[str, str], ...] = field(default=())  # (name, reason)

    @property
    def studies(self) -> int:
        """How many different studies the DICOM views name (more than one: the files are of several exams)."""
        return len({view.study_key for view in self.views.values() if view.study_key is not None})


def study_from_uploads(files: Sequence[tuple[str, bytes]], *, salt: str | None = None) -> UploadedStudy:
    """Read every file (zips unpacked in memory), place each mammogram in its slot, name what is left out."""
    members, refused = _unpacked(files)
    if len(members) > MAX_FILES:
        raise DataError(
            f"{len(members)} files were uploaded; one study has at most {MAX_FILES}. Upload the views of one "
            "exam (or import a whole folder with `python -m mammo_sae.data import`)"
        )
    placed: dict[str, UploadedView] = {}
    for name, data in members:
        try:
            view = _read_view(name, data, salt)
        except DataError as error:
            refused.append((name, _reason(error, name)))
            continue
        slot = f"{view.orientation.laterality.value} {view.orientation.view.value}"
        if slot in placed:
            refused.append((name, f"a second {slot} view (the study shows the first, {placed[slot].name})"))
            continue
        placed[slot] = view
    views = {slot: placed[slot] for slot in SLOTS if slot in placed}
    return UploadedStudy(views, tuple(refused))


def _unpacked(files: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """Zips replaced by their members (hidden and folder entries left out); (members, refused)."""
    members: list[tuple[str, bytes]] = []
    refused: list[tuple[str, str]] = []
    for name, data in files:
        if not data.startswith(ZIP_MAGIC):
            members.append((name, data))
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                entries = [
                    info for info in archive.infolist() if not info.is_dir() and not _hidden(info.filename)
                ]
                total = sum(info.file_size for info in entries)
                if total > MAX_ZIP_BYTES or total > MAX_ZIP_RATIO * max(len(data), 1):
                    refused.append((name, f"the zip would unpack to {total:,} bytes, too much for one study"))
                    continue
                if len(entries) > MAX_FILES:
                    refused.append(
                        (name, f"the zip holds {len(entries)} files; one study has at most {MAX_FILES}")
                    )
                    continue
                members.extend((f"{name}/{info.filename}", archive.read(info)) for info in entries)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, OSError):
            refused.append((name, "a damaged or encrypted zip: zip the files again without a password"))
    return members, refused


def _hidden(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/"))


def _read_view(name: str, data: bytes, salt: str | None) -> UploadedView:
    """One file as a placed view; a DataError says why it cannot be one."""
    digest = hashlib.sha256(data).hexdigest()
    if _is_png(name, data):
        png = decode_png(data, name)
        found = image_orientation(png)
        _check_complete(found, name)
        return UploadedView(name, found, png=png, digest=digest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForProcessingWarning)
        dicom = read_mammogram(data, name=name, salt=salt)
    header = dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    told = header_orientation(header)
    if not told.complete:
        seen = image_orientation(to_uint8(dicom.stored, dicom.photometric))
        told = Orientation(_either(told.laterality, seen.laterality), _either(told.view, seen.view))
    _check_complete(told, name)
    study_uid = str(header.get("StudyInstanceUID", "") or "").strip()
    phantom = str(header.get("Manufacturer", "") or "").strip() == PHANTOM_MANUFACTURER
    key = salted_key(study_uid, salt) if study_uid else None
    return UploadedView(name, told, dicom=dicom, study_key=key, phantom=phantom, digest=digest)


def _is_png(name: str, data: bytes) -> bool:
    """A name's extension says what the file must be (a .png that is not one is refused, and so is a .dcm);
    a name without one, as PACS exports write them, is read as what its first bytes say."""
    lower = name.lower()
    if lower.endswith(".png"):
        return True
    if lower.endswith((".dcm", ".dicom")):
        return False
    return data.startswith(PNG_MAGIC)


def _either(first: Found, second: Found) -> Found:
    return first if first.value is not None else second


def _check_complete(found: Orientation, name: str) -> None:
    if not found.complete:
        raise DataError(f"{name}: no laterality or view in the file, and no breast found in its pixels")


def _reason(error: DataError, name: str) -> str:
    """The error's message without the file name it starts with (the name is shown beside it)."""
    text = str(error)
    return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text
