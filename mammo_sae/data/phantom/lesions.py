"""Planted objects: masses, suspicious calcification clusters and benign bright structures.

Each renderer returns a small float32 patch in density units (added onto the breast by the caller),
centred on the patch centre, plus the tight box of the object inside the patch. Sizes are in pixels of
the image being rendered; callers scale them with `fields.pixel_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.data.phantom.fields import power_law_noise

MASS_SUBTYPES = ("round", "oval", "irregular", "spiculated")
BENIGN_SUBTYPES = ("coarse", "vascular")
#: A pixel belongs to an object's box when its contribution reaches this fraction of the peak.
BOX_FRACTION = 0.2


@dataclass(frozen=True)
class Patch:
    """An object's density contribution and its tight box (x0, y0, x1, y1), pixel edges, patch frame."""

    values: np.ndarray
    box: tuple[float, float, float, float]
    n_specks: int = 0

    @property
    def radius(self) -> int:
        return self.values.shape[0] // 2


def tight_box(values: np.ndarray, fraction: float = BOX_FRACTION) -> tuple[float, float, float, float]:
    """Box (x0, y0, x1, y1) in pixel edges around the pixels >= fraction x peak."""
    peak = float(values.max())
    if peak <= 0:
        return (0.0, 0.0, 0.0, 0.0)
    rows, cols = np.nonzero(values >= fraction * peak)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def _grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(-half, half + 1, dtype=np.float32)
    return coords[None, :], coords[:, None]


def render_mass(
    rng: np.random.Generator, subtype: str, radius: float, contrast: float, scale: float
) -> Patch:
    """A mass: round, oval, irregular (lobulated, ill-defined) or spiculated (core plus radiating lines)."""
    if subtype not in MASS_SUBTYPES:
        raise ValueError(f"unknown mass subtype {subtype!r}; choose one of {MASS_SUBTYPES}")
    reach = 2.8 if subtype == "spiculated" else 1.5
    half = int(np.ceil(radius * reach + 4 * scale + 3))
    x, y = _grid(half)
    angle = float(rng.uniform(0, np.pi))
    aspect = {"round": (1.0, 1.12), "oval": (1.35, 1.8), "irregular": (1.0, 1.4), "spiculated": (1.0, 1.2)}
    stretch = float(rng.uniform(*aspect[subtype]))
    # Rotate, then squash: an ellipse whose mean radius is `radius`.
    u = (x * np.cos(angle) + y * np.sin(angle)) / np.sqrt(stretch)
    v = (-x * np.sin(angle) + y * np.cos(angle)) * np.sqrt(stretch)
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    lobulation = {"round": 0.02, "oval": 0.02, "irregular": 0.16, "spiculated": 0.07}[subtype]
    for k in range(2, 8):
        amp = lobulation * float(rng.uniform(0.3, 1.0)) / np.sqrt(k - 1)
        outline = outline + amp * np.cos(k * theta + float(rng.uniform(0, 2 * np.pi)))
    rel = rho / (radius * outline)
    thickness = np.sqrt(np.clip(1.0 - rel * rel, 0.0, 1.0))
    body = np.clip((1.0 - rel) * radius / max(scale, 0.5), 0.0, 1.0)  # ~1 px wide edge ramp
    texture = power_law_noise(rng, (2 * half + 1, 2 * half + 1), beta=2.5)
    values = contrast * (0.35 * body + 0.65 * thickness) * (1.0 + 0.06 * texture)

    if subtype == "spiculated":
        values = np.maximum(values, contrast * 0.6 * _spicules(rng, half, radius, scale))
    edge_blur = {
        "round": 1.0 * scale,
        "oval": 1.0 * scale,
        "irregular": 0.05 * radius,
        "spiculated": 0.035 * radius,
    }
    sigma = max(float(edge_blur[subtype]), 0.4)
    values = cv2.GaussianBlur(values.astype(np.float32), (0, 0), sigma)
    return Patch(values, tight_box(values))


def _spicules(rng: np.random.Generator, half: int, radius: float, scale: float) -> np.ndarray:
    """Thin, tapering, slightly curved lines of varying length and strength radiating from the core."""
    canvas = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(10, 24))):
        layer = np.zeros_like(canvas, dtype=np.uint8)
        length = radius * float(rng.uniform(0.5, 1.8))
        base = max(float(rng.uniform(0.04, 0.09)) * radius, 0.8 * scale)
        bend = float(rng.normal(0, 0.25)) / length
        t = np.linspace(0.0, 1.0, 8)
        heading = angle + bend * length * t
        dist = 0.75 * radius + length * t
        cx, cy = half + dist * np.cos(heading), half + dist * np.sin(heading)
        w = base * (1.0 - t) + 0.2 * scale
        nx, ny = -np.sin(heading), np.cos(heading)
        left = np.stack([cx + w * nx, cy + w * ny], axis=1)
        right = np.stack([cx - w * nx, cy - w * ny], axis=1)[::-1]
        polygon = (np.concatenate([left, right]) * 16).astype(np.int32)
        cv2.fillPoly(layer, [polygon], 255, cv2.LINE_AA, shift=4)
        strength = float(rng.uniform(0.45, 1.0))
        np.maximum(canvas, layer.astype(np.float32) / 255.0 * strength, out=canvas)
    return canvas


def render_calcification_cluster(
    rng: np.random.Generator, n_specks: int, cluster_radius: float, scale: float, amplitude: float
) -> Patch:
    """A cluster of tiny bright pleomorphic specks (radius ~1-3 px at the default size).

    Specks keep a minimum spacing; if the cluster is too small for all of them, fewer are placed and
    `Patch.n_specks` says how many.
    """
    speck_r = np.maximum(rng.uniform(1.0, 3.0, n_specks) * scale, 0.8)
    cluster_radius = max(cluster_radius, 1.3 * float(speck_r.max()) * np.sqrt(n_specks))
    half = int(np.ceil(cluster_radius + 4 * speck_r.max() + 2))
    aspect = float(rng.uniform(0.45, 1.0))
    angle = float(rng.uniform(0, np.pi))
    centres: list[tuple[float, float, float]] = []
    for r in speck_r:
        for _ in range(40):
            # Denser towards the centre: a Gaussian-ish radial draw clipped to the ellipse.
            rad = cluster_radius * min(abs(float(rng.normal(0, 0.55))), 1.0)
            phi = float(rng.uniform(0, 2 * np.pi))
            px, py = rad * np.cos(phi), rad * np.sin(phi) * aspect
            cx = px * np.cos(angle) - py * np.sin(angle)
            cy = px * np.sin(angle) + py * np.cos(angle)
            if all((cx - ox) ** 2 + (cy - oy) ** 2 > (1.6 * (r + orr)) ** 2 for ox, oy, orr in centres):
                centres.append((cx, cy, float(r)))
                break
    x, y = _grid(half)
    values = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for cx, cy, r in centres:
        # Pleomorphic speck: a flat-topped anisotropic blob, elongated at a random angle.
        elong = float(rng.uniform(1.0, 2.0))
        phi = float(rng.uniform(0, np.pi))
        sig_major, sig_minor = r / 1.3 * np.sqrt(elong), r / 1.3 / np.sqrt(elong)
        dx, dy = x - cx, y - cy
        a = dx * np.cos(phi) + dy * np.sin(phi)
        b = -dx * np.sin(phi) + dy * np.cos(phi)
        g = np.exp(-0.5 * ((a / sig_major) ** 2 + (b / sig_minor) ** 2))
        level = amplitude * float(rng.uniform(0.75, 1.15))
        values = np.maximum(values, level * np.minimum(1.0, 1.6 * g))
    return Patch(values, tight_box(values, 0.3), n_specks=len(centres))


def render_coarse_calcification(rng: np.random.Generator, radius: float, amplitude: float) -> Patch:
    """A large, very bright benign "popcorn" calcification: a few overlapping dense discs."""
    half = int(np.ceil(2.2 * radius + 3))
    x, y = _grid(half)
    values = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.normal(0, 0.55 * radius, 2)
        r = radius * float(rng.uniform(0.45, 0.9))
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        values = np.maximum(values, amplitude * np.clip(r - d + 0.5, 0.0, 1.0))
    values = cv2.GaussianBlur(values, (0, 0), 0.6)
    return Patch(values, tight_box(values))


def render_vascular_calcification(
    rng: np.random.Generator, length: float, scale: float, amplitude: float
) -> Patch:
    """Benign vascular ("tram-track") calcification: two parallel dashed bright lines along a curve."""
    half = int(np.ceil(length / 2 + 6 * scale + 3))
    canvas = np.zeros((2 * half + 1, 2 * half + 1), np.uint8)
    heading = float(rng.uniform(0, 2 * np.pi))
    bend = float(rng.normal(0, 1.5)) / max(length, 1.0)
    gap = max(2.5 * scale, 1.5)
    steps = max(int(length / max(2.0 * scale, 1.0)), 4)
    step = length / steps
    x, y = -0.5 * length * np.cos(heading), -0.5 * length * np.sin(heading)
    thick = max(1, round(1.4 * scale))
    for i in range(steps):
        nx, ny = x + step * np.cos(heading), y + step * np.sin(heading)
        if rng.random() < 0.75:  # dashed: some segments missing
            for side in (-1, 1):
                ox, oy = -np.sin(heading) * gap * side, np.cos(heading) * gap * side
                p0 = (int((half + x + ox) * 16), int((half + y + oy) * 16))
                p1 = (int((half + nx + ox) * 16), int((half + ny + oy) * 16))
                cv2.line(canvas, p0, p1, 255, thick, cv2.LINE_AA, shift=4)
        x, y = nx, ny
        heading += bend * step + float(rng.normal(0, 0.02)) * (i > 0)
    values = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0 * amplitude, (0, 0), 0.5 * max(scale, 0.8))
    return Patch(values, tight_box(values))
