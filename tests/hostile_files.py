"""A corpus of malformed and hostile files, each derived from a valid phantom written by the project's own
writer, with the error every route (library, command line, app) must give: its class and the words that
make its message specific."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from dicom_fixtures import write_test_image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import (
    DecodeError,
    DicomEncoding,
    ImageSizeError,
    MalformedDicomError,
    MissingDecoderError,
    NoPixelDataError,
    NotDicomError,
    NotMammogramError,
    SuspiciousFileError,
    TruncatedDicomError,
    UnsupportedImageError,
    display_image,
    read_mammogram,
)


@dataclass(frozen=True)
class Hostile:
    """One bad file: its name (``.png`` goes to the PNG decoder, anything else to the DICOM reader), its
    bytes, and the error it must raise: the class and a regex the message must match."""

    name: str
    data: bytes
    error: type[DataError]
    message: str

    @property
    def is_png(self) -> bool:
        return self.name.endswith(".png")


@dataclass(frozen=True)
class Originals:
    """Valid files the corpus is cut from: uncompressed, deflated, JPEG 2000, lossless JPEG, and a PNG."""

    explicit: bytes
    deflated: bytes
    j2k: bytes
    ljpeg: bytes
    png: bytes


ORIGINAL_SYNTAXES = {
    "explicit": "explicit-little",
    "deflated": "deflated",
    "j2k": "jpeg2000-lossless",
    "ljpeg": "jpeg-lossless",
}


def write_originals(folder: Path) -> Originals:
    """Write the valid originals into ``folder`` (``<field>.dcm``) with the project's writer; their bytes."""
    raw = {}
    for key, syntax in ORIGINAL_SYNTAXES.items():
        write_test_image(folder / f"{key}.dcm", DicomEncoding(transfer_syntax=syntax))
        raw[key] = (folder / f"{key}.dcm").read_bytes()
    ok, png = cv2.imencode(".png", display_image(read_mammogram(folder / "explicit.dcm")))
    assert ok
    return Originals(png=png.tobytes(), **raw)


def build_corpus(originals: Originals) -> list[Hostile]:
    """Every hostile file, cut from ``originals`` (see :func:`write_originals`)."""
    makers = (truncated, header_lies, pixel_formats, codestreams, attacks, pngs)
    corpus = [entry for make in makers for entry in make(originals)]
    assert len({entry.name for entry in corpus}) == len(corpus), "names identify the entries"
    return corpus


# --- the kinds of bad file -------------------------------------------------------------------------------


def truncated(o: Originals) -> list[Hostile]:
    raw = o.explicit
    return [
        Hostile("empty.dcm", b"", NotDicomError, r"not a DICOM file"),
        Hostile("cut-in-preamble.dcm", raw[:64], NotDicomError, r"not a DICOM file.*cut before its header"),
        Hostile("cut-in-file-meta.dcm", raw[:200], TruncatedDicomError, r"ends inside its DICOM header"),
        Hostile("cut-in-data-set.dcm", raw[:400], TruncatedDicomError, r"truncated in the header \(400 of"),
        Hostile(
            "cut-in-pixels.dcm", raw[: len(raw) // 2], TruncatedDicomError, r"truncated in the pixel data"
        ),
        Hostile("cut-last-byte.dcm", raw[:-1], TruncatedDicomError, r"truncated in the pixel data"),
        Hostile("cut-jpeg2000.dcm", o.j2k[:-500], TruncatedDicomError, r"ends inside an undefined-length"),
        Hostile("cut-deflated.dcm", o.deflated[:-100], TruncatedDicomError, r"deflated data set ends early"),
    ]


def header_lies(o: Originals) -> list[Hostile]:
    raw = o.explicit
    return [
        Hostile("wrong-magic.dcm", raw[:128] + b"DICX" + raw[132:], NotDicomError, r"no 'DICM' marker"),
        Hostile(
            "modality-ct.dcm", edited(raw, Modality="CT"), NotMammogramError, r"Modality is 'CT', not 'MG'"
        ),
        Hostile("no-modality.dcm", edited(raw, Modality=None), NotMammogramError, r"Modality is 'missing'"),
        Hostile(
            "absurd-rows-columns.dcm",
            edited(raw, Rows=60000, Columns=60000),
            ImageSizeError,
            r"60000 x 60000 x 1 frames = 3,600,000,000 pixels exceeds max_pixels",
        ),
        Hostile("zero-rows.dcm", edited(raw, Rows=0), ImageSizeError, r"Rows=0 .* is empty or missing"),
        Hostile(
            "absurd-frames.dcm",
            edited(raw, NumberOfFrames=50000),
            ImageSizeError,
            r"x 50000 frames = .*exceeds",
        ),
        Hostile(
            "two-frames.dcm", edited(raw, NumberOfFrames=2), UnsupportedImageError, r"2 frames \(e\.g\. tomo"
        ),
        Hostile(
            "colour.dcm",
            edited(raw, SamplesPerPixel=3, PhotometricInterpretation="RGB"),
            UnsupportedImageError,
            r"colour image \(3 samples per pixel",
        ),
        Hostile(
            "no-transfer-syntax.dcm",
            without_transfer_syntax(raw),
            MalformedDicomError,
            r"no TransferSyntaxUID",
        ),
        Hostile(
            "unknown-transfer-syntax.dcm",
            replaced(o.j2k, b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.4.99"),
            MissingDecoderError,
            r"\(1\.2\.840\.10008\.1\.2\.4\.99\) has no pixel decoder",
        ),
        Hostile("no-pixel-data.dcm", edited(raw, PixelData=None), NoPixelDataError, r"no Pixel Data element"),
        Hostile(
            "pixel-length-4gb.dcm",
            pixel_length(raw, 0xFFFFFFF0),
            TruncatedDicomError,
            r"truncated in the pixel data",
        ),
    ]


def pixel_formats(o: Originals) -> list[Hostile]:
    raw = o.explicit
    return [
        Hostile(
            "bits-allocated-12.dcm",
            edited(raw, BitsAllocated=12),
            UnsupportedImageError,
            r"BitsAllocated=12 ",
        ),
        Hostile(
            "bits-allocated-32.dcm",
            edited(raw, BitsAllocated=32),
            UnsupportedImageError,
            r"BitsAllocated=32 ",
        ),
        Hostile(
            "bits-stored-20.dcm",
            edited(raw, BitsStored=20, HighBit=19),
            UnsupportedImageError,
            r"BitsStored=20 ",
        ),
        Hostile(
            "photometric-ybr.dcm",
            edited(raw, PhotometricInterpretation="YBR_FULL"),
            UnsupportedImageError,
            r"PhotometricInterpretation is 'YBR_FULL'",
        ),
    ]


def codestreams(o: Originals) -> list[Hostile]:
    return [
        Hostile(
            "jpeg2000-garbage.dcm",
            scrambled_codestream(o.j2k),
            DecodeError,
            r"decoding the JPEG 2000 .*pixel data failed",
        ),
        Hostile(
            "jpeg2000-size-bomb.dcm",
            j2k_declaring(o.j2k, 60000, 60000),
            DecodeError,
            r"JPEG 2000 .*codestream declares 60000 x 60000 pixels but Rows x Columns is 96 x 80",
        ),
        Hostile(
            "jpeg-lossless-size-bomb.dcm",
            jpeg_declaring(o.ljpeg, 65535, 65535),
            DecodeError,
            r"codestream declares 65535 x 65535 pixels",
        ),
    ]


def attacks(o: Originals) -> list[Hostile]:
    raw = o.explicit
    return [
        Hostile(
            "preamble-windows-exe.dcm",
            b"MZ\x90\x00\x03" + raw[5:],
            SuspiciousFileError,
            r"preamble holds the header of a Windows executable \('MZ'\).*polyglot",
        ),
        Hostile(
            "preamble-linux-exe.dcm",
            b"\x7fELF\x02\x01" + raw[6:],
            SuspiciousFileError,
            r"Linux executable \(ELF\)",
        ),
        Hostile(
            "huge-comment.dcm",
            edited(raw, ImageComments="A" * 2_000_000),
            SuspiciousFileError,
            r"ImageComments \(0020,4000\), 2,000,000 bytes\)",
        ),
        Hostile(
            "private-text-flood.dcm", private_flood(raw), SuspiciousFileError, r"largest: private element"
        ),
        Hostile("deflate-bomb.dcm", deflate_bomb(o.deflated), SuspiciousFileError, r"decompression bomb"),
        Hostile("png-named-dcm.dcm", o.png, NotDicomError, r"not a DICOM file"),
    ]


def pngs(o: Originals) -> list[Hostile]:
    png = o.png
    return [
        Hostile("really-text.png", b"this PNG is really text\n" * 20, DataError, r"not a PNG file"),
        Hostile("dicom-named-png.png", o.explicit, DataError, r"not a PNG file"),
        Hostile("png-cut-in-header.png", png[:20], DataError, r"ends inside its header; it is truncated"),
        Hostile("png-cut.png", png[: len(png) // 2], DataError, r"no IEND chunk; it is truncated"),
        Hostile(
            "png-huge.png",
            png_declaring(png, 100000, 100000),
            DataError,
            r"100000 x 100000 PNG .*larger than",
        ),
        Hostile("png-zero.png", png_declaring(png, 0, 0), DataError, r"0 x 0 PNG is empty"),
        Hostile("png-ihdr-not-first.png", png_text_first(png), DataError, r"first chunk is not its IHDR"),
        Hostile("png-corrupt-data.png", png_scrambled_idat(png), DataError, r"corrupt and cannot be decoded"),
    ]


# --- byte surgery ----------------------------------------------------------------------------------------


def edited(raw: bytes, **changes: object) -> bytes:
    """The file re-saved with DICOM keywords set (None deletes the element)."""
    return rewritten(raw, lambda ds: _apply(ds, changes))


def rewritten(raw: bytes, change: Callable[[Dataset], None], **write_options: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(raw))
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the over-long values it is asked to write
        change(ds)
        dcmwrite(out, ds, **write_options)
    return out.getvalue()


def _apply(ds: Dataset, changes: dict[str, object]) -> None:
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)


def without_transfer_syntax(raw: bytes) -> bytes:
    return rewritten(
        raw,
        lambda ds: delattr(ds.file_meta, "TransferSyntaxUID"),
        enforce_file_format=False,
        implicit_vr=False,
        little_endian=True,
    )


def replaced(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


def pixel_length(raw: bytes, length: int) -> bytes:
    """The explicit-VR Pixel Data element header with another 4-byte length."""
    header = b"\xe0\x7f\x10\x00OW\x00\x00"
    at = raw.index(header) + len(header)
    return raw[:at] + struct.pack("<I", length) + raw[at + 4 :]


def _pixel_start(raw: bytes) -> int:
    return raw.index(b"\xe0\x7f\x10\x00")


def scrambled_codestream(raw: bytes) -> bytes:
    """JPEG 2000 whose codestream keeps its markers' place but holds noise after the first 100 bytes."""
    start = raw.index(b"\xff\x4f\xff\x51", _pixel_start(raw)) + 100
    noise = np.random.default_rng(0).integers(0, 256, len(raw) - start - 8, dtype=np.uint8).tobytes()
    return raw[:start] + noise + raw[-8:]  # the sequence delimiter stays


def j2k_declaring(raw: bytes, height: int, width: int) -> bytes:
    """JPEG 2000 whose SIZ marker claims another image (and tile) extent."""
    siz = raw.index(b"\xff\x4f\xff\x51", _pixel_start(raw)) + 4
    extent = struct.pack(">II", width, height)
    return raw[: siz + 4] + extent + raw[siz + 12 : siz + 20] + extent + raw[siz + 28 :]


def jpeg_declaring(raw: bytes, height: int, width: int) -> bytes:
    """Lossless JPEG whose SOF3 frame header claims another size."""
    sof = raw.index(b"\xff\xc3", _pixel_start(raw))
    return raw[: sof + 5] + struct.pack(">HH", height, width) + raw[sof + 9 :]


def private_flood(raw: bytes) -> bytes:
    """20 private elements of 60,000 characters each: 1.2 MB of header text."""

    def add(ds: Dataset) -> None:
        ds.add(DataElement(0x00090010, "LO", "FLOOD"))
        for i in range(20):
            ds.add(DataElement(0x00091000 + i, "UT", f"{i:03d}" * 20_000))

    return rewritten(raw, add)


def deflate_bomb(raw: bytes) -> bytes:
    """A deflated file whose data set is ~0.5 MB that would inflate to 500 MB of zeros."""
    meta_end = 144 + int.from_bytes(raw[140:144], "little")
    block = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    megabyte = block.compress(bytes(1 << 20)) + block.flush(zlib.Z_FULL_FLUSH)  # independent of what precedes
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
    return raw[:meta_end] + megabyte * 500 + end


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(png: bytes, width: int, height: int) -> bytes:
    """The PNG with an IHDR claiming another size (8-bit greyscale)."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return png[:8] + header + png[33:]


def png_text_first(png: bytes) -> bytes:
    """A text chunk before the IHDR (whose size fields then hold the text's bytes)."""
    return png[:8] + _png_chunk(b"tEXt", b"Comment\x00hi") + png[8:]


def png_scrambled_idat(png: bytes) -> bytes:
    at = png.index(b"IDAT")
    length = int.from_bytes(png[at - 4 : at], "big")
    noise = bytes((37 * i + 11) % 256 for i in range(length))
    return png[: at + 4] + noise + png[at + 4 + length :]
