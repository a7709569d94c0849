"""Read a mammogram once: raw stored pixels for models, display parameters and safe metadata for people.

The pydicom data set is dropped before returning (it holds identifying data). Every failure raises its
own `DicomReadError` subclass naming the file and the fix; text that comes from pydicom or a decoder is
scrubbed of the file's identifying values first, and the original exception is not chained.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mammo_sae.data.dicom.codestream import check_codestream
from mammo_sae.data.dicom.decode import check_decoder, decode_pixels
from mammo_sae.data.dicom.display import LookupTable, WindowPreset
from mammo_sae.data.dicom.errors import (
    DicomReadError,
    ForProcessingWarning,
    ImageSizeError,
    NoPixelDataError,
    NotDicomError,
    NotMammogramError,
    TruncatedDicomError,
    UnsupportedImageError,
)
from mammo_sae.data.dicom.integrity import PIXEL_DATA, check_complete, check_pixel_bytes
from mammo_sae.data.dicom.limits import check_header_text, screen_file
from mammo_sae.data.dicom.metadata import SafeMetadata, safe_metadata, window_presets_of
from mammo_sae.data.dicom.privacy import identifying_strings, scrub
from mammo_sae.data.dicom.values import float_or_none, int_or_none

__all__ = ["DEFAULT_MAX_PIXELS", "MammogramDicom", "read_mammogram"]

DEFAULT_MAX_PIXELS = 100_000_000
_SILENCED_WARNINGS = ("Invalid value for VR UI",)  # VinDr replaces UIDs by hex strings


@dataclass(frozen=True, eq=False)
class MammogramDicom:
    """One decoded mammogram without its data set: stored pixels, display parameters, safe metadata."""

    stored: np.ndarray  # raw stored values as decoded, no LUT applied; 2-D unless expect_mammogram=False
    photometric: str
    metadata: SafeMetadata
    window_presets: list[WindowPreset]
    bits_stored: int
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    modality_lut: LookupTable | None = None
    voi_luts: list[LookupTable] = field(default_factory=list)
    voi_lut_function: str = "LINEAR"
    pixel_padding_value: int | None = None
    pixel_padding_range_limit: int | None = None
    presentation_intent: str | None = None

    def __repr__(self) -> str:
        return (
            f"MammogramDicom(shape={self.stored.shape}, dtype={self.stored.dtype}, "
            f"photometric={self.photometric!r}, key={self.metadata.key!r}, "
            f"presets={[w.name for w in self.window_presets]})"
        )


def read_mammogram(
    path: str | Path | bytes,
    *,
    name: str | None = None,
    allow_non_mg: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expect_mammogram: bool = True,
    salt: str | None = None,
) -> MammogramDicom:
    """Read and decode one DICOM mammogram, refusing bad input with a specific `DicomReadError`.

    allow_non_mg: accept modalities other than MG. max_pixels: refuse Rows x Columns x frames above it
    before decoding. expect_mammogram: refuse multi-frame and colour images (else `stored` may be 3-D).
    salt: salt of `metadata.key` (default: $MAMMO_SAE_ID_SALT, else a fixed documented salt).
    "FOR PROCESSING" images load with a `ForProcessingWarning`.
    ``path`` may also be the file's bytes (an upload kept in memory); ``name`` then labels the messages.
    """
    if isinstance(path, bytes | bytearray | memoryview):
        source = bytes(path)
        file_size = len(source)
        path = Path(name or "uploaded file")
    else:
        path = Path(path)
        source = _file_bytes(path)
        file_size = len(source)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        screen_file(source, path, max_pixels)
        ds = _parse(source, path)
        try:
            check_complete(ds, path, file_size, [str(w.message) for w in caught])  # before elements convert
            check_header_text(ds, path)  # before any value is harvested or converted
            secrets = identifying_strings(ds)
            image = _read_image(
                ds,
                path,
                secrets,
                allow_non_mg=allow_non_mg,
                max_pixels=max_pixels,
                expect_mammogram=expect_mammogram,
                salt=salt,
            )
        except DicomReadError:
            raise
        except Exception as exc:  # pydicom converts elements lazily: a corrupt one fails on first use
            raise DicomReadError(
                f"{path}: the DICOM data set is corrupt ({type(exc).__name__} while reading its elements); "
                "download or copy the file again, or re-export it"
            ) from None
    _reemit(caught, secrets)
    if image.presentation_intent == "FOR PROCESSING":
        warnings.warn(
            f"{path}: PresentationIntentType is 'FOR PROCESSING' (raw detector data): fine as model input, "
            "not meant for display; windows and contrast may look wrong",
            ForProcessingWarning,
            stacklevel=2,
        )
    return image


def _read_image(
    ds: Dataset,
    path: Path,
    secrets: frozenset[str],
    *,
    allow_non_mg: bool,
    max_pixels: int,
    expect_mammogram: bool,
    salt: str | None,
) -> MammogramDicom:
    if PIXEL_DATA not in ds:
        raise NoPixelDataError(
            f"{path}: no Pixel Data element (SOP class: {_sop_class_name(ds)}); it is not an image "
            "(e.g. a report or presentation state) or it was cut short: point to the image file itself"
        )
    _check_modality(ds, path, allow_non_mg)
    _check_geometry(ds, path, max_pixels, expect_mammogram)
    if expect_mammogram:
        _check_pixel_format(ds, path)
    syntax = _transfer_syntax(ds)
    check_decoder(syntax, path)
    check_pixel_bytes(ds, path, syntax)
    check_codestream(ds, path, syntax)
    stored = decode_pixels(ds, path, syntax, secrets)
    return MammogramDicom(
        stored=stored,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
        metadata=safe_metadata(ds, salt=salt),
        window_presets=list(window_presets_of(ds)),
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 16))),
        rescale_slope=float_or_none(ds.get("RescaleSlope")),
        rescale_intercept=float_or_none(ds.get("RescaleIntercept")),
        modality_lut=_lookup_tables(ds, "ModalityLUTSequence")[0] if "ModalityLUTSequence" in ds else None,
        voi_luts=_lookup_tables(ds, "VOILUTSequence"),
        voi_lut_function=_voi_function(ds, path),
        pixel_padding_value=int_or_none(ds.get("PixelPaddingValue")),
        pixel_padding_range_limit=int_or_none(ds.get("PixelPaddingRangeLimit")),
        presentation_intent=str(ds.get("PresentationIntentType", "")).strip().upper() or None,
    )


# --- parsing and header checks ------------------------------------------------------------------------


def _file_bytes(path: Path) -> bytes:
    """The whole file: parsed from memory, a length field claiming 4 GB reads what is there, while a file
    object would first allocate the 4 GB it claims."""
    if not path.is_file():
        raise DicomReadError(f"{path}: no such file; check the dataset root and the image path")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DicomReadError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None


def _open(source: bytes) -> io.BytesIO:
    return io.BytesIO(source)


def _parse(source: bytes, path: Path) -> Dataset:
    """dcmread, with a forced second try for files without the Part-10 header (raw data sets);
    ``path`` names the source in messages."""
    try:
        return dcmread(_open(source))
    except InvalidDicomError:
        pass
    except zlib.error as exc:
        if "truncated" not in str(exc):
            raise DicomReadError(
                f"{path}: the deflated data set cannot be inflated (corrupt zlib stream); "
                "download or copy the file again"
            ) from None
        raise TruncatedDicomError(
            f"{path}: the deflated data set ends early; the file is truncated: download or copy it again"
        ) from None
    except (EOFError, struct.error, BytesLengthException) as exc:
        raise TruncatedDicomError(
            f"{path}: the DICOM header ends early ({type(exc).__name__}); the file is truncated: "
            "download or copy it again"
        ) from None
    except Exception as exc:
        raise DicomReadError(
            f"{path}: the DICOM header could not be parsed ({type(exc).__name__}); the file is corrupt: "
            "download or copy it again"
        ) from None
    try:
        ds = dcmread(_open(source), force=True)
    except Exception:
        ds = None
    if ds is None or not any(tag in ds for tag in (0x00080016, 0x00280010, PIXEL_DATA)):
        raise NotDicomError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128 and no DICOM data set inside); "
            "point to the .dicom/.dcm image, not a PNG, CSV or archive, or the file is cut before its header"
        )
    if "TransferSyntaxUID" not in ds.file_meta:  # raw data set: pydicom tells which VR encoding it found
        implicit = ds.original_encoding[0]
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def _transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.TransferSyntaxUID))


def _sop_class_name(ds: Dataset) -> str:
    sop_class = ds.get("SOPClassUID")
    if sop_class is None:
        return "missing"
    uid = UID(str(sop_class))
    return uid.name if uid.name != str(uid) else "unregistered"


def _check_modality(ds: Dataset, path: Path, allow_non_mg: bool) -> None:
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality == "MG" or allow_non_mg:
        return
    raise NotMammogramError(
        f"{path}: Modality is {_shown_code(modality)!r}, not 'MG' (mammography); check the file list, "
        "or pass allow_non_mg=True to read it anyway"
    )


def _shown_code(value: str) -> str:
    """A code string as a message may quote it: itself if well formed, else 'malformed' or 'missing'."""
    if not value:
        return "missing"
    return value if value.replace("_", "").replace(" ", "").isalnum() and len(value) <= 16 else "malformed"


def _check_geometry(ds: Dataset, path: Path, max_pixels: int, expect_mammogram: bool) -> None:
    rows, cols = int_or_none(ds.get("Rows")), int_or_none(ds.get("Columns"))
    frames = int_or_none(ds.get("NumberOfFrames")) or 1
    samples = int_or_none(ds.get("SamplesPerPixel")) or 1
    if not rows or not cols or rows < 0 or cols < 0 or frames < 0:
        raise ImageSizeError(
            f"{path}: image size Rows={rows} Columns={cols} frames={frames} is empty or missing; "
            "the header is corrupt: re-export the image"
        )
    n_pixels = rows * cols * frames
    if n_pixels > max_pixels:
        raise ImageSizeError(
            f"{path}: {rows} x {cols} x {frames} frames = {n_pixels:,} pixels exceeds max_pixels="
            f"{max_pixels:,}; refused before decoding. Raise max_pixels if the file is genuine"
        )
    if expect_mammogram and frames > 1:
        raise UnsupportedImageError(
            f"{path}: {frames} frames (e.g. tomosynthesis); a mammogram has one. Use the 2-D synthetic "
            "view, or pass expect_mammogram=False to get all frames"
        )
    if expect_mammogram and samples != 1:
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()[:16]
        raise UnsupportedImageError(
            f"{path}: colour image ({samples} samples per pixel, {photometric!r}); a mammogram is greyscale "
            "(MONOCHROME1/2). It is probably a screenshot or secondary capture: use the original image"
        )


def _check_pixel_format(ds: Dataset, path: Path) -> None:
    """A mammogram is MONOCHROME1/2 with 8 or 16 bits allocated (PS3.3 C.8.11.7); checked before decoding."""
    allocated, stored = int_or_none(ds.get("BitsAllocated")), int_or_none(ds.get("BitsStored"))
    representation = int_or_none(ds.get("PixelRepresentation"))
    if (
        allocated not in (8, 16)
        or stored is None
        or not 1 <= stored <= allocated
        or representation not in (0, 1)
    ):
        raise UnsupportedImageError(
            f"{path}: pixel format BitsAllocated={allocated} BitsStored={stored} PixelRepresentation="
            f"{representation} is not a mammogram's (8 or 16 bits allocated, 1 to BitsAllocated stored, "
            "representation 0 or 1); the header is corrupt: re-export the image"
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(
            f"{path}: PhotometricInterpretation is {_shown_code(photometric)!r}; a mammogram is greyscale "
            "(MONOCHROME1 or MONOCHROME2). It is probably a screenshot or secondary capture: use the original"
        )


# --- display parameters ------------------------------------------------------------------------------


def _lookup_tables(ds: Dataset, keyword: str) -> list[LookupTable]:
    """Parse a Modality or VOI LUT Sequence (PS3.3 C.11.1 / C.11.2) into LookupTables."""
    tables = []
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    for i, item in enumerate(ds.get(keyword) or []):
        descriptor = [int(v) for v in item.LUTDescriptor]
        n_entries = descriptor[0] or 65536
        first = descriptor[1]
        if signed and first >= 32768:
            first -= 65536  # first mapped value is SS when pixels are signed
        bits = descriptor[2]
        raw = item.LUTData
        if isinstance(raw, bytes | bytearray):
            data = np.frombuffer(raw, dtype="<u1" if bits == 8 and len(raw) == n_entries else "<u2")
        else:
            data = np.asarray(list(raw) if not isinstance(raw, int) else [raw], dtype=np.int64)
        name = str(item.get("LUTExplanation", "") or "").strip() or f"VOI LUT {i + 1}"
        tables.append(
            LookupTable(first_mapped=first, data=data[:n_entries].astype(np.float64), bits=bits, name=name)
        )
    return tables


def _voi_function(ds: Dataset, path: Path) -> str:
    """VOILUTFunction, LINEAR when absent (PS3.3 C.11.2.1.3); an unknown value falls back with a warning."""
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        return function
    warnings.warn(
        f"{path}: unknown VOILUTFunction {_shown_code(function)!r}; windows use LINEAR",
        UserWarning,
        stacklevel=2,
    )
    return "LINEAR"


def _reemit(caught: list[warnings.WarningMessage], secrets: frozenset[str]) -> None:
    """Re-issue pydicom's warnings scrubbed of identifying values, minus the known-harmless ones."""
    for w in caught:
        text = str(w.message)
        if any(s in text for s in _SILENCED_WARNINGS):
            continue
        category = w.category if issubclass(w.category, Warning) else UserWarning
        warnings.warn(scrub(text, secrets), category, stacklevel=3)
