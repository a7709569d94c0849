"""A small lossless JPEG (ITU T.81 Process 14, SOF3, first-order prediction SV1) encoder for grey images.

pydicom ships no encoder for JPEG Lossless SV1 (1.2.840.10008.1.2.4.70), the syntax of many older
mammography archives, and no command of the package writes one; this test helper lets the DICOM writer
produce such files (``install()``, called by conftest.py) so the decoding path can be tested. It is plain
numpy: one Huffman table fitted to the image, one scan, no restart markers.
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

_MAX_CODE_LENGTH = 16
_N_CATEGORIES = 17  # difference magnitude categories SSSS = 0..16
_CHUNK = 1 << 20  # samples packed per step, bounds temporary memory


def encode_lossless_jpeg(image: np.ndarray, precision: int) -> bytes:
    """Encode a 2-D unsigned image (values < 2**precision) as a lossless JPEG codestream, predictor 1."""
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"lossless JPEG needs a non-empty 2-D image, got shape {image.shape}")
    if not 2 <= precision <= 16:
        raise ValueError(f"lossless JPEG precision must be 2..16 bits, got {precision}")
    pixels = image.astype(np.int64)
    if pixels.min() < 0 or pixels.max() >= 1 << precision:
        raise ValueError(f"image values must lie in [0, {(1 << precision) - 1}] for precision {precision}")
    rows, cols = pixels.shape

    diff = _prediction_differences(pixels, precision).ravel()
    category = _categories(diff)
    lengths = _huffman_code_lengths(np.bincount(category, minlength=_N_CATEGORIES))
    codes = _canonical_codes(lengths)

    header = b"".join(
        [
            b"\xff\xd8",  # SOI
            _segment(0xC3, struct.pack(">BHHB3B", precision, rows, cols, 1, 1, 0x11, 0)),  # SOF3
            _segment(0xC4, _huffman_table_payload(lengths)),  # DHT, DC class, table 0
            _segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0])),  # SOS: 1 component, table 0, predictor 1, Pt 0
        ]
    )
    return header + _entropy_coded(diff, category, lengths, codes) + b"\xff\xd9"  # EOI


def _prediction_differences(pixels: np.ndarray, precision: int) -> np.ndarray:
    """Differences to predictor 1 (left), with the first row/column rules of T.81 H.1.2.1, as signed ints."""
    prediction = np.empty_like(pixels)
    prediction[:, 1:] = pixels[:, :-1]
    prediction[1:, 0] = pixels[:-1, 0]
    prediction[0, 0] = 1 << (precision - 1)
    diff = (pixels - prediction) % 65536  # differences are taken modulo 2**16
    return np.where(diff > 32768, diff - 65536, diff)


def _categories(diff: np.ndarray) -> np.ndarray:
    """SSSS: the number of bits of |diff| (0 for 0, 16 for the special value 32768)."""
    magnitude = np.abs(diff)
    category = np.zeros(diff.shape, dtype=np.int64)
    for bits in range(1, _N_CATEGORIES):
        category += magnitude >= (1 << (bits - 1))
    return category


def _huffman_code_lengths(counts: np.ndarray) -> np.ndarray:
    """Optimal code lengths of the used categories; 0 for unused ones.

    A zero-frequency dummy leaf takes the all-ones code, which T.81 forbids for real symbols.
    If the tree would exceed 16 bits (only for pathological histograms) every category gets 5 bits.
    """
    dummy = _N_CATEGORIES
    heap = [(int(c), s, [s]) for s, c in enumerate(counts) if c > 0] + [(0, -1, [dummy])]
    heapq.heapify(heap)
    depth = np.zeros(_N_CATEGORIES + 1, dtype=np.int64)
    tiebreak = _N_CATEGORIES + 1
    while len(heap) > 1:
        count_a, _, leaves_a = heapq.heappop(heap)
        count_b, _, leaves_b = heapq.heappop(heap)
        depth[leaves_a + leaves_b] += 1
        heapq.heappush(heap, (count_a + count_b, tiebreak, leaves_a + leaves_b))
        tiebreak += 1
    if depth.max() > _MAX_CODE_LENGTH:
        depth = np.full(_N_CATEGORIES + 1, 5, dtype=np.int64)
    # The dummy must be the last code of the longest length so it owns the all-ones pattern.
    depth[dummy] = depth.max()
    return depth[:_N_CATEGORIES]


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical Huffman codes (T.81 Annex C): symbols ordered by (length, value)."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous_length = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous_length
        codes[symbol] = code
        code += 1
        previous_length = int(lengths[symbol])
    return codes


def _huffman_table_payload(lengths: np.ndarray) -> bytes:
    used = sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s))
    bits = [int(np.sum(lengths[used] == n)) for n in range(1, _MAX_CODE_LENGTH + 1)]
    return bytes([0x00, *bits, *(int(s) for s in used)])


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _entropy_coded(diff: np.ndarray, category: np.ndarray, lengths: np.ndarray, codes: np.ndarray) -> bytes:
    """Huffman code + extra bits of every sample, packed MSB first, padded with ones, 0xFF byte-stuffed."""
    extra_bits = np.where(category == 16, 0, category)  # SSSS 16 carries no extra bits
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << extra_bits) - 1)
    word_len = lengths[category] + extra_bits
    word = (codes[category] << extra_bits) | extra

    packed, carry = [], np.zeros(0, dtype=np.uint8)
    for start in range(0, diff.size, _CHUNK):
        bits = np.concatenate(
            [carry, _to_bits(word[start : start + _CHUNK], word_len[start : start + _CHUNK])]
        )
        whole = bits.size - bits.size % 8
        packed.append(np.packbits(bits[:whole]))
        carry = bits[whole:]
    if carry.size:
        packed.append(np.packbits(np.concatenate([carry, np.ones(8 - carry.size, dtype=np.uint8)])))
    data = np.concatenate(packed)
    stuffed = np.insert(data, np.flatnonzero(data == 0xFF) + 1, 0)
    return stuffed.tobytes()


def _to_bits(word: np.ndarray, word_len: np.ndarray) -> np.ndarray:
    """Expand variable-length words into one uint8 per bit, most significant bit first."""
    owner = np.repeat(np.arange(word.size), word_len)
    starts = np.cumsum(word_len) - word_len
    position = np.arange(owner.size) - starts[owner]
    shift = word_len[owner] - 1 - position
    return ((word[owner] >> shift) & 1).astype(np.uint8)


def install() -> None:
    """Let ``write_mammogram`` write ``transfer_syntax="jpeg-lossless"`` files with this encoder."""
    from mammo_sae.data.dicom import write

    write.FRAME_ENCODERS["jpeg-lossless"] = encode_lossless_jpeg
