"""PNG decoding for model frames and uploads: a greyscale uint8 image, refused before decoding when the
bytes are not a PNG or would decode to more pixels than any mammogram has."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mammo_sae.core.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PNG_PIXELS = 60_000_000


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
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def read_png(path: str | Path) -> np.ndarray:
    """The greyscale uint8 image of a PNG file (a Mammo-CLIP frame), with the checks of :func:`decode_png`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the PNG ({error.strerror or error})") from None
    return decode_png(data, str(path))
