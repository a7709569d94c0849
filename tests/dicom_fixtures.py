"""Shared helpers of the DICOM tests: small synthetic mammograms and a file full of identifying data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement

from mammo_sae.data.dicom import DicomEncoding, intensity_to_stored, write_mammogram

SHAPE = (96, 80)
DEFAULT_ENCODING = DicomEncoding()

# Values that must never leave the reader: each is distinctive so a substring search is meaningful.
IDENTIFYING_TAGS: dict[str, object] = {
    "PatientName": "Quixote^Dulcinea^Maria",
    "PatientID": "PID-88412377",
    "PatientBirthDate": "19470312",
    "StudyDate": "20190823",
    "StudyTime": "101542",
    "AccessionNumber": "ACC5531902",
    "InstitutionName": "Hospital Saint Zebulon",
    "OperatorsName": "Operatorova^Ludmila",
    "ReferringPhysicianName": "Referrington^Barnaby",
    "ImageComments": "palpable lump noted by Dr Whitcombe",
    "StudyDescription": "MAMMO SCREEN BILATERAL ZEBULON",
    "StudyInstanceUID": "1.2.3.4.5.6.7.8.9.1001.4471",
    "SeriesInstanceUID": "1.2.3.4.5.6.7.8.9.1001.4472",
    "SOPInstanceUID": "1.2.3.4.5.6.7.8.9.1001.4473",
}
PRIVATE_CREATOR = DataElement(0x00090010, "LO", "ACME ZORBLAX CORP")
PRIVATE_VALUE = DataElement(0x00091001, "LO", "zorblax-secret-7781")
IDENTIFYING_STRINGS: tuple[str, ...] = (
    "Quixote",
    "Dulcinea",
    "PID-88412377",
    "19470312",
    "20190823",
    "101542",
    "ACC5531902",
    "Zebulon",
    "Operatorova",
    "Ludmila",
    "Referrington",
    "Barnaby",
    "Whitcombe",
    "1.2.3.4.5.6.7.8.9.1001",
    "ZORBLAX",
    "zorblax-secret-7781",
)


def smooth_intensity(shape: tuple[int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """A smooth float image in [0, 1] (bright = dense) with a little noise: compressible, not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 0.5 + 0.35 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    return np.clip(base + 0.01 * rng.standard_normal(shape), 0.0, 1.0)


def write_test_image(
    path: Path,
    encoding: DicomEncoding = DEFAULT_ENCODING,
    *,
    intensity: np.ndarray | None = None,
    laterality: str = "L",
    view: str = "CC",
    tags: dict[str, object] | None = None,
) -> np.ndarray:
    """Write a smooth test mammogram; return the stored values written."""
    stored = intensity_to_stored(smooth_intensity() if intensity is None else intensity, encoding)
    write_mammogram(path, stored, laterality=laterality, view=view, encoding=encoding, tags=tags)
    return stored


def identifying_tags() -> dict[str, object]:
    """IDENTIFYING_TAGS plus a private creator and a private element with a distinctive string."""
    return {**IDENTIFYING_TAGS, "private creator": PRIVATE_CREATOR, "private value": PRIVATE_VALUE}


def leaked(text: str) -> list[str]:
    """The identifying strings found in `text` (case-insensitive); empty when nothing leaked."""
    lowered = text.lower()
    return [s for s in IDENTIFYING_STRINGS if s.lower() in lowered]


def demo_study_export(folder: Path, seed: int, variants: tuple[str, ...]):
    """One phantom study at the demo's image size written as a PACS export (its four files, no other files)
    under ``folder / "export"``; returns what each file really is (``write_pacs_export``'s table)."""
    import warnings

    from mammo_sae.data.phantom import PhantomConfig, generate_dataset
    from mammo_sae.data.phantom.pacs_export import write_pacs_export
    from mammo_sae.demo import read_demo_manifest

    height, width = (int(v) for v in read_demo_manifest()["plan"]["image_size"].split("x"))
    generate_dataset(
        folder / "phantoms", PhantomConfig(studies=1, seed=seed, height=height, width=width), workers=1
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        return write_pacs_export(folder / "phantoms", folder / "export", extras=False, variants=variants)
