"""A rounding-tolerant fingerprint of a phantom set's pixels.

The exact pixel checksum depends on the CPU: numpy picks its SIMD code paths for ``exp``, ``sin`` and sums at
run time (AVX-512, AVX2, baseline), so the same generator, seed and packages store slightly other values on
another machine. Measured between two x86-64 CPUs on the demo's 320 held-out images: most pixels equal, 0.45%
of the 4x4 block means moved by more than 0.05 stored values, the mean block-mean change 0.003, and on one
image a rounding that crossed a threshold moved one block mean by 1.5 (a speck drawn a little differently).
So two sets are called the same phantoms when the block means agree *on the whole*: their mean absolute
difference is at most ``MEAN_TOLERANCE`` and at most ``MOVED_SHARE`` of them moved by more than
``TOLERANCE``. A change to what the generator draws (lesions moved, another contrast, another encoding)
moves many blocks and fails; a change to a single image may pass, which only the exact checksum catches.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

GRID = 4
TOLERANCE = 0.05  # stored values: a block mean that moved by more than this "moved"
MOVED_SHARE = 0.02  # at most this share of the block means may have moved (measured between CPUs: 0.45%)
MEAN_TOLERANCE = 0.02  # stored values: the largest mean absolute block-mean change (measured: 0.003)
METHOD = (
    f"per image, in breast-level CSV order, the means of the stored pixel values over a {GRID}x{GRID} grid of "
    "equal blocks (float32, little-endian, base64); two sets are the same phantoms when the block means "
    f"differ by at most {MEAN_TOLERANCE} on average and at most {MOVED_SHARE:.0%} of them by more than "
    f"{TOLERANCE} (another CPU's floating-point rounding)"
)


@dataclass(frozen=True)
class FingerprintDifference:
    """How two fingerprints of the same number of images differ, in stored values."""

    mean: float  # mean absolute block-mean difference
    moved_share: float  # share of block means that differ by more than TOLERANCE
    largest: float  # the largest block-mean difference

    @property
    def within_rounding(self) -> bool:
        return self.mean <= MEAN_TOLERANCE and self.moved_share <= MOVED_SHARE

    def describe(self) -> str:
        return (
            f"{self.moved_share:.1%} of the block means moved by more than {TOLERANCE} stored values (rounding "
            f"moves at most {MOVED_SHARE:.0%}), by {self.mean:.3f} on average and up to {self.largest:.2f}"
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
    """Whether two fingerprints describe the same phantoms (same number of images, block means within
    rounding on the whole); False when either is missing or unreadable."""
    if not left or not right:
        return False
    try:
        difference = compare(left, right)
    except ValueError:
        return False
    return difference is not None and difference.within_rounding


def compare(left: str, right: str) -> FingerprintDifference | None:
    """How two fingerprints differ; None when they hold different numbers of images. ValueError when either
    is not a fingerprint."""
    a_ngg, b_ngg = decode(left), decode(right)
    if a_ngg.shape != b_ngg.shape:
        return None
    difference_ngg = np.abs(a_ngg - b_ngg)
    return FingerprintDifference(
        mean=float(difference_ngg.mean()),
        moved_share=float((difference_ngg > TOLERANCE).mean()),
        largest=float(difference_ngg.max()),
    )


def same_pixels(dataset_manifest: dict, record: dict) -> bool:
    """Whether a phantom set (its ``phantom.json``) holds the pixels a record (a bundle's or the demo's)
    names: the exact checksum, or, made on another CPU, a fingerprint within rounding of the recorded one."""
    checksum = dataset_manifest.get("pixel_checksum", {}).get("value")
    if checksum is not None and checksum == record.get("pixel_checksum"):
        return True
    fingerprint = dataset_manifest.get("pixel_fingerprint", {}).get("value")
    return agree(fingerprint, record.get("pixel_fingerprint"))
