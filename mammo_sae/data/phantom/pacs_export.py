"""Rewrite a phantom dataset as a PACS export would arrive: nested folders, file names without meaning, the
orientation tags in the places real files put them (or nowhere), some views stored mirrored, identifying
attributes filled with a marker, and the files a real export carries that are not mammograms.

What the import must recover is returned (never written into the export, which plays the user's files):

    truth = write_pacs_export(Path("phantoms"), Path("export"), mark="ZQXMARK")
    truth.iloc[0]   # source_file, phantom image_id, laterality, view, variant

Variants, in turn per image: ``tagged`` (ImageLaterality and ViewPosition), ``misplaced`` (Laterality and a
coded ViewCodeSequence), ``text-only`` (only the series description says, in one of several spellings),
``untagged`` (nothing says: the pixels must), ``mirrored`` (tags kept, pixels stored facing the other way).
SYNTHETIC: phantoms, no patient.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

VARIANTS = ("tagged", "misplaced", "text-only", "untagged", "mirrored")
ORIENTATION_KEYWORDS = ("ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence")
TEXT_KEYWORDS = (
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "AcquisitionDeviceProcessingDescription",
)
#: The coded views (SNOMED RT) a misplaced file carries instead of ViewPosition.
_VIEW_CODES = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}
_TEXT_SPELLINGS = ("{side_word}_{view}", "{side} {view}", "{side}{view}", "{view} {side_word}")
#: Attributes a de-identified export should have emptied and a real one may not have; each gets the marker.
IDENTIFYING = {
    "PatientName": "{mark}^PATIENT",
    "PatientID": "{mark}-ID",
    "PatientBirthDate": "19600101",
    "StudyDate": "20240102",
    "SeriesDate": "20240102",
    "AcquisitionDateTime": "20240102101010",
    "InstitutionName": "{mark} HOSPITAL",
    "InstitutionAddress": "{mark} STREET 1",
    "ReferringPhysicianName": "{mark}^DOCTOR",
    "OperatorsName": "{mark}^OPERATOR",
    "AccessionNumber": "{mark}01",
    "StudyID": "{mark}S",
    "StationName": "{mark}ST",
    "DeviceSerialNumber": "{mark}SN",
    "OtherPatientIDs": "{mark}-OTHER",
    "RequestedProcedureDescription": "{mark} screening request",
}
_PRIVATE_CREATOR = "MAMMO SAE TEST"


def write_pacs_export(
    phantom_root: Path,
    out: Path,
    *,
    mark: str = "ZQXMARK",
    extras: bool = True,
    seed: int = 0,
    variants: tuple[str, ...] = VARIANTS,
) -> pd.DataFrame:
    """Write the export under ``out`` (created; must be empty) and return what each mammogram really is.

    ``variants``: the orientation variants given to the images in turn (one alone: every image gets it)."""
    assert variants and set(variants) <= set(VARIANTS), variants
    phantom_root, out = Path(phantom_root), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: give an empty or new folder for the export")
    table = pd.read_csv(phantom_root / "breast-level_annotations.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    studies = {study: k for k, study in enumerate(dict.fromkeys(table["study_id"]))}
    rows = []
    for n, image in enumerate(table.itertuples(index=False)):
        variant = variants[n % len(variants)]
        study = studies[image.study_id]
        name = f"IM{n:05d}" if n % 3 else f"{rng.integers(1 << 30):x}.dcm"  # no suffix, as most PACS write
        relative = f"PAT{study:03d}/ST{study:03d}/SE{n % 4}/{name}"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Invalid value for VR UI")
            ds = dcmread(phantom_root / "images" / image.study_id / f"{image.image_id}.dicom")
        _orient(ds, variant, image.laterality, image.view_position, rng)
        _identify(ds, mark)
        _write(ds, out / relative)
        rows.append((relative, image.image_id, image.laterality, image.view_position, variant))
    if extras:
        _write_extras(out, mark)
    return pd.DataFrame(rows, columns=["source_file", "image_id", "laterality", "view", "variant"])


def _orient(ds: Dataset, variant: str, laterality: str, view: str, rng: np.random.Generator) -> None:
    """Put the orientation where the variant says (and mirror the pixels for ``mirrored``)."""
    if variant == "tagged":
        return
    if variant == "mirrored":
        _mirror(ds)
        return
    for keyword in (*ORIENTATION_KEYWORDS, *TEXT_KEYWORDS):
        if keyword in ds:
            delattr(ds, keyword)
    if variant == "misplaced":
        ds.Laterality = laterality
        code = Dataset()
        code.CodeValue, code.CodeMeaning = _VIEW_CODES[view]
        code.CodingSchemeDesignator = "SRT"
        ds.ViewCodeSequence = Sequence([code])
    elif variant == "text-only":
        spelling = _TEXT_SPELLINGS[int(rng.integers(len(_TEXT_SPELLINGS)))]
        side_word = "LEFT" if laterality == "L" else "RIGHT"
        ds.SeriesDescription = spelling.format(side=laterality, side_word=side_word, view=view)


def _mirror(ds: Dataset) -> None:
    """Store the pixels facing the other way (uncompressed), as some exports and digitisers do."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    flipped = np.ascontiguousarray(ds.pixel_array[:, ::-1])
    ds.PixelData = flipped.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _identify(ds: Dataset, mark: str) -> None:
    """Fill every identifying attribute, a private block and a sequence item with the marker."""
    for keyword, value in IDENTIFYING.items():
        setattr(ds, keyword, value.format(mark=mark))
    block = ds.private_block(0x0029, _PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", f"{mark} private note")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.424242"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    item.ReferringPhysicianName = f"{mark}^IN^SEQUENCE"
    ds.ReferencedImageSequence = Sequence([item])


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        ds.save_as(path, enforce_file_format=True)


def _write_extras(out: Path, mark: str) -> None:
    """The files a real export carries besides mammograms, each of which the import must skip."""
    extras = {
        "DICOMDIR": ("1.2.840.10008.1.3.10", "", {}),
        "PAT000/ST000/PR/ps0001": ("1.2.840.10008.5.1.4.1.1.11.1", "PR", {}),
        "PAT000/ST000/SR/sr0001": ("1.2.840.10008.5.1.4.1.1.88.22", "SR", {"ImageComments": mark}),
        "PAT000/ST000/DOC/report.dcm": ("1.2.840.10008.5.1.4.1.1.104.1", "DOC", {}),
        "PAT001/ST001/CT/ct0001": ("1.2.840.10008.5.1.4.1.1.2", "CT", {"Rows": 64, "Columns": 64}),
        "PAT001/ST001/SC/screen.dcm": ("1.2.840.10008.5.1.4.1.1.7", "OT", {"Rows": 64, "Columns": 64}),
        "PAT001/ST001/TOMO/bt0001": (
            "1.2.840.10008.5.1.4.1.1.13.1.3", "MG", {"Rows": 64, "Columns": 64, "NumberOfFrames": 30},
        ),
    }  # fmt: skip
    for n, (relative, (sop_class, modality, values)) in enumerate(extras.items()):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, f"1.2.826.0.1.3680043.8.498.9{n}"
        if modality:
            ds.Modality = modality
        ds.PatientName = f"{mark}^PATIENT"
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        _write(ds, out / relative)
    (out / "PAT000" / "README.TXT").write_text(f"export for {mark}\n")
