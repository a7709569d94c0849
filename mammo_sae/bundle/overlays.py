"""Latent heatmaps on a viewer's image: a token map carried back through the preprocessing to the pixels
on screen, coloured and blended (a latent's map on a sequential colour map, a head's signed evidence on a
diverging one); gallery crops with the patch outlined; an image as a data URL for a chart. numpy/opencv
only, no Streamlit.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from mammo_sae.bundle.render import RGB, to_rgb
from mammo_sae.data.frames import FrameTransform

COLOUR_MAPS: dict[str, int] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}
PATCH_OUTLINE: RGB = (255, 214, 10)
#: the diverging overlay's ends: positive evidence warm, negative cool (zero is not coloured)
WARM_LOW, WARM_HIGH = np.array((255, 200, 40), np.float32), np.array((220, 20, 30), np.float32)
COOL_LOW, COOL_HIGH = np.array((110, 210, 255), np.float32), np.array((30, 60, 230), np.float32)


def frame_heatmap(token_map: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """[gh, gw] -> the model frame [H, W], bilinear with half-pixel centres (the localisation's map)."""
    height, width = frame_size
    return cv2.resize(np.asarray(token_map, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def heatmap_on_original(token_map: np.ndarray, transform: FrameTransform, scale: float = 1.0) -> np.ndarray:
    """The latent's map in original-image pixels times ``scale`` (the display size), 0 outside the crop.

    Each display pixel centre goes back to original coordinates, then forward through the preprocessing
    transform into the frame, where the bilinear frame map is sampled: one separable remap, whatever
    the crop.
    """
    assert scale > 0, "scale must be positive"
    heat = frame_heatmap(token_map, transform.frame_size)
    rows, cols = transform.original_shape
    out_h, out_w = max(1, round(rows * scale)), max(1, round(cols * scale))
    x_frame = transform.x.to_frame((np.arange(out_w) + 0.5) / scale) - 0.5
    y_frame = transform.y.to_frame((np.arange(out_h) + 0.5) / scale) - 0.5
    map_x = np.broadcast_to(x_frame[None, :], (out_h, out_w)).astype(np.float32)
    map_y = np.broadcast_to(y_frame[:, None], (out_h, out_w)).astype(np.float32)
    return cv2.remap(heat, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def blend_heatmap(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    colour_map: str = "inferno",
    opacity: float = 0.5,
    threshold: float = 0.0,
    vmax: float | None = None,
) -> np.ndarray:
    """RGB copy of ``image`` with ``heat`` (same height and width) coloured and blended where it reaches
    ``threshold`` x its maximum (``vmax``, default the map's own max). An all-zero map leaves the image."""
    if colour_map not in COLOUR_MAPS:
        raise ValueError(f"colour map must be one of {', '.join(COLOUR_MAPS)}, got {colour_map!r}")
    if not 0 <= opacity <= 1 or not 0 <= threshold <= 1:
        raise ValueError("opacity and threshold are fractions in [0, 1]")
    out = to_rgb(image)
    assert heat.shape == out.shape[:2], f"heatmap {heat.shape} does not match the image {out.shape[:2]}"
    peak = float(vmax if vmax is not None else heat.max())
    if peak <= 0:
        return out
    level = np.clip(heat / peak, 0, 1)
    coloured = cv2.cvtColor(
        cv2.applyColorMap((level * 255).astype(np.uint8), COLOUR_MAPS[colour_map]), cv2.COLOR_BGR2RGB
    )
    mask = (level >= threshold) & (heat > 0)
    blended = (out * (1 - opacity) + coloured * opacity).astype(np.uint8)
    out[mask] = blended[mask]
    return out


def blend_diverging(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    opacity: float = 0.6,
    threshold: float = 0.0,
    vmax: float | None = None,
) -> np.ndarray:
    """RGB copy of ``image`` with a signed map ``heat`` (same height and width) blended on a diverging scale
    centred at zero: positive values warm (yellow to red), negative cool (light to deep blue), each pixel's
    opacity ``opacity x |heat| / vmax`` (``vmax`` default: the map's largest magnitude), nothing drawn
    where that fraction is below ``threshold`` or the value is 0. An all-zero map leaves the image."""
    if not 0 <= opacity <= 1 or not 0 <= threshold <= 1:
        raise ValueError("opacity and threshold are fractions in [0, 1]")
    out = to_rgb(image)
    assert heat.shape == out.shape[:2], f"heatmap {heat.shape} does not match the image {out.shape[:2]}"
    peak = float(vmax if vmax is not None else np.abs(heat).max(initial=0.0))
    if peak <= 0:
        return out
    level = np.clip(np.asarray(heat, np.float32) / peak, -1, 1)
    mask = (np.abs(level) >= threshold) & (level != 0)
    drawn_n = level[mask]  # only the pixels that are drawn are coloured (most of the time is there)
    magnitude_n1 = np.abs(drawn_n)[:, None]
    warm_n3 = WARM_LOW + (WARM_HIGH - WARM_LOW) * magnitude_n1
    cool_n3 = COOL_LOW + (COOL_HIGH - COOL_LOW) * magnitude_n1
    colour_n3 = np.where(drawn_n[:, None] > 0, warm_n3, cool_n3)
    alpha_n1 = opacity * magnitude_n1  # strong evidence shows, weak fades out, zero stays clear
    blended_n3 = out[mask] * (1 - alpha_n1) + colour_n3 * alpha_n1
    out[mask] = np.clip(blended_n3, 0, 255).astype(np.uint8)
    return out


def image_data_url(pixels: np.ndarray, *, quality: int = 92) -> str:
    """An RGB image as an inline ``data:image/jpeg;base64,...`` URL (full colour resolution, no chroma
    subsampling): a chart shows it with nothing fetched."""
    rgb = to_rgb(pixels)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok, "JPEG encoding of a uint8 RGB image cannot fail"
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def patch_crop(
    image: np.ndarray, box: tuple[float, float, float, float], *, context: float = 2.0, size: int = 160
) -> np.ndarray:
    """A square RGB crop around ``box`` (image pixels) with ``context`` x its size around it, the box
    outlined, resized to ``size`` x ``size`` for a gallery."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 2.0) * context
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(float(cx - side / 2)), round(float(cy - side / 2))
    right, bottom = round(float(cx + side / 2)), round(float(cy + side / 2))
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    canvas = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = rgb[sy0:sy1, sx0:sx1]
    factor = size / max(canvas.shape[:2])
    crop = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    outline = np.array([x0 - left, y0 - top, x1 - left, y1 - top]) * factor
    thickness = max(1, size // 80)
    p0 = (round(float(outline[0])), round(float(outline[1])))
    p1 = (round(float(outline[2])), round(float(outline[3])))
    cv2.rectangle(crop, p0, p1, PATCH_OUTLINE, thickness)
    return crop


def zoom_region(image: np.ndarray, centre: tuple[float, float], half_size: int) -> np.ndarray:
    """The full-resolution window of ``2 x half_size`` pixels around ``centre`` (clipped to the image)."""
    h, w = image.shape[:2]
    cx, cy = round(float(centre[0])), round(float(centre[1]))
    x0, y0 = (
        min(max(cx - half_size, 0), max(w - 2 * half_size, 0)),
        min(max(cy - half_size, 0), max(h - 2 * half_size, 0)),
    )
    return image[y0 : y0 + 2 * half_size, x0 : x0 + 2 * half_size].copy()
