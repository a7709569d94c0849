"""Robust conditioning: a mammogram's stored values -> a clean greyscale image and its breast mask.

    conditioned = condition(image)              # image: MammogramDicom
    conditioned.dense_hw                        # float32 [H, W], bright = dense, background outside the breast
    conditioned.breast_hw                       # bool [H, W]: the breast kept (labels, borders, tape left out)

It runs before the Mammo-CLIP steps (``preprocess.to_uint8`` / ``breast_extent``) for files that did not
come from the Mammo-CLIP data: imported folders and uploads (``CONDITIONINGS``; ``"mammo-clip"`` is the
recipe unchanged, bit for bit). The steps (docs/preprocessing.md, "Robust conditioning"):

1. PixelPaddingValue / PixelPaddingRangeLimit pixels become background.
2. FOR PROCESSING (raw detector signal, high where little was absorbed): ``-log(1 + stored)``, which makes
   it bright = dense like a FOR PRESENTATION image. Otherwise MONOCHROME1 is inverted as the recipe does.
3. The foreground is the pixels clearly above the air (its median plus six robust standard deviations); uniform bright lines at the image edges
   (a scanner border) are cut off; a thin opening separates labels, markers and tape from the breast.
4. The breast is the largest foreground component (one touching the chest-wall edge, the left or right
   edge with more foreground, is preferred), its holes filled (an implant is breast); everything else is set to the background.

VOI LUTs and windows are display only and are never read here. Only numpy and OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.dicom.display import padding_mask

MAMMO_CLIP, ROBUST = "mammo-clip", "robust"
#: conditioning policies: "mammo-clip" = the recipe as released (FACTS.md 3), "robust" = this module first
CONDITIONINGS = (MAMMO_CLIP, ROBUST)
#: the foreground starts this many robust standard deviations (1.4826 MAD) above the air's median ...
AIR_SIGMAS = 6.0
#: ... and at least this fraction of the image's range (0.1-99.9 %) above it (air stored without noise)
AIR_FLOOR = 0.03
#: bins of the histogram (of the values below Otsu's threshold) whose mode is the air level
AIR_BINS = 256
#: edge lines scanned for a scanner border, as a fraction of the image side
BORDER_SCAN_FRACTION = 0.1
#: a border line is this much foreground ...
BORDER_FILL = 0.97
#: ... and this flat: the spread (std) of its values, as a fraction of the breast's level above air
BORDER_FLATNESS = 0.05
#: extra lines cut inside a detected border (its blurred inner edge)
BORDER_MARGIN = 0
#: opening radius separating labels and tape from the breast, as a fraction of the shorter side
OPENING_FRACTION = 0.004
#: the chest wall is the side whose outer columns (this fraction of the width) hold more foreground
WALL_FRACTION = 0.02
#: a component touching the left or right edge (the chest wall) wins unless another is this much larger
CHEST_WALL_PREFERENCE = 2.0


@dataclass(frozen=True)
class Conditioned:
    """A conditioned image: bright = dense values (background outside the breast) and the breast mask."""

    dense_hw: np.ndarray  # float32 [H, W]
    breast_hw: np.ndarray  # bool [H, W]

    def __post_init__(self) -> None:
        assert self.dense_hw.shape == self.breast_hw.shape and self.dense_hw.ndim == 2
        assert self.dense_hw.dtype == np.float32 and self.breast_hw.dtype == bool


def check_conditioning(conditioning: str) -> str:
    """``conditioning`` itself when it names a policy, else a DataError naming the choices."""
    if conditioning not in CONDITIONINGS:
        raise DataError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
    return conditioning


def condition(image: MammogramDicom) -> Conditioned:
    """The clean image and breast mask of one mammogram (steps 1-4 of the module docstring)."""
    stored_hw = image.stored
    if stored_hw.ndim != 2:
        raise DataError(f"expected a single-frame greyscale image, got an array of shape {stored_hw.shape}")
    valid_hw = ~padding_mask(image)
    if not valid_hw.any():
        raise DataError("every pixel is padding (PixelPaddingValue): there is no breast to extract")
    dense_hw = bright_is_dense(stored_hw, image.photometric, image.presentation_intent)
    low = float(dense_hw[valid_hw].min())
    dense_hw = np.where(valid_hw, dense_hw, np.float32(low)).astype(np.float32)
    foreground_hw, air = foreground(dense_hw, valid_hw)
    breast_hw = breast_component(foreground_hw)
    if not breast_hw.any():
        raise DataError("no breast found above the air level: check that the file is a mammogram")
    background = min(air, float(dense_hw[breast_hw].min()))
    return Conditioned(np.where(breast_hw, dense_hw, np.float32(background)).astype(np.float32), breast_hw)


def bright_is_dense(stored_hw: np.ndarray, photometric: str, intent: str | None) -> np.ndarray:
    """float32 [H, W] with bright = dense: FOR PROCESSING through -log(1 + stored), MONOCHROME1 inverted."""
    values_hw = stored_hw.astype(np.float64)
    if intent == "FOR PROCESSING":  # linear detector signal: attenuation is its negative log
        return (-np.log1p(np.maximum(values_hw, 0.0))).astype(np.float32)
    if photometric == "MONOCHROME1":
        return (values_hw.max() - values_hw).astype(np.float32)
    if photometric != "MONOCHROME2":
        raise DataError(f"photometric interpretation {photometric!r} is not a greyscale mammogram")
    return values_hw.astype(np.float32)


def foreground(dense_hw: np.ndarray, valid_hw: np.ndarray) -> tuple[np.ndarray, float]:
    """bool [H, W]: the pixels clearly above the air level, scanner borders cut off; and the air level.

    The air is the histogram's mode below Otsu's threshold (air is flat: it is the sharpest peak even
    where padding or a large breast leave little of it); the foreground is every pixel AIR_SIGMAS robust
    standard deviations above it (at least AIR_FLOOR of the image's range, at most half way to Otsu's)."""
    values_n = dense_hw[valid_hw]
    otsu = otsu_level(values_n)
    low_n = values_n[values_n <= otsu]
    if low_n.size == 0:
        raise DataError("the image is constant apart from padding: there is no breast to extract")
    air, spread = air_level(low_n)
    top = float(np.percentile(values_n, 99.9))
    threshold = min(air + max(AIR_SIGMAS * spread, AIR_FLOOR * (top - air)), air + 0.5 * (otsu - air))
    foreground_hw = valid_hw & (dense_hw > threshold)
    core_hw = largest_component(valid_hw & (dense_hw > otsu))
    contrast = float(np.median(dense_hw[core_hw])) - air if core_hw.any() else top - air
    return strip_borders(foreground_hw, dense_hw, contrast), air


def air_level(low_n: np.ndarray) -> tuple[float, float]:
    """The air's level (the mode of ``low_n``, on AIR_BINS bins) and its robust standard deviation, from
    the values at or below the mode (1.4826 times their median distance to it)."""
    low, high = float(low_n.min()), float(low_n.max())
    if high <= low:
        return low, 0.0
    counts_b, edges_b = np.histogram(low_n, bins=AIR_BINS, range=(low, high))
    peak = int(np.argmax(counts_b))
    air = float((edges_b[peak] + edges_b[peak + 1]) / 2)
    below_n = low_n[low_n <= edges_b[peak + 1]]
    return air, 1.4826 * float(np.median(np.abs(below_n - air)))


def otsu_level(values_n: np.ndarray) -> float:
    """Otsu's threshold of a set of values (on a 256-bin histogram of its 0.1-99.9 % range)."""
    low, high = (float(v) for v in np.percentile(values_n, [0.1, 99.9]))
    if high <= low:
        return low
    counts_b, edges_b = np.histogram(np.clip(values_n, low, high), bins=256, range=(low, high))
    centres_b = (edges_b[:-1] + edges_b[1:]) / 2
    weight_b = np.cumsum(counts_b).astype(np.float64)
    total = weight_b[-1]
    mass_b = np.cumsum(counts_b * centres_b)
    below_b, above_b = weight_b, total - weight_b
    with np.errstate(divide="ignore", invalid="ignore"):
        between_b = (mass_b[-1] * below_b - total * mass_b) ** 2 / (below_b * above_b)
    between_b[~np.isfinite(between_b)] = -1.0
    return float(edges_b[int(np.argmax(between_b)) + 1])


def strip_borders(foreground_hw: np.ndarray, dense_hw: np.ndarray, contrast: float) -> np.ndarray:
    """``foreground_hw`` without the flat, almost fully bright lines at each image edge (a scanner border)."""
    out_hw = foreground_hw.copy()
    flat = BORDER_FLATNESS * max(contrast, 1e-12)
    for side in range(4):  # top, right, bottom, left: rotate so the side is row 0
        mask_hw, values_hw = np.rot90(out_hw, side), np.rot90(dense_hw, side)
        depth = _border_depth(mask_hw, values_hw, flat)
        if depth:
            mask_hw[: depth + BORDER_MARGIN] = False  # a view of out_hw
    return out_hw


def _border_depth(mask_hw: np.ndarray, values_hw: np.ndarray, flat: float) -> int:
    """How many leading rows are a border: almost all foreground and flat."""
    limit = max(1, int(BORDER_SCAN_FRACTION * mask_hw.shape[0]))
    depth = 0
    for row in range(limit):
        if mask_hw[row].mean() < BORDER_FILL or float(values_hw[row].std()) > flat:
            break
        depth = row + 1
    return depth


def breast_component(foreground_hw: np.ndarray) -> np.ndarray:
    """bool [H, W]: the breast among the foreground's components, holes filled.

    A thin opening first cuts bridges to labels, markers and tape; the chosen component is then grown back
    over the foreground pixels within the opening's reach, so the skin line is kept whole."""
    radius = max(1, round(OPENING_FRACTION * min(foreground_hw.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    mask_hw = foreground_hw.astype(np.uint8)
    opened_hw = cv2.morphologyEx(mask_hw, cv2.MORPH_OPEN, kernel)
    seed_hw = opened_hw.astype(bool) if opened_hw.any() else foreground_hw
    wall = chest_wall_side(seed_hw)
    core_hw = largest_component(seed_hw, wall)
    grown_hw = cv2.dilate(core_hw.astype(np.uint8), kernel, iterations=2).astype(bool) & foreground_hw
    return fill_holes(largest_component(grown_hw | core_hw, wall))


def chest_wall_side(mask_hw: np.ndarray) -> str:
    """The chest-wall edge, "left" or "right": the one whose outer columns (WALL_FRACTION of the width)
    hold more foreground."""
    band = max(1, int(WALL_FRACTION * mask_hw.shape[1]))
    return "left" if mask_hw[:, :band].sum() >= mask_hw[:, -band:].sum() else "right"


def largest_component(mask_hw: np.ndarray, wall: str | None = None) -> np.ndarray:
    """bool [H, W]: the largest 8-connected component; with ``wall`` ("left"/"right"), one touching that
    edge is preferred unless another is CHEST_WALL_PREFERENCE times larger. All False for an empty mask."""
    count, labels_hw, stats, _ = cv2.connectedComponentsWithStats(mask_hw.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask_hw.shape, dtype=bool)
    width = mask_hw.shape[1]
    area_c = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    left_c, right_c = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_LEFT] + stats[1:, cv2.CC_STAT_WIDTH]
    at_wall_c = left_c == 0 if wall == "left" else right_c == width if wall == "right" else left_c < 0
    score_c = area_c * np.where(at_wall_c, CHEST_WALL_PREFERENCE, 1.0)
    return labels_hw == int(np.argmax(score_c)) + 1


def fill_holes(mask_hw: np.ndarray) -> np.ndarray:
    """bool [H, W]: the mask with every hole filled (its outer contours, filled)."""
    contours, _ = cv2.findContours(mask_hw.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled_hw = np.zeros(mask_hw.shape, np.uint8)
    cv2.drawContours(filled_hw, contours, -1, 1, thickness=cv2.FILLED)
    return filled_hw.astype(bool) | mask_hw
