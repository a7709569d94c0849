"""CAD marks drawn on a rendered view: a ring around each mark's box (a shape no ground-truth box has) and a
score tag beside it. The view may already be mirrored for the hanging: the ring is placed at the mirrored
coordinates (a ring is its own mirror image) and the tag is written afterwards, so its text always reads
left to right. Pillow's bundled font only: no system fonts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mammo_sae.bundle.marks import Mark
from mammo_sae.bundle.render import MARK_COLOUR, RGB, to_rgb

HALO: RGB = (0, 0, 0)  # the dark rim under each ring and tag, so a mark reads on bright tissue too


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at ``size`` pixels (needs Pillow built with FreeType)."""
    loaded = ImageFont.load_default(size=max(6, int(size)))
    assert isinstance(loaded, ImageFont.FreeTypeFont), "Pillow lacks FreeType: the bundled font cannot scale"
    return loaded


def percent(probability: float) -> str:
    """A probability as a whole percentage that never rounds to a certainty it is not: ``87%``, ``>99%``,
    ``<1%``, ``100%`` only for 1."""
    p = float(probability)
    if 0.995 <= p < 1:
        return ">99%"
    if 0 < p < 0.005:
        return "<1%"
    return f"{p:.0%}"


def mark_label(mark: Mark) -> str:
    """The tag of a mark: ``mass 87%``."""
    return f"{mark.head} {percent(mark.score)}"


def display_box(
    box: tuple[float, float, float, float], *, scale: float, flipped: bool, width: int
) -> tuple[float, float, float, float]:
    """A box in original pixels as it lies on a rendered view ``width`` pixels wide (times ``scale``,
    mirrored when the view hangs ``flipped``)."""
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    if flipped:
        x0, x1 = width - x1, width - x0
    return x0, y0, x1, y1


def draw_marks(
    pixels: np.ndarray,
    marks: Sequence[Mark],
    *,
    scale: float,
    flipped: bool,
    colours: Mapping[str, RGB] | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """An RGB copy of a rendered view (``scale`` display pixels per original pixel, ``flipped`` when it
    was mirrored) with each mark's ring and ``mark_label`` tag; ``colours`` per head, default MARK_COLOUR."""
    out = to_rgb(pixels)
    if not marks:
        return out
    height, width = out.shape[:2]
    thickness = max(2, round(min(height, width) / 200))
    placed = []
    for mark in marks:
        x0, y0, x1, y1 = display_box(mark.box, scale=scale, flipped=flipped, width=width)
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            continue
        colour = (colours or {}).get(mark.head, MARK_COLOUR)
        centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
        # the ring circumscribes the box with a margin, so the finding under it stays visible
        axes = (max(6, round((x1 - x0) * 0.75) + thickness), max(6, round((y1 - y0) * 0.75) + thickness))
        cv2.ellipse(out, centre, axes, 0, 0, 360, HALO, thickness + 2, cv2.LINE_AA)
        cv2.ellipse(out, centre, axes, 0, 0, 360, colour, thickness, cv2.LINE_AA)
        placed.append((mark, colour, centre, axes))
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    face = font(font_size or max(11, round(height / 30)))
    for mark, colour, (cx, cy), (_, ay) in placed:  # text after the mirroring: it reads left to right
        text = mark_label(mark)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
        pad = max(2, face.size // 5)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(max(cx - tag_w // 2, 0), max(width - tag_w, 0))
        ty = cy - ay - thickness - tag_h - 2
        if ty < 0:  # no room above the ring: below it
            ty = min(cy + ay + thickness + 2, max(height - tag_h, 0))
        draw.rectangle((tx - 1, ty - 1, tx + tag_w, ty + tag_h), fill=HALO)
        draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), text, font=face, fill=(0, 0, 0))
    return np.asarray(canvas).copy()
