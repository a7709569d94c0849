"""A rounding-tolerant fingerprint of a phantom set's pixels.

The exact pixel checksum depends on the CPU: numpy picks its SIMD code paths for ``exp``, ``sin`` and sums at
run time (AVX-512, AVX2, baseline), so the same generator, seed and packages change a few stored values by
one on another machine (measured: at most 1, on about 0.02% of pixels). The fingerprint keeps, per image,
the means of the stored values over a ``GRID x GRID`` grid of blocks: rounding moves them by far less than
``TOLERANCE`` while any change to what is drawn (a lesion moved, a speck added, another encoding) moves at
least one block by more.
"""

from __future__ import annotations

import base64

import numpy as np

GRID = 4
TOLERANCE = 0.05  # in stored values, on block means of tens of thousands of pixels
METHOD = (
    f"per image, in breast-level CSV order, the means of the stored pixel values over a {GRID}x{GRID} grid of "
    "equal blocks (float32, little-endian, base64); two sets are the same phantoms when every block mean agrees "
    f"within {TOLERANCE} (another CPU's floating-point rounding changes a few pixels by one stored value)"
)


def block_means(stored_hw: np.ndarray) -> np.ndarray:
    """The ``(GRID, GRID)`` means of ``stored_hw`` over equal blocks (edges split as evenly as possible)."""
    assert stored_hw.ndim == 2 and min(stored_hw.shape) >= GRID, stored_hw.shape
    rows = np.array_split(np.arange(stored_hw.shape[0]), GRID)
    cols = np.array_split(np.arange(stored_hw.shape[1]), GRID)
    values = stored_hw.astype(np.float64)
    means_gg = np.array([[values[r[0] : r[-1] + 1, c[0] : c[-1] + 1].mean() for c in cols] for r in rows])
    return means_gg


def encode(means_ngg: np.ndarray) -> str:
    """The fingerprint text of ``(n_images, GRID, GRID)`` block means."""
    assert means_ngg.ndim == 3 and means_ngg.shape[1:] == (GRID, GRID), means_ngg.shape
    return base64.b64encode(np.ascontiguousarray(means_ngg, dtype="<f4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    """``(n_images, GRID, GRID)`` block means from a fingerprint text; ValueError when it is not one."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % (4 * GRID * GRID):
        raise ValueError(f"a pixel fingerprint holds a multiple of {GRID * GRID} float32 values")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, GRID, GRID).astype(np.float64)


def agree(left: str | None, right: str | None) -> bool:
    """Whether two fingerprints describe the same phantoms (same images, every block mean within
    ``TOLERANCE``); False when either is missing or unreadable."""
    if not left or not right:
        return False
    try:
        difference = largest_difference(left, right)
    except ValueError:
        return False
    return difference is not None and difference <= TOLERANCE


def largest_difference(left: str, right: str) -> float | None:
    """The largest block-mean difference between two fingerprints; None when they hold different numbers
    of images. ValueError when either is not a fingerprint."""
    a_ngg, b_ngg = decode(left), decode(right)
    return float(np.abs(a_ngg - b_ngg).max()) if a_ngg.shape == b_ngg.shape else None


def same_pixels(dataset_manifest: dict, record: dict) -> bool:
    """Whether a phantom set (its ``phantom.json``) holds the pixels a record (a bundle's or the demo's)
    names: the exact checksum, or, made on another CPU, a fingerprint within rounding of the recorded one."""
    checksum = dataset_manifest.get("pixel_checksum", {}).get("value")
    if checksum is not None and checksum == record.get("pixel_checksum"):
        return True
    fingerprint = dataset_manifest.get("pixel_fingerprint", {}).get("value")
    return agree(fingerprint, record.get("pixel_fingerprint"))
