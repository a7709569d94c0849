"""Breast anatomy of a phantom view: silhouette, skin line, fibroglandular texture, pectoral muscle, vessels.

Everything is drawn in the canonical orientation, chest wall at the LEFT edge (as a left breast hangs);
the caller mirrors right-breast views. Values are "density" units: 0 = air, ~0.4 fat, ~0.75 dense
tissue; lesions add on top and `tone` maps the sum to display intensity in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammo_sae.data.phantom.fields import pixel_scale, power_law_noise, smoothstep

#: Target fraction of the breast area covered by dense tissue, per BI-RADS density class.
DENSE_FRACTION = {"A": 0.06, "B": 0.18, "C": 0.36, "D": 0.6}

FAT_LEVEL = 0.3
GLAND_CONTRAST = 0.34
PECTORAL_LEVEL = 0.7


@dataclass(frozen=True)
class BreastShape:
    """Silhouette parameters in fractions of the image (x of width, y of height), canonical orientation.

    CC: a superellipse-like half disc whose centre sits `offset` x depth behind the chest wall.
    MLO: a diagonal upper contour from the axilla (width `top` at the top edge) to the nipple,
    then a rounded lower contour to the inframammary fold, plus a pectoral triangle.
    """

    view: str
    nipple_y: float
    depth: float
    top: float  # MLO: breast width at the top edge; CC: extent above the nipple (fraction of height)
    lower: float  # extent below the nipple (fraction of height)
    offset: float
    exponent: float
    wobble: tuple[float, float, float, float]
    pectoral: tuple[float, float, float] | None = None  # MLO: top width, height, bulge

    def width_profile(self, rows: int, cols: int) -> np.ndarray:
        """Breast extent in pixels from the chest wall, for every row (float, 0 where no breast)."""
        yf = (np.arange(rows, dtype=np.float64) + 0.5) / rows
        ny, depth, p = self.nipple_y, self.depth, self.exponent
        outer = depth * (1.0 + self.offset)
        below = np.clip((yf - ny) / self.lower, 0.0, 1.0)
        lower = outer * (1.0 - below**p) ** (1.0 / p) - depth * self.offset
        if self.view == "CC":
            above = np.clip((ny - yf) / self.top, 0.0, 1.0)
            upper = outer * (1.0 - above**p) ** (1.0 / p) - depth * self.offset
        else:
            t = np.clip(yf / ny, 0.0, 1.0)
            upper = self.top + (depth - self.top) * (1.0 - (1.0 - t) ** 1.9)
        width = np.where(yf < ny, upper, lower)
        a1, f1, a2, f2 = self.wobble
        width = width * (1.0 + a1 * np.sin(4 * np.pi * yf + f1) + a2 * np.sin(6 * np.pi * yf + f2))
        return np.maximum(width, 0.0) * cols

    def pectoral_profile(self, rows: int, cols: int) -> np.ndarray:
        """Pectoral muscle extent in pixels from the chest wall, per row (zeros for CC views)."""
        if self.pectoral is None:
            return np.zeros(rows)
        top_width, height, bulge = self.pectoral
        yf = (np.arange(rows, dtype=np.float64) + 0.5) / rows
        t = np.clip(yf / height, 0.0, 1.0)
        return np.maximum(top_width * (1.0 - t) + bulge * np.sin(np.pi * t), 0.0) * cols


def sample_shape(rng: np.random.Generator, view: str, size: float) -> BreastShape:
    """Draw a silhouette for `view` ("CC"/"MLO"); `size` in [0, 1] is the patient's breast size."""
    wobble = (
        float(rng.uniform(-0.02, 0.02)),
        float(rng.uniform(0, 2 * np.pi)),
        float(rng.uniform(-0.015, 0.015)),
        float(rng.uniform(0, 2 * np.pi)),
    )
    if view == "CC":
        return BreastShape(
            view="CC",
            nipple_y=float(rng.uniform(0.46, 0.54)),
            depth=float(0.56 + 0.2 * size + rng.uniform(-0.03, 0.03)),
            top=float(0.36 + 0.06 * size + rng.uniform(-0.02, 0.02)),
            lower=float(0.36 + 0.06 * size + rng.uniform(-0.02, 0.02)),
            offset=float(rng.uniform(0.12, 0.3)),
            exponent=float(rng.uniform(1.8, 2.2)),
            wobble=wobble,
        )
    nipple_y = float(rng.uniform(0.5, 0.6))
    top = float(rng.uniform(0.3, 0.42))
    return BreastShape(
        view="MLO",
        nipple_y=nipple_y,
        depth=float(0.62 + 0.2 * size + rng.uniform(-0.03, 0.03)),
        top=top,
        lower=float(min(0.3 + 0.08 * size + rng.uniform(-0.02, 0.02), 0.985 - nipple_y)),
        offset=float(rng.uniform(0.1, 0.3)),
        exponent=float(rng.uniform(1.9, 2.4)),
        wobble=wobble,
        pectoral=(
            float(top * rng.uniform(0.7, 0.95)),
            float(rng.uniform(0.42, 0.66)),
            float(rng.uniform(0.0, 0.05)),
        ),
    )


@dataclass
class Anatomy:
    """A rendered view before lesions: density image plus the maps lesion placement needs."""

    image: np.ndarray  # float32 density units
    breast: np.ndarray  # float32 in [0, 1], anti-aliased silhouette
    skin_distance: np.ndarray  # float32 pixels from the skin line (0 outside)
    width: np.ndarray  # breast extent per row, pixels from the chest wall
    pectoral: np.ndarray  # pectoral extent per row, pixels
    shape: BreastShape
    nipple: tuple[float, float]  # (x, y) pixels


def _skin_distance(inside: np.ndarray) -> np.ndarray:
    """Distance (px) to the skin line; the chest wall and the top/bottom edges are not skin."""
    pad = max(inside.shape) // 8
    padded = cv2.copyMakeBorder(inside, pad, pad, pad, 0, cv2.BORDER_REPLICATE)
    padded = cv2.copyMakeBorder(padded, 0, 0, 0, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)
    return dist[pad:-pad, pad:-1]


def _radial_texture(
    rng: np.random.Generator, small: tuple[int, int], nipple: tuple[float, float]
) -> np.ndarray:
    """Power-law noise sampled in polar coordinates around the nipple: streaks that converge on it,
    like ducts and Cooper's ligaments."""
    rows, cols = small
    base = power_law_noise(rng, (256, 256), beta=2.6)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    dx, dy = xx - nipple[0], yy - nipple[1]
    radius = np.sqrt(dx * dx + dy * dy) / max(rows, cols)
    angle = np.arctan2(dy, dx) / np.pi  # -1..1
    map_x = (radius * 256 * 0.45).astype(np.float32)
    map_y = ((angle + 1.0) * 256 * 2).astype(np.float32)  # a whole number of periods: no seam
    streaks = cv2.remap(base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return streaks * smoothstep(radius, 0.05, 0.3)  # no starburst right at the nipple


def render_anatomy(
    rng: np.random.Generator, size_hw: tuple[int, int], shape: BreastShape, dense_fraction: float
) -> Anatomy:
    """Render silhouette, skin, fat, fibroglandular tissue, pectoral muscle and vessels."""
    rows, cols = size_hw
    scale = pixel_scale(size_hw)
    xs = np.arange(cols, dtype=np.float32)[None, :] + 0.5
    width = shape.width_profile(rows, cols)
    breast = np.clip(width.astype(np.float32)[:, None] - xs + 0.5, 0.0, 1.0)
    dist = _skin_distance((breast > 0.5).astype(np.uint8))
    nipple_row = int(np.argmax(width))
    nipple = (float(width[nipple_row]), float(nipple_row))

    # Compressed-thickness fall-off towards the skin, low-frequency fat variation, skin line.
    small = (max(rows // 4, 16), max(cols // 4, 16))

    def upsample(field: np.ndarray) -> np.ndarray:
        return cv2.resize(field, (cols, rows), interpolation=cv2.INTER_CUBIC)

    falloff = 1.0 - np.exp(-dist / np.float32(0.05 * cols))
    fat_var = upsample(power_law_noise(rng, small, beta=3.2))
    image = FAT_LEVEL * (0.45 + 0.55 * falloff) * (1.0 + 0.06 * fat_var)
    skin_sigma = 1.1 * scale
    skin = np.exp(-((dist - 2.0 * skin_sigma) ** 2) / np.float32(2 * skin_sigma**2)) * (dist > 0)
    image = image + 0.08 * skin

    # Fibroglandular tissue: low-frequency power-law noise plus streaks converging on the nipple,
    # shaped by an envelope (none in the subcutaneous fat, little in the retro-mammary fat, most
    # behind the nipple), thresholded softly to the density class's dense fraction.
    iso = power_law_noise(rng, (small[0] * 2, small[1] * 2), beta=3.0)[: small[0], : small[1]]
    radial = _radial_texture(rng, small, (nipple[0] / 4, nipple[1] / 4))
    lobules = power_law_noise(rng, small, beta=2.0)
    noise = upsample(0.85 * iso + 0.4 * radial + 0.3 * lobules)
    iso_full = upsample(iso)
    pect = shape.pectoral_profile(rows, cols)
    subcut = float(rng.uniform(0.025, 0.045)) * cols
    yy = (np.arange(rows, dtype=np.float32)[:, None] + 0.5 - nipple[1]) / rows
    envelope = (
        smoothstep(dist, subcut, subcut + 0.1 * cols)
        * smoothstep(xs - pect.astype(np.float32)[:, None], 0.0, 0.12 * cols)
        * np.exp(-(yy**2) / np.float32(2 * 0.24**2))
    )
    drive = noise + 2.0 * envelope - 2.0 * (1.0 - envelope)
    inside = breast > 0.5
    threshold = float(np.quantile(drive[inside][::7], 1.0 - dense_fraction)) if inside.any() else 0.0
    dense = smoothstep(drive, threshold - 1.3, threshold + 0.8) ** 1.6 * breast
    fine = upsample(power_law_noise(rng, small, beta=2.3))
    speckle = cv2.resize(
        power_law_noise(rng, (rows // 2, cols // 2), beta=2.0), (cols, rows), interpolation=cv2.INTER_LINEAR
    )
    image = image + GLAND_CONTRAST * dense * (1.0 + 0.22 * fine + 0.12 * speckle + 0.08 * iso_full)

    # Faint trabecular streaks through the fat, converging on the nipple like Cooper's ligaments.
    streaks = upsample(radial)
    image = image + 0.035 * streaks * (1.0 - dense) * smoothstep(dist, subcut * 0.3, subcut * 1.2)

    if shape.pectoral is not None:
        ramp = np.clip(pect.astype(np.float32)[:, None] - xs + 1.5 * scale, 0.0, 3.0 * scale) / (3.0 * scale)
        depth = np.clip((pect.astype(np.float32)[:, None] - xs) / np.float32(0.08 * cols), 0.0, 1.0)
        muscle_level = PECTORAL_LEVEL * (0.86 + 0.14 * depth) + 0.035 * fine + 0.015 * streaks
        image = image * (1.0 - ramp) + ramp * muscle_level

    beyond_muscle = xs > pect.astype(np.float32)[:, None] + 2.0 * scale
    image = image + _vessels(rng, size_hw, width, nipple, scale) * ((dist > subcut * 0.3) & beyond_muscle)
    image = image * breast
    return Anatomy(image.astype(np.float32), breast, dist, width, pect, shape, nipple)


def _vessels(
    rng: np.random.Generator,
    size_hw: tuple[int, int],
    width: np.ndarray,
    nipple: tuple[float, float],
    scale: float,
) -> np.ndarray:
    """A few thin, gently curving bright lines running from the chest wall towards the nipple."""
    rows, cols = size_hw
    canvas = np.zeros((rows, cols), np.uint8)
    rows_in = np.nonzero(width > 0.2 * cols)[0]
    if rows_in.size == 0:
        return canvas.astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        y = float(rng.choice(rows_in))
        x = float(rng.uniform(0.0, 0.1)) * width[int(y)]
        heading = np.arctan2(nipple[1] - y, nipple[0] - x) + rng.normal(0, 0.35)
        step = 6.0 * scale
        points = []
        for _ in range(int(rng.uniform(0.35, 0.8) * cols / step)):
            points.append((x, y))
            heading += rng.normal(0, 0.12)
            x += step * np.cos(heading)
            y += step * np.sin(heading)
            if not (0 <= y < rows and 0 <= x < width[int(min(max(y, 0), rows - 1))] * 0.92):
                break
        if len(points) > 2:
            pts = (np.asarray(points) * 16).astype(np.int32)
            thick = max(1, round(rng.uniform(1.5, 3.0) * scale))
            level = int(rng.uniform(60, 110))
            cv2.polylines(canvas, [pts], False, level, thick, cv2.LINE_AA, shift=4)
    out = canvas.astype(np.float32) / 1000.0
    return cv2.GaussianBlur(out, (0, 0), 0.7 * scale)


def tone(density: np.ndarray) -> np.ndarray:
    """Density units -> display intensity in [0, 1]: linear up to 0.8, soft shoulder above."""
    knee = np.float32(0.8)
    over = np.maximum(density - knee, 0.0)
    out = np.minimum(density, knee) + 0.2 * np.tanh(over / np.float32(0.2))
    return np.clip(out, 0.0, 1.0).astype(np.float32)
