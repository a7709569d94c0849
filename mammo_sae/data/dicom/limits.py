"""Refuse hostile files before the costly step: executable preambles, deflate bombs, megabytes of header text.

pydicom ignores the preamble, inflates a deflated data set whole in memory and harvests no limits; the
checks here bound what one uploaded file can cost and keep polyglot programs out.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from mammo_sae.data.dicom.errors import SuspiciousFileError
from mammo_sae.data.dicom.integrity import PIXEL_DATA
from mammo_sae.data.dicom.privacy import is_identifying, top_datasets

#: Names, dates, free text and small private values of a real header take a few kilobytes.
MAX_HEADER_TEXT_BYTES = 1 << 20
_HEADER_ALLOWANCE = 64 << 20  # bytes a deflated data set may hold beyond its pixels
_HEAD_BYTES = 64 * 1024
_CHUNK = 1 << 20
_UNDEFINED_LENGTH = 0xFFFFFFFF
_EXECUTABLES = {
    b"MZ": "a Windows executable ('MZ')",
    b"\x7fELF": "a Linux executable (ELF)",
    b"\xfe\xed\xfa\xce": "a macOS executable (Mach-O)",
    b"\xfe\xed\xfa\xcf": "a macOS executable (Mach-O)",
    b"\xce\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"\xcf\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"\xca\xfe\xba\xbe": "a macOS universal executable (Mach-O)",
    b"#!": "a script ('#!')",
}


def screen_file(data: bytes, path: Path, max_pixels: int) -> None:
    """Checks on the raw bytes, before pydicom parses anything: the preamble, and a deflate bomb."""
    if data[128:132] != b"DICM":
        return  # no Part-10 header: no preamble, no file meta naming a transfer syntax
    check_preamble(data[:128], path)
    start = _deflated_start(data[:_HEAD_BYTES])
    if start is not None:
        check_inflated_size(memoryview(data)[start:], path, 4 * max_pixels + _HEADER_ALLOWANCE)


def check_preamble(preamble: bytes, path: Path) -> None:
    """Refuse a preamble that starts like a program: the file would run as one (CVE-2019-11687)."""
    for magic, what in _EXECUTABLES.items():
        if preamble.startswith(magic):
            raise SuspiciousFileError(
                f"{path}: the 128-byte preamble holds the header of {what}: a file that is both a DICOM "
                "image and a program (a polyglot, CVE-2019-11687) is refused; do not run or open it "
                "elsewhere, and re-export the image from its archive"
            )


def check_inflated_size(deflated: bytes | memoryview, path: Path, limit: int) -> None:
    """Inflate the deflated data set in bounded steps and refuse it past ``limit`` bytes (a deflate bomb)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for start in range(0, len(deflated), _CHUNK):
            chunk = deflated[start : start + _CHUNK]
            while chunk and total <= limit:
                total += len(inflater.decompress(chunk, _CHUNK))
                chunk = inflater.unconsumed_tail
            if total > limit:
                break
    except zlib.error:
        return  # corrupt stream: parsing reports it with its own message
    if total > limit:
        raise SuspiciousFileError(
            f"{path}: the deflated data set inflates to more than {limit:,} bytes (a decompression bomb); "
            "refused before inflating it. Raise max_pixels if the image is genuine"
        )


def check_header_text(ds: Dataset, path: Path) -> None:
    """Refuse headers holding more text and private data than MAX_HEADER_TEXT_BYTES (e.g. a 30 MB comment).

    Runs before any text is harvested or converted, on the raw element lengths."""
    total, largest, largest_tag = 0, 0, None
    for tag, length in _text_elements(ds):
        total += length
        if length > largest:
            largest, largest_tag = length, tag
    if total > MAX_HEADER_TEXT_BYTES:
        raise SuspiciousFileError(
            f"{path}: the header holds {total:,} bytes of text and private data (largest: "
            f"{_describe(largest_tag)}, {largest:,} bytes), beyond the {MAX_HEADER_TEXT_BYTES:,} a mammogram "
            "header ever needs; the file is malformed or hostile: re-export the image from its archive"
        )


def _text_elements(ds: Dataset) -> Iterator[tuple[BaseTag, int]]:
    """(tag, value length) of each element the privacy scrubber would harvest, nested ones included."""
    datasets = top_datasets(ds)
    while datasets:
        dataset = datasets.pop()
        for tag in list(dataset.keys()):
            if tag == PIXEL_DATA:
                continue
            elem = dataset.get_item(tag)
            vr, length = _vr_and_length(elem)
            if vr == "SQ" or length == _UNDEFINED_LENGTH:
                value = dataset[tag].value
                datasets.extend(value if isinstance(value, Sequence) else [])
            elif is_identifying(Tag(tag), vr, length):
                yield Tag(tag), length


def _vr_and_length(elem: RawDataElement | DataElement) -> tuple[str, int]:
    """The element's VR (the dictionary's for implicit or UN-encoded standard elements) and value length."""
    vr = elem.VR
    if vr in (None, "UN"):
        vr = "UN" if BaseTag(elem.tag).is_private else _dictionary_vr(elem.tag)
    if isinstance(elem, RawDataElement):
        return vr, elem.length
    value = elem.value
    return vr, len(value) if isinstance(value, bytes | bytearray | str) else 0


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _describe(tag: BaseTag | None) -> str:
    if tag is None:
        return "none"
    name = "private element" if tag.is_private else keyword_for_tag(tag) or "element"
    return f"{name} ({tag.group:04X},{tag.element:04X})"


def _deflated_start(head: bytes) -> int | None:
    """Offset of the data set when the file meta names the deflated transfer syntax, else None."""
    if head[132:136] != b"\x02\x00\x00\x00":  # (0002,0000) File Meta Information Group Length comes first
        return None
    end = 144 + int.from_bytes(head[140:144], "little")
    return end if DeflatedExplicitVRLittleEndian.encode() in head[144:end] else None
