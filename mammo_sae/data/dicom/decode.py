"""Pixel decoding: find the plugin for the transfer syntax (naming the package to install), then decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, RLELossless

from mammo_sae.data.dicom.errors import DecodeError, MissingDecoderError
from mammo_sae.data.dicom.privacy import scrub
from mammo_sae.data.dicom.values import int_or_none

_INSTALL_HINTS = {
    "jpeg2000": "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "jpegls": "pip install pylibjpeg pylibjpeg-libjpeg (or pyjpegls, or python-gdcm)",
    "jpeg": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "rle": "pip install pylibjpeg pylibjpeg-rle (pydicom's own RLE decoder needs only numpy)",
}


def install_hint(syntax: UID) -> str:
    """The pip command that brings a decoder for `syntax`."""
    if syntax == RLELossless:
        return _INSTALL_HINTS["rle"]
    if syntax.startswith("1.2.840.10008.1.2.4.8"):
        return _INSTALL_HINTS["jpegls"]
    if syntax.startswith(("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")):
        return _INSTALL_HINTS["jpeg2000"]
    if syntax.startswith("1.2.840.10008.1.2.4."):
        return _INSTALL_HINTS["jpeg"]
    return "pip install python-gdcm, or convert the file with `gdcmconv --raw`"


def check_decoder(syntax: UID, path: Path) -> None:
    """Raise MissingDecoderError, naming the package to install, unless a plugin can decode `syntax`."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise MissingDecoderError(
            f"{path}: transfer syntax {syntax.name} ({syntax}) has no pixel decoder in pydicom; convert "
            "the file to explicit VR little endian (e.g. `gdcmconv --raw in.dcm out.dcm`)"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(f"{plugin}: {needs}" for plugin, needs in decoder.missing_dependencies.items())
        raise MissingDecoderError(
            f"{path}: pixel data is compressed as {syntax.name} and no decoder plugin is installed "
            f"({missing or 'no plugin'}); {install_hint(syntax)}"
        )


def decode_pixels(ds: Dataset, path: Path, syntax: UID, secrets: frozenset[str]) -> np.ndarray:
    """Stored values as pydicom decodes them; decoder errors become DecodeError with `secrets` scrubbed."""
    try:
        stored = ds.pixel_array
    except Exception as exc:
        detail = scrub(" ".join(f"{type(exc).__name__}: {exc}".split()), secrets)[:400]
        raise DecodeError(
            f"{path}: decoding the {syntax.name} pixel data failed ({detail}); the codestream is corrupt or "
            "inconsistent with the header: re-download the file or re-export it uncompressed"
        ) from None
    frames = int_or_none(ds.get("NumberOfFrames")) or 1
    samples = int_or_none(ds.get("SamplesPerPixel")) or 1
    expected = (int(ds.Rows), int(ds.Columns))
    expected = ((frames,) if frames > 1 else ()) + expected + ((samples,) if samples > 1 else ())
    if stored.shape != expected:
        raise DecodeError(
            f"{path}: decoded pixels have shape {stored.shape}, the header says {expected}; the file is "
            "inconsistent: re-export it"
        )
    return stored
