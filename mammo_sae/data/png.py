"""PNG decoding for model frames and uploads: a greyscale uint8 image, refused before decoding when the
bytes are not a PNG or would decode to more pixels than any mammogram has, and after it when the image is
in colour (a screenshot or a figure, not a mammogram). A 16-bit PNG is read at its full depth and scaled
to 8 bits over its own range, as the DICOM's stored values are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mammo_sae.core.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PNG_PIXELS = 60_000_000
#: A pixel is coloured when its channels differ by more than this (8-bit levels; JPEG-like noise stays below).
COLOUR_LEVELS = 12
#: The share of coloured pixels above which a PNG is a colour image (a grey image saved as RGB has none).
COLOUR_SHARE = 0.002


def decode_png(data: bytes, name: str = "uploaded file") -> np.ndarray:
    """A greyscale uint8 image from PNG bytes, refusing what is not a PNG or too large before decoding."""
    if not data.startswith(PNG_MAGIC):
        raise DataError(
            f"{name}: not a PNG file (its first bytes are not the PNG signature); upload a .png or a DICOM"
        )
    if len(data) < 24:
        raise DataError(f"{name}: the PNG ends inside its header; it is truncated")
    if data[12:16] != b"IHDR":
        raise DataError(f"{name}: the PNG's first chunk is not its IHDR header; the file is corrupt")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if width * height == 0 or width * height > MAX_PNG_PIXELS:
        raise DataError(f"{name}: a {width} x {height} PNG is empty or larger than {MAX_PNG_PIXELS:,} pixels")
    if b"IEND" not in data:
        raise DataError(f"{name}: the PNG has no IEND chunk; it is truncated or corrupt: upload it again")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{name}: the PNG data is corrupt and cannot be decoded")
    if image.ndim == 3:
        image = _grey_of(image[:, :, :3], name)
    if image.dtype != np.uint8:  # 16 bits: the full depth, over the image's own range
        low, high = float(image.min()), float(image.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = ((image.astype(np.float32) - low) * scale).astype(np.uint8)
    return image


def _grey_of(bgr: np.ndarray, name: str) -> np.ndarray:
    """The grey image an RGB(A) PNG holds, or a DataError when it really is in colour."""
    step = max(1, int(np.sqrt(bgr.shape[0] * bgr.shape[1] / 1_000_000)))  # about a million pixels looked at
    sample = bgr[::step, ::step].astype(np.int32)
    spread = sample.max(axis=2) - sample.min(axis=2)
    levels = COLOUR_LEVELS * (257 if bgr.dtype == np.uint16 else 1)
    coloured = float((spread > levels).mean())
    if coloured > COLOUR_SHARE:
        raise DataError(
            f"{name}: a colour image ({coloured:.1%} of its pixels are coloured), such as a screenshot or a "
            "figure, not a mammogram; upload the DICOM, or a greyscale PNG of the mammogram alone"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def read_png(path: str | Path) -> np.ndarray:
    """The greyscale uint8 image of a PNG file (a Mammo-CLIP frame), with the checks of :func:`decode_png`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the PNG ({error.strerror or error})") from None
    return decode_png(data, str(path))
