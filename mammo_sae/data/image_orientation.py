"""Laterality and view of a mammogram from its pixels, for files whose header says neither.

Laterality: the side of the image the breast meets the chest wall on (the breast's mask covers that edge);
a mammogram stored in the usual way has a left breast's chest wall on the left of the image. A file stored
mirrored (a right breast facing the other way) cannot be told from its pixels alone, so an image's answer
is never fully trusted (``IMAGE_CONFIDENCE``) and a tag, when there is one, wins.

View: an MLO's breast reaches the top edge along the chest wall (the axilla) and carries the pectoral muscle,
brighter than the tissue below it, in that corner; a CC's does neither. Both cues are measured and combined;
the confidence says whether they agreed. Thresholds were chosen on phantom seeds kept apart from the seeds
the accuracy is measured on (docs/dicom-folders.md).

    found = image_orientation(to_uint8(image.stored, image.photometric))
    found.view        # Found("MLO", "image", 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.data.breast_mask import breast_mask
from mammo_sae.data.dicom.orientation import NOTHING, Found, Orientation

SOURCE = "image"
#: The most an answer from the pixels is trusted (a mirrored file fools it).
IMAGE_CONFIDENCE = 0.9
#: Rows the image is reduced to before it is measured (the cues are coarse; the cost stays small).
WORKING_ROWS = 256
#: Share of the image width next to each side edge where the breast meets the chest wall.
EDGE_STRIP = 1 / 30
#: Breast width in the top rows, as a share of its widest row, above which the breast reaches the axilla.
TOP_REACH_MLO = 0.15
#: Brightness of the chest-wall top corner above the breast's median, in its standard deviations.
PECTORAL_MLO = 0.2
#: Share of the rows, and of the width, of that corner.
CORNER_ROWS, CORNER_COLUMNS = 1 / 4, 1 / 8


@dataclass(frozen=True)
class ImageCues:
    """What the pixels show, in the breast's own frame (chest wall on the left)."""

    chest_wall: str | None  # "left" / "right" side of the stored image, None when no breast was found
    edge_cover: tuple[float, float]  # share of the left and right edge strips the breast covers
    top_reach: float  # breast width in the top rows / its widest row
    pectoral: float  # corner brightness above the breast's median, in standard deviations


def image_cues(image_u8: np.ndarray) -> ImageCues:
    """Measure the chest-wall side, the breast's reach to the top edge and the pectoral corner's brightness."""
    assert image_u8.ndim == 2 and image_u8.dtype == np.uint8, "expects an 8-bit greyscale image"
    rows, cols = image_u8.shape
    scale = min(1.0, WORKING_ROWS / rows)
    small = cv2.resize(
        image_u8, (max(8, round(cols * scale)), max(8, round(rows * scale))), interpolation=cv2.INTER_AREA
    )
    mask = breast_mask(small)
    if mask.sum() < 0.01 * mask.size:
        return ImageCues(None, (0.0, 0.0), 0.0, 0.0)
    strip = max(2, round(mask.shape[1] * EDGE_STRIP))
    left, right = float(mask[:, :strip].mean()), float(mask[:, -strip:].mean())
    if (
        left == right
    ):  # the breast touches neither edge (or both alike): the brighter half holds the chest wall
        half = mask.shape[1] // 2
        left, right = float(small[:, :half].mean()) / 255, float(small[:, -half:].mean()) / 255
    chest_wall = "left" if left >= right else "right"
    if chest_wall == "right":
        small, mask = small[:, ::-1], mask[:, ::-1]
    width = mask.sum(axis=1)
    top_rows = max(2, mask.shape[0] // 25)
    top_reach = float(width[:top_rows].mean() / max(int(width.max()), 1))
    tissue = small[mask].astype(np.float64)
    corner_rows, corner_cols = (
        round(mask.shape[0] * CORNER_ROWS),
        max(2, round(mask.shape[1] * CORNER_COLUMNS)),
    )
    corner = small[:corner_rows, :corner_cols][mask[:corner_rows, :corner_cols]].astype(np.float64)
    pectoral = float((corner.mean() - np.median(tissue)) / (tissue.std() + 1e-6)) if corner.size else 0.0
    return ImageCues(chest_wall, (left, right), top_reach, pectoral)


def image_orientation(image_u8: np.ndarray) -> Orientation:
    """Laterality and view read from the pixels, source "image"; nothing where no breast is found."""
    cues = image_cues(image_u8)
    if cues.chest_wall is None:
        return Orientation(NOTHING, NOTHING)
    return Orientation(laterality=_laterality(cues), view=_view(cues))


def _laterality(cues: ImageCues) -> Found:
    near, far = sorted(cues.edge_cover, reverse=True)
    clarity = (near - far) / near if near > 0 else 0.0  # 1 when only one edge is covered
    value = "L" if cues.chest_wall == "left" else "R"
    return Found(value, SOURCE, round(IMAGE_CONFIDENCE * (0.5 + 0.5 * clarity), 3))


def _view(cues: ImageCues) -> Found:
    reach_says = "MLO" if cues.top_reach > TOP_REACH_MLO else "CC"
    pectoral_says = "MLO" if cues.pectoral > PECTORAL_MLO else "CC"
    if reach_says == pectoral_says:
        return Found(reach_says, SOURCE, IMAGE_CONFIDENCE)
    return Found(
        reach_says, SOURCE, round(IMAGE_CONFIDENCE * 2 / 3, 3)
    )  # the cues disagree: the reach decides
