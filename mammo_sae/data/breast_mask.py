"""Bit planes of a model frame: breast tissue, the skin-line band, and burned-in annotations (markers).

    bits_hw = tissue_bits(frame_u8)                  # uint8 [H, W]: TISSUE_BREAST | TISSUE_SKIN | TISSUE_MARKER
    fractions_3hw = token_fractions(bits_hw, grid)   # float32 [3, gh, gw]: covered share of each token

The breast is the preprocessing's own rule (``preprocess.BACKGROUND_LEVEL``: a pixel <= 40 is background,
the threshold Mammo-CLIP's breast extraction uses), kept to the largest connected component with its
holes filled, so a bright label in the air beside the breast is not breast. The skin band is the breast's
rim within ``skin_band_px`` of a breast/background edge; the frame's own edges (the chest wall and the
crop's cuts) are not skin line. Markers are bright, compact, text-like components outside the breast.
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_sae.core.errors import DataError
from mammo_sae.data.preprocess import BACKGROUND_LEVEL

TISSUE_BREAST, TISSUE_SKIN, TISSUE_MARKER = 1, 2, 4
PLANES = (TISSUE_BREAST, TISSUE_SKIN, TISSUE_MARKER)

#: default skin band width, as a fraction of the frame width (18 px at 912 wide, ~7.7 px at 384)
SKIN_BAND_FRACTION = 0.02

# --- the marker detector: documented limits (docs/regions.md) -------------------------------------------
#: a marker component must reach this grey level (burned-in text is drawn near white)
MARKER_PEAK_LEVEL = 200
#: components closer than this fraction of the frame width on both axes are strokes of one character
MARKER_GROUP_FRACTION = 0.01
#: box height limits, as fractions of the frame height (one line of text up to a short block of lines)
MARKER_MIN_HEIGHT, MARKER_MAX_HEIGHT = 0.004, 0.12
#: box width limit, as a fraction of the frame width
MARKER_MAX_WIDTH = 0.5
#: box aspect (width / height) limits: from a single tall character to a long line of text
MARKER_MIN_ASPECT, MARKER_MAX_ASPECT = 0.2, 25.0
#: share of the box covered by the component's pixels: text strokes, not a solid blob or a single line
MARKER_MIN_FILL, MARKER_MAX_FILL = 0.08, 0.85
#: fewest foreground pixels a marker line holds (dust and noise specks are smaller)
MARKER_MIN_PIXELS = 12
#: characters closer than this many times their height horizontally are words of one line
MARKER_WORD_GAP = 1.0
#: bright components considered per frame, largest first (bounds the line-joining cost)
MARKER_MAX_CANDIDATES = 256


def _check_frame(frame_u8: np.ndarray) -> np.ndarray:
    frame_u8 = np.asarray(frame_u8)
    if frame_u8.ndim != 2 or frame_u8.dtype != np.uint8 or min(frame_u8.shape) == 0:
        raise DataError(
            f"expected a model frame (uint8 [H, W], as frame_policy.mapped_frame(...).pixels gives), "
            f"got {frame_u8.dtype} of shape {frame_u8.shape}"
        )
    return np.ascontiguousarray(frame_u8)


def breast_mask(frame_u8: np.ndarray) -> np.ndarray:
    """bool [H, W]: the connected component (8-connected) of pixels above the background level with the
    largest outline, holes filled (its outer contour, filled). All False when no pixel is above it."""
    frame_u8 = _check_frame(frame_u8)
    foreground = (frame_u8 > BACKGROUND_LEVEL).astype(np.uint8)
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(foreground)
    if contours:
        largest = max(range(len(contours)), key=lambda k: (cv2.contourArea(contours[k]), len(contours[k])))
        cv2.drawContours(filled, contours, largest, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def skin_band(breast_hw: np.ndarray, band_px: float) -> np.ndarray:
    """bool [H, W]: breast pixels within ``band_px`` (Euclidean, frame pixels) of a background pixel inside
    the frame; the frame edge counts as breast beyond it (OpenCV's distance transform treats it so)."""
    if not band_px > 0:
        raise DataError(f"the skin band must be a positive width in pixels, got {band_px}")
    if not breast_hw.any():
        return np.zeros(breast_hw.shape, dtype=bool)
    distance_hw = cv2.distanceTransform(breast_hw.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    return breast_hw & (distance_hw <= band_px)


def detect_markers(frame_u8: np.ndarray, breast_hw: np.ndarray) -> np.ndarray:
    """float64 [n, 4] frame-pixel boxes (x0, y0, x1, y1, pixel edges) of burned-in annotations, top to
    bottom: components above the background level outside the breast that are bright (peak >=
    MARKER_PEAK_LEVEL), joined into lines of text (:func:`join_lines`), each line kept when it has text
    size, aspect and a stroke-like fill (MARKER_* limits)."""
    frame_u8 = _check_frame(frame_u8)
    breast_hw = np.asarray(breast_hw, dtype=bool)
    if breast_hw.shape != frame_u8.shape:
        raise DataError(f"breast mask {breast_hw.shape} does not fit the frame {frame_u8.shape}")
    height, width = frame_u8.shape
    outside_hw = ((frame_u8 > BACKGROUND_LEVEL) & ~breast_hw).astype(np.uint8)
    contours, _ = cv2.findContours(outside_hw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 4))
    rect_c4 = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64)  # x, y, w, h
    order = np.argsort(-(rect_c4[:, 2] * rect_c4[:, 3]), kind="stable")[:MARKER_MAX_CANDIDATES]
    box_c4 = rect_c4[order].copy()
    box_c4[:, 2:] += box_c4[:, :2]  # x0, y0, x1, y1
    box_c4 = box_c4[[_peak(frame_u8, outside_hw, box) >= MARKER_PEAK_LEVEL for box in box_c4]]
    if len(box_c4) == 0:
        return np.zeros((0, 4))
    group_px = max(1.0, MARKER_GROUP_FRACTION * width)
    line_c = np.unique(join_lines(box_c4.astype(np.float64), group_px), return_inverse=True)[1]
    n_lines = int(line_c.max()) + 1
    box_l4 = np.zeros((n_lines, 4), dtype=np.int64)
    box_l4[:, :2] = (width, height)
    for j, reduce in enumerate((np.minimum, np.minimum, np.maximum, np.maximum)):
        reduce.at(box_l4[:, j], line_c, box_c4[:, j])
    count_l = np.array([int(outside_hw[y0:y1, x0:x1].sum()) for x0, y0, x1, y1 in box_l4])
    box_w, box_h = box_l4[:, 2] - box_l4[:, 0], box_l4[:, 3] - box_l4[:, 1]
    fill_l = count_l / (box_w * box_h)
    aspect_l = box_w / box_h
    keep = (
        (count_l >= MARKER_MIN_PIXELS)
        & (box_h >= MARKER_MIN_HEIGHT * height)
        & (box_h <= MARKER_MAX_HEIGHT * height)
        & (box_w <= MARKER_MAX_WIDTH * width)
        & (aspect_l >= MARKER_MIN_ASPECT)
        & (aspect_l <= MARKER_MAX_ASPECT)
        & (fill_l >= MARKER_MIN_FILL)
        & (fill_l <= MARKER_MAX_FILL)
    )
    boxes = box_l4[keep].astype(np.float64)
    return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def _peak(frame_u8: np.ndarray, outside_hw: np.ndarray, box: np.ndarray) -> int:
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = frame_u8[y0:y1, x0:x1][outside_hw[y0:y1, x0:x1] > 0]
    return int(crop.max()) if crop.size else 0


def join_lines(box_n4: np.ndarray, group_px: float) -> np.ndarray:
    """int [n] line id of each component box (x0, y0, x1, y1), transitively: boxes within ``group_px`` of
    each other on both axes are one character (its strokes, an i's dot); boxes that overlap vertically by at
    least half the shorter one's height and lie within MARKER_WORD_GAP x the taller one's height of each
    other horizontally are one line (the characters and words of a label)."""
    n = len(box_n4)
    x0, y0, x1, y1 = (box_n4[:, j] for j in range(4))
    h = y1 - y0
    v_overlap = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    h_gap = np.maximum(x0[:, None], x0[None, :]) - np.minimum(x1[:, None], x1[None, :])
    word = (v_overlap >= 0.5 * np.minimum(h[:, None], h[None, :])) & (
        h_gap <= MARKER_WORD_GAP * np.maximum(h[:, None], h[None, :])
    )
    near = word | ((h_gap <= group_px) & (-v_overlap <= group_px))
    line = np.arange(n)
    while True:  # label propagation: each box takes the smallest id among its neighbours
        joined = np.where(near, line[None, :], n).min(axis=1)
        if np.array_equal(joined, line):
            return line
        line = joined


def tissue_bits(frame_u8: np.ndarray, *, skin_band_px: float | None = None) -> np.ndarray:
    """uint8 [H, W] bit planes of a model frame: TISSUE_BREAST (breast mask), TISSUE_SKIN (its rim within
    ``skin_band_px``, default SKIN_BAND_FRACTION x the frame width), TISSUE_MARKER (each detected marker's
    box, filled)."""
    frame_u8 = _check_frame(frame_u8)
    band = SKIN_BAND_FRACTION * frame_u8.shape[1] if skin_band_px is None else float(skin_band_px)
    breast_hw = breast_mask(frame_u8)
    bits_hw = breast_hw.astype(np.uint8) * np.uint8(TISSUE_BREAST)
    bits_hw[skin_band(breast_hw, max(band, 1.0) if skin_band_px is None else band)] |= TISSUE_SKIN
    for x0, y0, x1, y1 in detect_markers(frame_u8, breast_hw).astype(np.int64):
        bits_hw[y0:y1, x0:x1] |= TISSUE_MARKER
    return bits_hw


def footprint_sums(values: np.ndarray, cells: int, axis: int) -> np.ndarray:
    """float64 sums of ``values`` over ``cells`` equal footprints [c*n/cells, (c+1)*n/cells) along ``axis``
    (n its length), pixel j covering [j, j+1): each pixel's whole value goes to the cell its start lies in
    (np.add.reduceat), then the share of each pixel that straddles a footprint edge moves to the next cell."""
    values = np.moveaxis(np.asarray(values), axis, 0)
    n = values.shape[0]
    assert 0 < cells <= n
    start_j = np.arange(n)
    cell_j = start_j * cells // n  # the footprint holding each pixel's start (exact in integers)
    starts = np.searchsorted(cell_j, np.arange(cells))
    sums = np.add.reduceat(values, starts, axis=0, dtype=np.int32 if values.dtype == np.uint8 else None)
    sums = sums.astype(np.float64)
    spill_j = (start_j + 1) - (cell_j + 1) * (n / cells)  # the part of pixel j beyond its footprint's end
    straddle = np.flatnonzero(spill_j > 1e-12)
    if len(straddle):
        moved = values[straddle].astype(np.float64) * spill_j[straddle].reshape(-1, *[1] * (values.ndim - 1))
        cell_s = cell_j[straddle]  # one straddling pixel per footprint edge at most: no repeated index
        sums[cell_s] -= moved
        sums[cell_s + 1] += moved
    return np.moveaxis(sums, 0, axis)


def token_fractions(bits_hw: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """float32 [3, gh, gw]: the exact share of each token footprint covered by the breast, skin and marker
    planes (area-weighted where footprint edges fall inside pixels; cv2 INTER_AREA of each plane when the
    frame divides evenly into the grid). No BLAS, so it stays fast in busy DataLoader workers."""
    bits_hw = np.asarray(bits_hw)
    if bits_hw.ndim != 2 or bits_hw.dtype != np.uint8:
        raise DataError(f"expected tissue bits (uint8 [H, W]), got {bits_hw.dtype} of shape {bits_hw.shape}")
    gh, gw = (int(v) for v in grid)
    height, width = bits_hw.shape
    if gh <= 0 or gw <= 0 or gh > height or gw > width:
        raise DataError(f"grid {grid} does not fit a frame of {bits_hw.shape}: it needs 1..H x 1..W tokens")
    out = np.zeros((len(PLANES), gh, gw), dtype=np.float32)
    area = (height / gh) * (width / gw)
    for k, bit in enumerate(PLANES):
        plane_hw = bits_hw & np.uint8(bit)
        if not plane_hw.any():
            continue
        rows_gw = footprint_sums(footprint_sums(plane_hw, gh, axis=0), gw, axis=1)
        out[k] = rows_gw / (bit * area)
    return np.clip(out, 0.0, 1.0)
