"""The image size a compressed codestream declares, checked against Rows x Columns before decoding.

Decoders allocate what the codestream's own header says, not what the DICOM header says: a 12 KB JPEG
2000 stream that claims 60000 x 60000 pixels asks openjpeg for tens of gigabytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from mammo_sae.data.dicom.errors import DecodeError
from mammo_sae.data.dicom.integrity import PIXEL_DATA

_J2K_SYNTAXES = ("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")  # JPEG 2000, HTJ2K
_JPEG_SYNTAXES = (
    "1.2.840.10008.1.2.4.5",
    "1.2.840.10008.1.2.4.6",
    "1.2.840.10008.1.2.4.7",
    "1.2.840.10008.1.2.4.8",
)
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"  # start of codestream, then the image and tile size marker
_J2K_SEARCH = 4096  # a JP2 wrapper puts a few boxes before the codestream
_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = 0xDA
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length field
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}  # frame headers, JPEG-LS included


def check_codestream(ds: Dataset, path: Path, syntax: UID) -> None:
    """Raise DecodeError when the first frame's codestream declares another size than Rows x Columns."""
    if not syntax.is_encapsulated:
        return
    declared = declared_size(first_fragment(ds.get_item(PIXEL_DATA).value or b""), syntax)
    expected = (int(ds.Rows), int(ds.Columns))
    if declared is not None and declared != expected:
        raise DecodeError(
            f"{path}: the {syntax.name} codestream declares {declared[0]} x {declared[1]} pixels but Rows x "
            f"Columns is {expected[0]} x {expected[1]}; refused before decoding (a corrupt or hostile file): "
            "re-download the file or re-export it uncompressed"
        )


def declared_size(fragment: bytes, syntax: UID) -> tuple[int, int] | None:
    """(height, width) the codestream of a JPEG 2000 or JPEG (-LS, lossless) syntax declares, else None."""
    if syntax.startswith(_J2K_SYNTAXES):
        return j2k_size(fragment)
    if syntax.startswith(_JPEG_SYNTAXES):
        return jpeg_size(fragment)
    return None


def first_fragment(value: bytes) -> bytes:
    """The first fragment of encapsulated pixel data (after the basic offset table item)."""
    start = 8 + int.from_bytes(value[4:8], "little")
    length = int.from_bytes(value[start + 4 : start + 8], "little")
    return value[start + 8 : start + 8 + length]


def j2k_size(stream: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG 2000 SIZ marker: image extent minus image offset."""
    at = stream.find(_J2K_SOC_SIZ, 0, _J2K_SEARCH)
    if at < 0 or len(stream) < at + 24:
        return None
    width, height, x_offset, y_offset = struct.unpack_from(">IIII", stream, at + 8)
    return height - y_offset, width - x_offset


def jpeg_size(stream: bytes) -> tuple[int, int] | None:
    """(height, width) from the frame header of a JPEG or JPEG-LS stream; None if absent or deferred (0)."""
    if not stream.startswith(_JPEG_SOI):
        return None
    at = 2
    while at + 4 <= len(stream) and stream[at] == 0xFF:
        marker = stream[at + 1]
        if marker == 0xFF or marker in _JPEG_STANDALONE:
            at += 1 if marker == 0xFF else 2  # fill byte, or a marker without a segment
            continue
        if marker == _JPEG_SOS:
            return None
        if marker in _JPEG_SOF:
            if len(stream) < at + 9:
                return None
            height, width = struct.unpack_from(">HH", stream, at + 5)
            return (height, width) if height and width else None
        at += 2 + int.from_bytes(stream[at + 2 : at + 4], "big")
    return None
