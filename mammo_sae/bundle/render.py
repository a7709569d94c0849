"""Pixel rendering for viewers: fitting images to a screen and drawing boxes (numpy/opencv, no Streamlit)."""

from __future__ import annotations

import cv2
import numpy as np

RGB = tuple[int, int, int]
# Ground-truth box colours, one per category (the viewers' legends name each); CAD marks use MARK_COLOUR,
# which no category shares.
FINDING_COLOURS: dict[str, RGB] = {
    "mass": (255, 99, 71),
    "calcification": (64, 200, 255),
    "benign": (140, 220, 110),
    "marker": (200, 140, 255),
}
DEFAULT_COLOUR: RGB = (225, 225, 225)  # any other category
MARK_COLOUR: RGB = (255, 214, 10)


def colour_hex(colour: RGB) -> str:
    """``#rrggbb`` of an RGB triple, for browser-side drawing and legends."""
    return "#{:02x}{:02x}{:02x}".format(*colour)


def fit_height(image: np.ndarray, max_height: int) -> tuple[np.ndarray, float]:
    """Downscale (never upscale) so the image is at most ``max_height`` rows; returns it and the scale."""
    assert max_height > 0, "max_height must be positive"
    height, width = image.shape[:2]
    if height <= max_height:
        return image, 1.0
    scale = max_height / height
    size = (max(1, round(width * scale)), max_height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 greyscale or RGB image as a contiguous RGB copy."""
    assert image.dtype == np.uint8, "render uint8 images"
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    assert image.ndim == 3 and image.shape[2] == 3, f"expected H x W x 3, got {image.shape}"
    return image.copy()


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    scale: float = 1.0,
    colours: list[RGB] | None = None,
    labels: list[str] | None = None,
) -> np.ndarray:
    """Draw (N, 4) boxes given in the image's original pixels (times ``scale``) onto an RGB copy."""
    out = to_rgb(image)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    thickness = max(1, round(min(out.shape[:2]) / 250))
    for i, (x0, y0, x1, y1) in enumerate(b):
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            continue
        colour = colours[i] if colours else DEFAULT_COLOUR
        cv2.rectangle(out, (round(x0), round(y0)), (round(x1), round(y1)), colour, thickness, cv2.LINE_8)
        if labels:
            origin = (round(x0), max(12, round(y0) - 4))
            cv2.putText(out, labels[i], origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out
