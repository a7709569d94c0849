"""Burned-in text markers ("R CC", "L MLO") drawn into the pixels, the phantoms' optional confounder."""

from __future__ import annotations

import cv2
import numpy as np

from mammo_sae.data.phantom.fields import pixel_scale

MARKER_LEVEL = 0.97  # display intensity of the burned-in text (near white, like a scanner's label)
TISSUE_LEVEL = 0.2  # display intensity safely above the Mammo-CLIP background threshold (40/255)


def marker_text(laterality: str, view: str) -> str:
    """The label a technologist's marker shows, e.g. "R CC"."""
    return f"{laterality} {view}"


def tissue_extent(intensity: np.ndarray) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) of the breast as the Mammo-CLIP breast extraction will keep it, roughly:
    columns with tissue in the central 80% of rows, then rows with tissue in the central 80% of
    those columns (tissue = clearly above that extraction's background threshold of 40/255)."""
    rows, cols = intensity.shape
    tissue = intensity > TISSUE_LEVEL
    band = tissue[rows // 2 - int(0.4 * rows) : rows // 2 + int(0.4 * rows)]
    kept_cols = np.flatnonzero(band.any(axis=0))
    if kept_cols.size == 0:
        return 0, 0, cols, rows
    x0, x1 = int(kept_cols[0]), int(kept_cols[-1]) + 1
    mid, half = (x0 + x1) // 2, int(0.4 * (x1 - x0))
    kept_rows = np.flatnonzero(tissue[:, mid - half : mid + half + 1].any(axis=1))
    if kept_rows.size == 0:
        return x0, 0, x1, rows
    return x0, int(kept_rows[0]), x1, int(kept_rows[-1]) + 1


def burn_in_marker(image: np.ndarray, text: str, chest_wall: str) -> tuple[float, float, float, float]:
    """Draw `text` into `image` (display intensity in [0, 1], modified in place) near the top corner of
    the breast's extent away from the chest wall ("left"/"right"), in the air beside the breast, so the
    marker survives the Mammo-CLIP breast crop; return its tight box (x0, y0, x1, y1), pixel edges."""
    rows, cols = image.shape
    scale = pixel_scale((rows, cols))
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(1.6 * scale, 0.35)
    thickness = max(round(3 * scale), 1)
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, thickness)
    ex0, ey0, ex1, _ = tissue_extent(image)
    margin_x, margin_y = int(0.03 * cols), int(0.02 * rows)
    x = max(ex1 - margin_x - text_w, 0) if chest_wall == "left" else min(ex0 + margin_x, cols - text_w)
    y = min(ey0 + margin_y + text_h, rows - baseline - 1)
    canvas = np.zeros((rows, cols), np.uint8)
    cv2.putText(canvas, text, (x, y), font, font_scale, 255, thickness, cv2.LINE_AA)
    alpha = canvas.astype(np.float32) / 255.0
    np.maximum(image, alpha * MARKER_LEVEL, out=image)
    ys, xs = np.nonzero(canvas >= 64)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
