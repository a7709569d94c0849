"""Random fields and small array helpers shared by the phantom renderers (numpy + OpenCV only)."""

from __future__ import annotations

import numpy as np

#: Size (rows, columns) the pixel-sized parameters are tuned for; other sizes scale them.
REFERENCE_SIZE = (1280, 1024)


def pixel_scale(shape: tuple[int, int]) -> float:
    """Linear scale of an image of `shape` relative to REFERENCE_SIZE (1.0 at the default size)."""
    return float(np.sqrt(shape[0] * shape[1] / (REFERENCE_SIZE[0] * REFERENCE_SIZE[1])))


def power_law_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float = 3.0) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**beta (beta 3: breast-tissue-like), zero mean, unit std.

    The field is periodic; callers that need no wrap-around seam generate it larger and crop.
    """
    rows, cols = shape
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = np.inf  # no DC component
    amplitude = freq ** np.float32(-beta / 2.0)
    spectrum = rng.standard_normal((rows, cols // 2 + 1), dtype=np.float32) + 1j * rng.standard_normal(
        (rows, cols // 2 + 1), dtype=np.float32
    )
    field = np.fft.irfft2(spectrum * amplitude, s=shape).astype(np.float32)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, 1 above hi, a C1 ramp in between (element-wise, float32)."""
    t = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    return t * t * (3.0 - 2.0 * t)


def add_patch(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Add `patch` into `canvas` at (top, left) in place, clipping whatever falls outside."""
    rows, cols = canvas.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], rows), min(left + patch.shape[1], cols)
    if y1 <= y0 or x1 <= x0:
        return
    canvas[y0:y1, x0:x1] += patch[y0 - top : y1 - top, x0 - left : x1 - left]
