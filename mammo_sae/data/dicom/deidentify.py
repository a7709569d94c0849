"""A de-identified copy of a mammogram: only the attributes that the image needs to be read, displayed and
oriented, from an allow-list, and new UIDs derived from salted hashes of the old ones.

Everything else (names, IDs, dates, institutions, descriptions, comments, private tags, every other
sequence) is left behind. Text burned into the pixels cannot be removed this way; the copy says so in
``BurnedInAnnotation`` as the source did.

    write_deidentified_copy(Path("export/IM0001"), Path("root/images/3f9c/a1b2.dicom"), salt=None)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from mammo_sae.core.atomic import atomic_open
from mammo_sae.data.dicom.metadata import resolve_salt

#: What a copy keeps: the image pixel module, its grey-level transforms, and what says how it hangs.
KEPT = (
    "SOPClassUID",
    "Modality",
    "ImageType",
    "PresentationIntentType",
    "BodyPartExamined",
    "ImageLaterality",
    "Laterality",
    "ViewPosition",
    "PatientOrientation",
    "BurnedInAnnotation",
    "Manufacturer",
    "ManufacturerModelName",
    "ImagerPixelSpacing",
    "PixelSpacing",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "PixelData",
)
#: The parts of a view code item that say which view it is.
CODE_KEPT = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")
NEW_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
METHOD = "mammo-sae import: allow-list copy, salted-hash UIDs"  # LO: 64 characters at most


def hashed_uid(uid: str, salt: str | None = None) -> str:
    """A valid UID (the 2.25 integer form) from a salted hash of ``uid``: stable, and not traceable without the salt."""
    digest = hashlib.sha256((resolve_salt(salt) + "uid:" + uid.strip()).encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def deidentified(source: Dataset, salt: str | None = None) -> Dataset:
    """The allow-listed attributes of ``source`` with new UIDs, as a data set ready to save."""
    ds = Dataset()
    for keyword in KEPT:
        if keyword in source:
            ds[keyword] = source[keyword]
    if "ViewCodeSequence" in source:
        items = []
        for old in source.ViewCodeSequence:
            item = Dataset()
            for keyword in CODE_KEPT:
                if keyword in old:
                    item[keyword] = old[keyword]
            items.append(item)
        ds.ViewCodeSequence = Sequence(items)
    for keyword in NEW_UIDS:
        setattr(ds, keyword, hashed_uid(str(source.get(keyword, "") or keyword), salt))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.1.2")
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
    ds.file_meta = meta
    return ds


def write_deidentified_copy(source: Path, target: Path, *, salt: str | None = None) -> None:
    """Read ``source`` whole and write its de-identified copy to ``target`` (atomically)."""
    ds = deidentified(dcmread(source), salt)
    with atomic_open(target, "wb") as handle:
        ds.save_as(handle, enforce_file_format=True)
