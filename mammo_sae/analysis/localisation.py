"""Localisation of one SAE latent against ground-truth boxes (the Mammo-SAE protocol, numpy/opencv only).

A latent's token map [gh, gw] is upsampled bilinearly to the model frame [H, W], thresholded, and the bounding
boxes of the mask's external contours are its predicted boxes (scored by the map's peak inside each). Against
ground-truth boxes this gives the pointing game (does the map's peak fall in a box), the mean best IoU per
ground-truth box, and detection AP over a set of images.

Coordinates are frame pixels: pixel (x, y) covers [x, x+1) x [y, y+1); boxes are float arrays [n, 4] of
(xmin, ymin, xmax, ymax), so a contour's bounding rect (x, y, w, h) is the box (x, y, x+w, y+h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.core.errors import MammoSaeError

THRESHOLD_METHODS = ("fraction", "percentile")


class LocalisationError(MammoSaeError):
    """A localisation argument (threshold, map, boxes, IoU threshold) is invalid."""


def _is_number(x: object) -> bool:
    """A real number (bools and strings are not)."""
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


@dataclass(frozen=True)
class MapThreshold:
    """How a heatmap becomes a mask: ``value`` x max ("fraction", the released code's 0.3) or the map's
    ``value``-th percentile ("percentile", the project page's 95); boxes under ``min_area`` px are dropped."""

    method: str = "fraction"
    value: float = 0.3
    min_area: float = 10.0

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise LocalisationError(
                f"unknown threshold method {self.method!r}; use one of {', '.join(THRESHOLD_METHODS)}"
            )
        if not all(_is_number(x) for x in (self.value, self.min_area)):
            raise LocalisationError(
                f"threshold value and min_area must be numbers, got {self.value!r} and {self.min_area!r}"
            )
        value = float(self.value)
        if self.method == "fraction" and not 0.0 < value <= 1.0:
            raise LocalisationError(
                f"a fraction threshold must be in (0, 1], got {self.value!r}; "
                "e.g. 0.3 keeps pixels >= 0.3 x the map's max"
            )
        if self.method == "percentile" and not 0.0 <= value < 100.0:
            raise LocalisationError(
                f"a percentile threshold must be in [0, 100), got {self.value!r}; "
                "e.g. 95 keeps the top 5% of pixels"
            )
        if not (math.isfinite(self.min_area) and self.min_area >= 0.0):
            raise LocalisationError(
                f"min_area must be a finite number >= 0 (frame pixels), got {self.min_area!r}"
            )


def _as_map(array: np.ndarray, what: str) -> np.ndarray:
    """A non-empty 2-D numeric array, or a LocalisationError saying what is wrong with it."""
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise LocalisationError(
            f"{what} must be a non-empty 2-D numeric array [rows, cols], got shape {array.shape}"
        )
    return array


def _check_finite(value: float | np.ndarray, what: str) -> float | np.ndarray:
    """``value`` (a whole small map, or a large map's max or argmax winner, where any NaN or +inf shows)
    if it is all finite."""
    if not np.isfinite(value).all():
        raise LocalisationError(
            f"{what} must hold finite numbers (no NaN/inf); clean the map before localising"
        )
    return value


def _as_boxes(boxes: np.ndarray, what: str = "boxes") -> np.ndarray:
    """Boxes as float64 [n, 4] (an empty input of any shape gives [0, 4])."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise LocalisationError(
            f"{what} must be an [n, 4] array of (xmin, ymin, xmax, ymax), got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise LocalisationError(f"{what} hold NaN/inf coordinates; drop the rows that have no box first")
    return array


def upsample_map(token_map: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """A token map [gh, gw] resized to the frame ``(H, W)`` as float32, bilinear with half-pixel centres
    (cv2 INTER_LINEAR), so each token's value sits at the centre of its footprint."""
    token_map = _as_map(token_map, "token_map")
    _check_finite(token_map, "token_map")
    if len(frame_size) != 2 or min(frame_size) <= 0:
        raise LocalisationError(f"frame_size must be a positive (height, width), got {frame_size!r}")
    height, width = int(frame_size[0]), int(frame_size[1])
    heatmap = cv2.resize(token_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return heatmap.reshape(height, width)  # cv2 drops a unit axis; keep [H, W]


latent_heatmap = upsample_map


def threshold_level(heatmap: np.ndarray, threshold: MapThreshold, peak: float | None = None) -> float:
    """The value a pixel must reach to be in the mask (before the pixel > 0 rule); ``peak`` is the map's max
    when the caller already has it."""
    if threshold.method == "fraction":
        return float(threshold.value) * (float(heatmap.max()) if peak is None else peak)
    return float(np.percentile(heatmap, threshold.value))


def threshold_mask(heatmap: np.ndarray, threshold: MapThreshold) -> np.ndarray:
    """Pixels > 0 and >= the threshold level; the > 0 rule keeps a percentile on a mostly-zero map from
    selecting zeros, and a map with no positive value gives an empty mask."""
    heatmap = _as_map(heatmap, "heatmap")
    peak = float(_check_finite(heatmap.max(), "heatmap"))
    if peak <= 0:
        return np.zeros(heatmap.shape, dtype=bool)
    level = threshold_level(heatmap, threshold, peak)
    return heatmap >= level if level > 0 else heatmap > 0  # one comparison: level > 0 implies pixel > 0


def mask_boxes(mask: np.ndarray, min_area: float = 10.0) -> np.ndarray:
    """Bounding boxes [n, 4] float64 xyxy of the mask's external contours with w*h >= ``min_area``, ordered by
    (ymin, xmin) so the result does not depend on opencv's contour order."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise LocalisationError(f"mask must be a 2-D array, got shape {mask.shape}")
    pixels = mask.view(np.uint8) if mask.dtype == bool else (mask != 0).astype(np.uint8)
    contours, _ = cv2.findContours(np.ascontiguousarray(pixels), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.float64).reshape(-1, 4)
    rects = rects[rects[:, 2] * rects[:, 3] >= min_area]
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def _pixel_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """The pixels [start, stop) that the interval [lo, hi) touches, clipped to [0, size)."""
    return max(0, math.floor(lo)), min(size, math.ceil(hi))


def box_peak_scores(heatmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The heatmap's max over the pixels each box covers: the confidence of a predicted box for AP.
    A box that covers no pixel of the frame scores -inf (it ranks last)."""
    heatmap = _as_map(heatmap, "heatmap")
    boxes = _as_boxes(boxes)
    height, width = heatmap.shape
    scores = np.full(len(boxes), -np.inf, dtype=np.float64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, c1 = _pixel_range(x0, x1, width)
        r0, r1 = _pixel_range(y0, y1, height)
        if c0 < c1 and r0 < r1:
            scores[i] = float(heatmap[r0:r1, c0:c1].max())
    return scores


def predicted_boxes(heatmap: np.ndarray, threshold: MapThreshold) -> tuple[np.ndarray, np.ndarray]:
    """The map's predicted boxes [n, 4] and their peak scores [n] under ``threshold``."""
    boxes = mask_boxes(threshold_mask(heatmap, threshold), threshold.min_area)
    return boxes, box_peak_scores(heatmap, boxes)


def peak_point(heatmap: np.ndarray) -> tuple[float, float]:
    """The (x, y) centre of the maximal pixel, the first in row-major order on ties."""
    heatmap = _as_map(heatmap, "heatmap")
    index = int(np.argmax(heatmap))  # NaN wins argmax, so checking the winner checks the map
    _check_finite(heatmap.flat[index], "heatmap")
    row, col = divmod(index, heatmap.shape[1])
    return col + 0.5, row + 0.5


Tolerance = float | tuple[float, float]  # px on every side, or (x, y) px per axis


def _check_tolerance(tolerance: object) -> tuple[float, float]:
    """A pointing tolerance as (x, y) px: one finite number >= 0 for both axes, or a pair of them."""
    pair = tuple(tolerance) if isinstance(tolerance, tuple | list | np.ndarray) else (tolerance, tolerance)
    if len(pair) != 2 or not all(_is_number(t) and math.isfinite(t) and t >= 0 for t in pair):
        raise LocalisationError(
            f"the pointing tolerance must be a finite number >= 0 px or an (x, y) pair of them, got {tolerance!r}"
        )
    return float(pair[0]), float(pair[1])


def point_in_boxes(point: tuple[float, float], boxes: np.ndarray, tolerance: Tolerance = 0.0) -> bool:
    """Whether (x, y) lies in any box grown by ``tolerance`` px (one number for every side, or an (x, y) pair
    per axis), bounds inclusive; False when there are no boxes."""
    boxes = _as_boxes(boxes)
    tx, ty = _check_tolerance(tolerance)
    x, y = point
    inside = (
        (boxes[:, 0] - tx <= x) & (x <= boxes[:, 2] + tx) & (boxes[:, 1] - ty <= y) & (y <= boxes[:, 3] + ty)
    )
    return bool(inside.any())


def _areas(boxes: np.ndarray) -> np.ndarray:
    """Box areas, zero for degenerate (inverted or flat) boxes."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [n, m] of xyxy boxes; pairs with an empty union (zero-area boxes) give 0, never NaN."""
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    assert iou.shape == (len(a), len(b)) and np.all((iou >= 0) & (iou <= 1 + 1e-12))
    return iou


def mean_best_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over ground-truth boxes of their best IoU with any predicted box: 0.0 without predictions,
    NaN without ground truth (nothing to localise)."""
    pred, gt = _as_boxes(pred, "pred"), _as_boxes(gt, "gt")
    if len(gt) == 0:
        return math.nan
    if len(pred) == 0:
        return 0.0
    return float(box_iou(pred, gt).max(axis=0).mean())


def _check_iou_threshold(iou_threshold: float) -> float:
    """An IoU threshold in (0, 1] (at 0 a disjoint box would count as a hit)."""
    if not (_is_number(iou_threshold) and 0.0 < iou_threshold <= 1.0):
        raise LocalisationError(f"an IoU threshold must be in (0, 1], got {iou_threshold!r}; e.g. 0.5")
    return float(iou_threshold)


def _checked_predictions(
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each image's (boxes [n, 4] float64, scores [n] float64), checked to pair one non-NaN score per box."""
    out = []
    for i, (boxes, scores) in enumerate(predictions):
        boxes = _as_boxes(boxes, "predicted boxes")
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes) or np.isnan(scores).any():
            raise LocalisationError(
                f"image {i} has {len(boxes)} predicted boxes but {len(scores)} scores (or a NaN score); "
                "pass one non-NaN score per box"
            )
        out.append((boxes, scores))
    return out


def _match_detections(
    predictions: list[tuple[np.ndarray, np.ndarray]], ground_truth: list[np.ndarray], iou_threshold: float
) -> np.ndarray:
    """True/false positive flags of all predictions, in descending score order (stable on ties)."""
    ious = [box_iou(boxes, gt) for (boxes, _), gt in zip(predictions, ground_truth, strict=True)]
    image_ids = np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(predictions)])
    box_ids = np.concatenate([np.arange(len(s)) for _, s in predictions])
    scores = np.concatenate([s for _, s in predictions])
    matched = [np.zeros(len(g), dtype=bool) for g in ground_truth]
    hits = np.zeros(len(scores), dtype=bool)
    for rank, k in enumerate(np.argsort(-scores, kind="stable")):
        image = int(image_ids[k])
        candidates = np.where(matched[image], -1.0, ious[image][box_ids[k]])  # each gt box is found once
        if len(candidates) and candidates.max() >= iou_threshold:
            matched[image][int(np.argmax(candidates))] = True
            hits[rank] = True
    return hits


def average_precision(
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truth: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
) -> float:
    """Detection AP over images (VOC all-point): area under the precision envelope over recall, with every
    prediction greedily matched, best score first, to the unmatched gt box of its image with the highest
    IoU >= ``iou_threshold``. NaN without any gt box, 0.0 without any prediction."""
    if len(predictions) != len(ground_truth):
        raise LocalisationError(
            f"got predictions for {len(predictions)} images but ground truth for {len(ground_truth)}; "
            "pass one (boxes, scores) pair and one gt array per image, in the same order"
        )
    iou_threshold = _check_iou_threshold(iou_threshold)
    gt = [_as_boxes(g, "ground-truth boxes") for g in ground_truth]
    checked = _checked_predictions(predictions)
    n_gt = sum(len(g) for g in gt)
    if n_gt == 0:
        return math.nan
    if sum(len(s) for _, s in checked) == 0:
        return 0.0
    hits = _match_detections(checked, gt, iou_threshold)
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    # recall rises by 1/n_gt at each hit; the envelope there is the best precision at that recall or more
    ap = float(envelope[hits].sum() / n_gt)
    assert 0.0 <= ap <= 1.0 + 1e-12
    return ap


@dataclass(frozen=True)
class LocalisationResult:
    """One latent's localisation over the images that have ground-truth boxes; ``pointing`` counts a peak
    within the pointing tolerance of a box, ``pointing_strict`` only a peak inside one (tolerance 0)."""

    n_images: int
    pointing: float
    mean_iou: float
    ap: dict[float, float]
    pointing_strict: float = math.nan

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat metrics for JSON: {prefix}pointing, {prefix}pointing_strict, {prefix}mean_iou and {prefix}ap30,
        ... named by round(100 x IoU threshold); NaN stays NaN (Python's json writes it)."""
        out = {
            f"{prefix}pointing": self.pointing,
            f"{prefix}pointing_strict": self.pointing_strict,
            f"{prefix}mean_iou": self.mean_iou,
        }
        for t, value in self.ap.items():
            out[f"{prefix}ap{round(100 * t)}"] = value
        assert len(out) == 3 + len(self.ap), "IoU thresholds must differ at 1/100 resolution"
        return out


def _peak_hits(heatmap: np.ndarray, gt: np.ndarray, tolerance: tuple[float, float]) -> tuple[bool, bool]:
    """(within ``tolerance`` of a box, strictly inside one) for the map's peak; a map without a positive
    value has no peak, a miss either way."""
    x, y = peak_point(heatmap)
    if not heatmap[int(y), int(x)] > 0:
        return False, False
    return point_in_boxes((x, y), gt, tolerance), point_in_boxes((x, y), gt)


def pointing_hits(
    token_maps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    frame_size: tuple[int, int],
    tolerances: Sequence[Tolerance] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the pointing game of ``localise`` as two bool arrays [n]: the peak within the image's
    tolerance of a box, and strictly inside one; an image without boxes is a miss (leave it out to score)."""
    if len(token_maps) != len(gt_boxes) or (tolerances is not None and len(tolerances) != len(gt_boxes)):
        raise LocalisationError(
            f"got {len(token_maps)} token maps, {len(gt_boxes)} gt box arrays and "
            f"{'no' if tolerances is None else len(tolerances)} tolerances; pass one of each per image"
        )
    checked = (
        [_check_tolerance(t) for t in tolerances] if tolerances is not None else [(0.0, 0.0)] * len(gt_boxes)
    )
    out = np.zeros((2, len(gt_boxes)), dtype=bool)
    for i, (token_map, boxes, tolerance) in enumerate(zip(token_maps, gt_boxes, checked, strict=True)):
        gt = _as_boxes(boxes, "gt_boxes")
        if len(gt):
            out[:, i] = _peak_hits(upsample_map(token_map, frame_size), gt, tolerance)
    return out[0], out[1]


def localise(
    token_maps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    frame_size: tuple[int, int],
    threshold: MapThreshold = MapThreshold(),  # frozen, so sharing the default is safe
    iou_thresholds: Sequence[float] = (0.3, 0.5),
    tolerances: Sequence[Tolerance] | None = None,
) -> LocalisationResult:
    """Pointing game, mean best IoU and AP of one latent over images (gt boxes in frame coordinates).
    Images without gt boxes are skipped; a map with no positive value is a miss (no peak, IoU 0, no boxes).
    ``tolerances`` (frame px, one per image: a number for both axes or an (x, y) pair; default 0) grow the
    boxes for the tolerant pointing game only: the standard game counts a peak within 15 original pixels of a
    box as a hit. ``pointing_strict`` is the same game at tolerance 0."""
    if len(token_maps) != len(gt_boxes):
        raise LocalisationError(
            f"got {len(token_maps)} token maps but {len(gt_boxes)} gt box arrays; pass one of each per image"
        )
    if tolerances is None:
        tolerances = [0.0] * len(token_maps)
    if len(tolerances) != len(token_maps):
        raise LocalisationError(
            f"got {len(tolerances)} pointing tolerances for {len(token_maps)} maps; pass one per image"
        )
    checked = [_check_tolerance(t) for t in tolerances]
    thresholds = [_check_iou_threshold(t) for t in iou_thresholds]
    hits, strict_hits, ious, predictions, truths = [], [], [], [], []
    for token_map, boxes, tolerance in zip(token_maps, gt_boxes, checked, strict=True):
        gt = _as_boxes(boxes, "gt_boxes")
        if len(gt) == 0:
            continue
        heatmap = upsample_map(token_map, frame_size)
        hit, strict_hit = _peak_hits(heatmap, gt, tolerance)
        hits.append(hit)
        strict_hits.append(strict_hit)
        if heatmap.max() > 0:
            pred, scores = predicted_boxes(heatmap, threshold)
        else:
            pred, scores = np.zeros((0, 4)), np.zeros(0)
        ious.append(mean_best_iou(pred, gt))
        predictions.append((pred, scores))
        truths.append(gt)
    n = len(truths)
    assert not any(s and not h for s, h in zip(strict_hits, hits, strict=True)), (
        "a strict hit is a tolerant hit"
    )
    return LocalisationResult(
        n_images=n,
        pointing=float(np.mean(hits)) if n else math.nan,
        mean_iou=float(np.mean(ious)) if n else math.nan,
        ap={t: average_precision(predictions, truths, t) for t in thresholds},
        pointing_strict=float(np.mean(strict_hits)) if n else math.nan,
    )
