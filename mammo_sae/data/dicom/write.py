"""Write synthetic mammograms as valid, deterministic DICOM Part-10 files (phantoms and test fixtures).

Same input, same bytes: no clock, no random UIDs. UIDs come from `tags` or are derived from a hash of
the pixel data and the other arguments. Writes are atomic (temporary file in the target folder, then
`os.replace`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import uid as dicom_uid
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_encoder
from pydicom.sequence import Sequence

from mammo_sae.core.atomic import atomic_open
from mammo_sae.data.dicom.display import WindowPreset
from mammo_sae.data.dicom.errors import DicomWriteError

__all__ = [
    "TRANSFER_SYNTAXES",
    "DicomEncoding",
    "WindowPreset",
    "intensity_to_stored",
    "write_mammogram",
]

#: Writer names of the supported transfer syntaxes.
TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit-little": dicom_uid.ExplicitVRLittleEndian,
    "implicit-little": dicom_uid.ImplicitVRLittleEndian,
    "deflated": dicom_uid.DeflatedExplicitVRLittleEndian,
    "jpeg2000-lossless": dicom_uid.JPEG2000Lossless,
    "jpeg2000": dicom_uid.JPEG2000,
    "rle": dicom_uid.RLELossless,
    "jpeg-ls-lossless": dicom_uid.JPEGLSLossless,
    "jpeg-ls-near-lossless": dicom_uid.JPEGLSNearLossless,
    "jpeg-lossless": dicom_uid.JPEGLosslessSV1,
}
_LOSSY = {"jpeg2000", "jpeg-ls-near-lossless"}
#: Encoders of the syntaxes pydicom can not encode, by writer name: ``encode(stored [H, W] uint16,
#: bits_stored) -> codestream``. No command writes JPEG Lossless (Process 14) files, so the package ships
#: none; the tests register one (tests/ljpeg_encoder.py) to exercise the decoding path.
FRAME_ENCODERS: dict[str, Callable[[np.ndarray, int], bytes]] = {}
_SOP_CLASS = {
    "FOR PRESENTATION": dicom_uid.DigitalMammographyXRayImageStorageForPresentation,
    "FOR PROCESSING": dicom_uid.DigitalMammographyXRayImageStorageForProcessing,
}
_J2K_MIN_SIDE = 32  # openjpeg's fixed 6 DWT resolutions need 2**5 pixels per side
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root; suffixes here are hashes, never random
_IMPLEMENTATION_UID = dicom_uid.generate_uid(_UID_ROOT, ["mammo-sae writer"])


@dataclass(frozen=True)
class DicomEncoding:
    """How `write_mammogram` encodes an image: pixel format, transfer syntax and display attributes."""

    photometric: str = "MONOCHROME2"
    bits_stored: int = 16
    transfer_syntax: str = "explicit-little"
    windows: tuple[WindowPreset, ...] = ()
    voi_lut_function: str | None = None
    voi_lut_sequence: bool = False
    presentation_intent: str = "FOR PRESENTATION"
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    pixel_padding_value: int | None = None
    pixel_padding_range_limit: int | None = None
    jpeg2000_ratio: float = 10.0  # compression ratio of "jpeg2000" (lossy)
    jpeg_ls_error: int = 2  # maximum absolute error of "jpeg-ls-near-lossless"

    def __post_init__(self) -> None:
        if self.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {self.photometric!r}")
        if not 12 <= self.bits_stored <= 16:
            raise ValueError(f"bits_stored must be 12..16, got {self.bits_stored}")
        if self.transfer_syntax not in TRANSFER_SYNTAXES:
            raise ValueError(
                f"unknown transfer_syntax {self.transfer_syntax!r}; choose one of {sorted(TRANSFER_SYNTAXES)}"
            )
        if self.voi_lut_function is not None and self.voi_lut_function not in _VOI_FUNCTIONS:
            raise ValueError(f"voi_lut_function must be one of {_VOI_FUNCTIONS} or None")
        if self.presentation_intent not in _SOP_CLASS:
            raise ValueError(f"presentation_intent must be one of {sorted(_SOP_CLASS)}")
        if any(w.width < 1 for w in self.windows):
            raise ValueError("every window width must be >= 1 (DICOM PS3.3 C.11.2.1.2)")
        if (self.rescale_slope is None) != (self.rescale_intercept is None):
            raise ValueError("give both rescale_slope and rescale_intercept, or neither")
        if self.rescale_slope is not None and self.rescale_slope == 0:
            raise ValueError("rescale_slope must be non-zero")

    @property
    def max_stored(self) -> int:
        return (1 << self.bits_stored) - 1


def intensity_to_stored(intensity01: np.ndarray, encoding: DicomEncoding) -> np.ndarray:
    """Map a float image in [0, 1] (bright = dense) to uint16 stored values, inverted for MONOCHROME1."""
    scaled = np.rint(np.clip(np.asarray(intensity01, dtype=np.float64), 0.0, 1.0) * encoding.max_stored)
    stored = scaled.astype(np.uint16)
    if encoding.photometric == "MONOCHROME1":
        stored = np.uint16(encoding.max_stored) - stored
    return stored


def write_mammogram(
    path: str | os.PathLike[str],
    stored: np.ndarray,
    *,
    laterality: str,
    view: str,
    encoding: DicomEncoding = DicomEncoding(),
    tags: Mapping[str, object] | None = None,
) -> None:
    """Write `stored` (2-D uint16 STORED values) as a Digital Mammography X-Ray image file.

    `tags` maps DICOM keywords to values that are added or override the defaults (applied last, so they
    can also make deliberately inconsistent test files). A value that is a `pydicom.DataElement` is added
    as is, whatever its key, which is how private elements get in.
    """
    _check_pixels(stored, encoding)
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    tags = dict(tags or {})

    ds = _image_dataset(stored, laterality, view, encoding, tags)
    _encode_pixels(ds, stored, encoding)
    _apply_tags(ds, tags)
    ds.file_meta = _file_meta(ds, TRANSFER_SYNTAXES[encoding.transfer_syntax])
    _atomic_write(Path(path), ds)


def _check_pixels(stored: np.ndarray, encoding: DicomEncoding) -> None:
    if not isinstance(stored, np.ndarray) or stored.dtype != np.uint16:
        raise ValueError(f"stored must be a uint16 numpy array, got {getattr(stored, 'dtype', type(stored))}")
    if stored.ndim != 2 or 0 in stored.shape:
        raise ValueError(f"stored must be a non-empty 2-D array, got shape {stored.shape}")
    if stored.shape[0] > 65535 or stored.shape[1] > 65535:
        raise ValueError(f"DICOM Rows/Columns are limited to 65535, got shape {stored.shape}")
    if int(stored.max()) > encoding.max_stored:
        raise ValueError(
            f"stored values go up to {int(stored.max())} but bits_stored={encoding.bits_stored} allows at most "
            f"{encoding.max_stored}; rescale the image or raise bits_stored"
        )


def _derived_uid(label: str, fingerprint: str) -> str:
    return dicom_uid.generate_uid(_UID_ROOT, [label, fingerprint])


def _fingerprint(stored: np.ndarray, laterality: str, view: str, encoding: DicomEncoding, tags: dict) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stored).tobytes())
    digest.update(repr((stored.shape, laterality, view, encoding, sorted(tags.items(), key=repr))).encode())
    return digest.hexdigest()


def _ds_value(x: float) -> str:
    """A decimal string (DS, at most 16 characters) for a float."""
    text = f"{x:.10g}"
    assert len(text) <= 16, text
    return text


def _image_dataset(
    stored: np.ndarray, laterality: str, view: str, encoding: DicomEncoding, tags: dict
) -> Dataset:
    fingerprint = _fingerprint(stored, laterality, view, encoding, tags)
    ds = Dataset()
    ds.SOPClassUID = _SOP_CLASS[encoding.presentation_intent]
    ds.SOPInstanceUID = _derived_uid("sop", fingerprint)
    ds.StudyInstanceUID = _derived_uid("study", fingerprint)
    ds.SeriesInstanceUID = _derived_uid("series", fingerprint)
    ds.Modality = "MG"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = encoding.presentation_intent
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.BurnedInAnnotation = "NO"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = encoding.photometric
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = encoding.bits_stored
    ds.HighBit = encoding.bits_stored - 1
    ds.PixelRepresentation = 0

    if encoding.rescale_slope is not None:
        ds.RescaleIntercept = _ds_value(float(encoding.rescale_intercept))
        ds.RescaleSlope = _ds_value(float(encoding.rescale_slope))
        ds.RescaleType = "US"
    if encoding.windows:
        ds.WindowCenter = [_ds_value(w.center) for w in encoding.windows]
        ds.WindowWidth = [_ds_value(w.width) for w in encoding.windows]
        ds.WindowCenterWidthExplanation = [w.name for w in encoding.windows]
    if encoding.voi_lut_function is not None:
        ds.VOILUTFunction = encoding.voi_lut_function
    if encoding.voi_lut_sequence:
        ds.VOILUTSequence = Sequence([_voi_lut_item(stored, encoding)])
    if encoding.pixel_padding_value is not None:
        ds.PixelPaddingValue = int(encoding.pixel_padding_value)
    if encoding.pixel_padding_range_limit is not None:
        ds.PixelPaddingRangeLimit = int(encoding.pixel_padding_range_limit)
    return ds


def _voi_lut_item(stored: np.ndarray, encoding: DicomEncoding) -> Dataset:
    """A linear 16-bit VOI LUT over the first window, or over the image's modality range if none."""
    values = stored.astype(np.float64)
    if encoding.rescale_slope is not None:
        values = values * encoding.rescale_slope + encoding.rescale_intercept
    if encoding.windows:
        c, w = encoding.windows[0].center, encoding.windows[0].width
        low, high = int(np.floor(c - 0.5 - (w - 1) / 2)), int(np.ceil(c - 0.5 + (w - 1) / 2))
        explanation = f"LINEAR LUT {encoding.windows[0].name}"
    else:
        low, high = int(np.floor(values.min())), int(np.ceil(values.max()))
        explanation = "LINEAR LUT FULL RANGE"
    low = max(low, 0)
    high = min(max(high, low + 1), low + 65535)
    n_entries = high - low + 1
    table = np.rint(np.linspace(0, 65535, n_entries)).astype("<u2")

    item = Dataset()
    item.LUTDescriptor = [n_entries % 65536, low, 16]  # 0 entries means 65536 (PS3.3 C.11.2.1.1)
    item.LUTExplanation = explanation
    item.add(DataElement("LUTData", "OW", table.tobytes()))
    return item


def _encode_pixels(ds: Dataset, stored: np.ndarray, encoding: DicomEncoding) -> None:
    name = encoding.transfer_syntax
    syntax = TRANSFER_SYNTAXES[name]
    raw = np.ascontiguousarray(stored).astype("<u2", copy=False)
    if not syntax.is_compressed:
        ds.add(DataElement("PixelData", "OW", raw.tobytes()))
        return
    if name in FRAME_ENCODERS:
        ds.add(DataElement("PixelData", "OB", encapsulate([FRAME_ENCODERS[name](raw, encoding.bits_stored)])))
        ds["PixelData"].is_undefined_length = True
        return
    if name == "jpeg-lossless":
        raise DicomWriteError(
            f"pydicom has no encoder for {syntax.name} and mammo-sae ships none (no command writes such "
            "files); register one in mammo_sae.data.dicom.write.FRAME_ENCODERS, or choose another transfer syntax"
        )

    plugin = {"rle": "pydicom", "jpeg-ls-lossless": "pyjpegls", "jpeg-ls-near-lossless": "pyjpegls"}.get(
        name, "pylibjpeg"
    )
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        missing = "; ".join(f"{k}: {v}" for k, v in encoder.missing_dependencies.items())
        raise DicomWriteError(f"no encoder for {syntax.name} is installed ({missing}); pip install {plugin}")
    options: dict[str, object] = {}
    if name == "jpeg2000":
        options["j2k_cr"] = [encoding.jpeg2000_ratio]
    if name == "jpeg-ls-near-lossless":
        options["jls_error"] = encoding.jpeg_ls_error
    if name.startswith("jpeg2000") and min(raw.shape) < _J2K_MIN_SIDE:
        raise DicomWriteError(
            f"JPEG 2000 needs at least {_J2K_MIN_SIDE} rows and columns (openjpeg uses 6 wavelet "
            f"resolutions), got {raw.shape}; use a larger image or another transfer syntax"
        )
    try:
        ds.compress(syntax, raw, encoding_plugin=plugin, generate_instance_uid=False, **options)
    except (RuntimeError, ValueError) as exc:
        raise DicomWriteError(f"encoding as {syntax.name} failed: {' '.join(str(exc).split())}") from exc
    if name in _LOSSY:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = _ds_value(raw.nbytes / len(ds.PixelData))
        ds.LossyImageCompressionMethod = "ISO_15444_1" if name == "jpeg2000" else "ISO_14495_1"


def _apply_tags(ds: Dataset, tags: dict[str, object]) -> None:
    for keyword, value in tags.items():
        if isinstance(value, DataElement):
            ds.add(value)
            continue
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"unknown DICOM keyword {keyword!r} in tags; check the spelling (PS3.6)")
        setattr(ds, keyword, value)


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MAMMO_SAE_0_1"
    return meta


def _atomic_write(path: Path, ds: Dataset) -> None:
    with atomic_open(path, "wb") as handle:
        dcmwrite(handle, ds, enforce_file_format=True)
