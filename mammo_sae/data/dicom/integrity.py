"""Truncation checks pydicom does not make: it reads a cut file silently, with the tail missing."""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from mammo_sae.data.dicom.errors import MalformedDicomError, TruncatedDicomError
from mammo_sae.data.dicom.values import int_or_none

PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian


def check_complete(ds: Dataset, path: Path, file_size: int, read_warnings: list[str]) -> None:
    """Detect truncation pydicom tolerates silently: the last element must end where the file ends."""
    truncated_header = TruncatedDicomError(
        f"{path}: the file ends inside its DICOM header ({file_size} bytes); it is truncated: "
        "download or copy it again"
    )
    group_length = int_or_none(ds.file_meta.get("FileMetaInformationGroupLength")) if ds.file_meta else None
    meta_end = 132 + 12 + group_length if ds.preamble is not None and group_length is not None else 0
    if file_size < meta_end:
        raise truncated_header
    if ds.preamble is not None and "TransferSyntaxUID" not in ds.file_meta:
        if len(ds) == 0:
            raise truncated_header  # cut inside a file meta without a group length
        raise MalformedDicomError(
            f"{path}: the file meta information has no TransferSyntaxUID (0002,0010), so how the pixels are "
            "encoded is unknown; the writer broke the DICOM standard: re-export the image from its source"
        )
    if any("End of file reached before delimiter" in w for w in read_warnings):
        raise TruncatedDicomError(
            f"{path}: the file ends inside an undefined-length element (encapsulated pixel data or a "
            "sequence); it is truncated: download or copy it again"
        )
    if len(ds) == 0:
        raise truncated_header
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return  # element offsets refer to the inflated stream; zlib itself reports truncation
    last = ds.get_item(max(ds.keys()))
    value_tell = getattr(last, "value_tell", None)
    if value_tell is None or last.value is None:
        return  # already converted (e.g. a trailing sequence): nothing to measure against
    undefined = last.length == _UNDEFINED_LENGTH
    end = value_tell + (len(last.value) + 8 if undefined else last.length)  # + 8: sequence delimiter
    is_pixels = last.tag == PIXEL_DATA
    if file_size < end:
        where = "in the pixel data" if is_pixels else "in the header"
        raise TruncatedDicomError(
            f"{path}: the file is truncated {where} ({file_size} of {end} bytes); download or copy it again"
        )
    if file_size > end and not is_pixels:
        raise truncated_header  # pydicom stopped at a partial element header


def check_pixel_bytes(ds: Dataset, path: Path, syntax: UID) -> None:
    """Native pixel data must hold every pixel; encapsulated items must fit in the element."""
    value = ds.get_item(PIXEL_DATA).value
    if value is None:
        return
    truncated = TruncatedDicomError(
        f"{path}: the file is truncated in the pixel data; download or copy it again"
    )
    if not syntax.is_encapsulated:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int_or_none(ds.get("NumberOfFrames")) or 1
        samples = int_or_none(ds.get("SamplesPerPixel")) or 1
        bits = int(ds.get("BitsAllocated", 16))
        expected = (rows * cols * frames * samples * bits + 7) // 8
        if len(value) < expected:
            raise TruncatedDicomError(
                f"{path}: pixel data holds {len(value):,} of the {expected:,} bytes Rows x Columns x "
                "BitsAllocated require; the file is truncated: download or copy it again"
            )
        return
    offset = 0
    while offset < len(value):
        if len(value) - offset < 8 or value[offset : offset + 4] != _ITEM_TAG:
            raise truncated
        (length,) = struct.unpack_from("<I", value, offset + 4)
        offset += 8 + length
        if offset > len(value):
            raise truncated
