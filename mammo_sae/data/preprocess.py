"""Mammo-CLIP image preprocessing, bit for bit (FACTS.md 3).

Stored DICOM values -> 5-px border crop -> MONOCHROME1 inversion -> float32 min-max to uint8
(truncating) -> breast extraction -> INTER_AREA resize to 912x1520 (the Mammo-CLIP PNG) ->
3-channel normalised model input. Every step also feeds a :class:`FrameTransform`, so boxes and
points move between original pixels and the model frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.core.errors import DataError
from mammo_sae.data.conditioning import MAMMO_CLIP, check_conditioning, condition
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.frames import AxisMap, FrameTransform

FRAME_HEIGHT, FRAME_WIDTH = 1520, 912
BORDER = 5
BACKGROUND_LEVEL = 40
CENTRAL_BAND = 0.4
PIXEL_MEAN = 0.3089279
PIXEL_STD = 0.25053555408335154


@dataclass(frozen=True)
class Preprocessed:
    """The Mammo-CLIP PNG of one image and the map from its original pixels."""

    png: np.ndarray
    transform: FrameTransform


def to_uint8(stored: np.ndarray, photometric: str) -> np.ndarray:
    """Border crop, MONOCHROME1 inversion and float32 min-max scaling to uint8 with truncation."""
    if stored.ndim != 2:
        raise DataError(f"expected a single-frame greyscale image, got an array of shape {stored.shape}")
    if min(stored.shape) <= 2 * BORDER + 1:
        raise DataError(f"image of shape {stored.shape} is too small for Mammo-CLIP preprocessing")
    img = stored[BORDER:-BORDER, BORDER:-BORDER].astype(np.float32)
    if photometric == "MONOCHROME1":
        img = img.max() - img
    elif photometric != "MONOCHROME2":
        raise DataError(f"photometric interpretation {photometric!r} is not a greyscale mammogram")
    img = img - img.min()
    peak = img.max()
    if peak == 0:
        raise DataError("the image is constant after the border crop: there is no breast to extract")
    return ((img / peak) * 255).astype(np.uint8)


def run_scores(marked: np.ndarray) -> np.ndarray:
    """Score each position by the length of its run of marked positions, as Mammo-CLIP counts it.

    Unmarked positions score -1; a run scores its length, minus one for each array end it touches
    (the ends act as run boundaries in the reference), so an interior run wins a tie with an edge run.
    """
    marked = np.asarray(marked, dtype=bool)
    n = len(marked)
    scores = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return scores
    edges = np.diff(np.concatenate([[0], marked.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for start, stop in zip(starts, stops, strict=True):
        scores[start:stop] = (stop - start) - int(start == 0) - int(stop == n)
    return scores


def _longest_runs(marked: np.ndarray) -> np.ndarray:
    scores = run_scores(marked)
    return np.flatnonzero(scores == scores.max())


def _band(length: int) -> slice:
    return slice(length // 2 - int(length * CENTRAL_BAND), length // 2 + int(length * CENTRAL_BAND))


def breast_extent(img8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the breast in a uint8 image (Mammo-CLIP's extraction rule)."""
    thresholded = np.where(img8 <= BACKGROUND_LEVEL, 0, img8)
    band = _nonempty(thresholded[_band(img8.shape[0])])
    cols = _longest_runs(band.max(axis=0) != band.min(axis=0))
    restricted = thresholded[:, cols]
    band = _nonempty(restricted[:, _band(restricted.shape[1])])
    rows = _longest_runs(band.max(axis=1) != band.min(axis=1))
    return rows, cols


def _nonempty(band: np.ndarray) -> np.ndarray:
    """The central band measured by the extraction; empty when the region is under 3 pixels across."""
    if band.size == 0:
        raise DataError(
            "the breast region is too narrow for Mammo-CLIP's breast extraction (central band "
            f"{band.shape}); the image holds no usable breast: check that it is a mammogram"
        )
    return band


def preprocess(
    stored: np.ndarray, photometric: str, frame_size: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH)
) -> Preprocessed:
    """Stored DICOM pixel values -> the Mammo-CLIP PNG (``frame_size`` = height, width) and its transform."""
    img8 = to_uint8(stored, photometric)
    rows, cols = breast_extent(img8)
    crop = img8[np.ix_(rows, cols)]
    height, width = frame_size
    png = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    transform = FrameTransform(
        original_shape=(int(stored.shape[0]), int(stored.shape[1])),
        x=AxisMap(offset=BORDER, kept=cols, size=width),
        y=AxisMap(offset=BORDER, kept=rows, size=height),
    )
    return Preprocessed(png=png, transform=transform)


def model_input(png: np.ndarray) -> np.ndarray:
    """A Mammo-CLIP PNG (uint8, H x W) -> the float32 (3, H, W) network input: min-max, then normalise."""
    if png.ndim != 2:
        raise DataError(f"expected a greyscale frame, got shape {png.shape}")
    img = png.astype(np.float32)
    img -= img.min()
    peak = img.max()
    if peak > 0:
        img /= peak
    img = (img - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD)
    return np.broadcast_to(img, (3, *img.shape)).copy()


def preprocess_mammogram(
    image: MammogramDicom,
    frame_size: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    conditioning: str = MAMMO_CLIP,
) -> Preprocessed:
    """The model-side output of one DICOM read (the display side is ``dicom.display_image``).

    ``conditioning``: "mammo-clip" (the recipe bit for bit, for VinDr and phantom roots) or "robust"
    (``conditioning.condition`` first: padding, FOR PROCESSING, labels and borders; imported roots and
    uploads)."""
    if check_conditioning(conditioning) == MAMMO_CLIP:
        return preprocess(image.stored, image.photometric, frame_size)
    return preprocess(condition(image).dense_hw, "MONOCHROME2", frame_size)
