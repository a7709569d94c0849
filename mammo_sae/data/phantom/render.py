"""Render one planned image: anatomy, planted objects, noise, orientation, burned-in marker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mammo_sae.data.phantom.anatomy import DENSE_FRACTION, Anatomy, render_anatomy, sample_shape, tone
from mammo_sae.data.phantom.fields import add_patch, pixel_scale
from mammo_sae.data.phantom.lesions import (
    Patch,
    render_calcification_cluster,
    render_coarse_calcification,
    render_mass,
    render_vascular_calcification,
)
from mammo_sae.data.phantom.markers import burn_in_marker, marker_text
from mammo_sae.data.phantom.plan import STREAM_OBJECT, STREAM_RENDER, ImagePlan, PlannedObject, rng_for

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TruthObject:
    """One planted object as it appears in one image; box (x0, y0, x1, y1) in pixel edges."""

    lesion_id: str
    kind: str  # "mass" | "calcification" | "benign" | "marker"
    subtype: str
    n_specks: int
    box: Box
    contrast: float
    group: int = -1


@dataclass(frozen=True)
class RenderedImage:
    """Display intensity in [0, 1] (bright = dense), in the stored orientation, and its ground truth."""

    intensity: np.ndarray
    objects: tuple[TruthObject, ...]


def _place(anatomy: Anatomy, obj: PlannedObject, reach: float) -> tuple[float, float]:
    """Pixel centre for `obj` in this view, at least `reach` px inside the skin and off the pectoral."""
    rows, cols = anatomy.image.shape
    width, pect = anatomy.width, anatomy.pectoral
    in_breast = np.nonzero(width > 1)[0]
    top, bottom = float(in_breast[0]), float(in_breast[-1])
    nip_x, nip_y = anatomy.nipple
    across = obj.across_cc if anatomy.shape.view == "CC" else obj.across_mlo
    span = (nip_y - top) if across < 0 else (bottom - nip_y)
    y = float(np.clip(nip_y + 0.8 * across * span, 0, rows - 1))
    x = pect[int(y)] + obj.depth * (width[int(y)] - pect[int(y)])
    anchor_x = pect[int(nip_y)] + 0.5 * (nip_x - pect[int(nip_y)])
    margin = reach + 0.02 * cols
    for t in np.linspace(0.0, 1.0, 26):
        px, py = (1 - t) * x + t * anchor_x, (1 - t) * y + t * nip_y
        r, c = int(py), int(min(max(px, 0), cols - 1))
        if anatomy.skin_distance[r, c] >= margin and px - pect[r] >= margin:
            return float(px), float(py)
    return float(anchor_x), float(nip_y)


def _render_object(rng: np.random.Generator, obj: PlannedObject, cols: int, scale: float) -> Patch:
    size = obj.size * cols * float(rng.uniform(0.92, 1.08))
    contrast = obj.contrast * float(rng.uniform(0.9, 1.1))
    if obj.kind == "mass":
        return render_mass(rng, obj.subtype, size, contrast, scale)
    if obj.kind == "calcification":
        return render_calcification_cluster(rng, obj.n_specks, size, scale, contrast)
    if obj.subtype == "coarse":
        return render_coarse_calcification(rng, max(size, 1.5), contrast)
    return render_vascular_calcification(rng, size, scale, contrast)


def render_image(plan: ImagePlan, size_hw: tuple[int, int]) -> RenderedImage:
    """Render `plan` at `size_hw` (rows, cols): a pure function of the plan and the size."""
    rows, cols = size_hw
    scale = pixel_scale(size_hw)
    rng = rng_for(plan.seed, plan.study_index, plan.view_index, STREAM_RENDER)
    shape = sample_shape(rng, plan.view, plan.breast_size)
    anatomy = render_anatomy(rng, size_hw, shape, DENSE_FRACTION[plan.density])
    density = anatomy.image

    found: list[TruthObject] = []
    centres: dict[tuple[float, float, float], tuple[float, float]] = {}
    for k, obj in enumerate(plan.objects):
        obj_rng = rng_for(plan.seed, plan.study_index, plan.view_index, STREAM_OBJECT, k)
        patch = _render_object(obj_rng, obj, cols, scale)
        key = (obj.depth, obj.across_cc, obj.across_mlo)
        if key in centres:  # co-located with an earlier object (calcifications inside a mass)
            cx, cy = centres[key]
        else:
            cx, cy = _place(anatomy, obj, patch.radius)
            centres[key] = (cx, cy)
        top, left = round(cy) - patch.radius, round(cx) - patch.radius
        add_patch(density, patch.values, top, left)
        x0, y0, x1, y1 = patch.box
        box = (
            float(np.clip(x0 + left, 0, cols)),
            float(np.clip(y0 + top, 0, rows)),
            float(np.clip(x1 + left, 0, cols)),
            float(np.clip(y1 + top, 0, rows)),
        )
        contrast = float(patch.values.max())
        found.append(
            TruthObject(obj.lesion_id, obj.kind, obj.subtype, patch.n_specks, box, contrast, obj.group)
        )

    # Quantum-like noise inside the breast, a faint floor outside.
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    density = density + noise * (0.006 + 0.006 * anatomy.breast) + 0.004
    intensity = tone(density)

    if plan.laterality == "R":  # right breast: chest wall at the right edge, breast towards the left
        intensity = np.ascontiguousarray(intensity[:, ::-1])
        found = [
            TruthObject(o.lesion_id, o.kind, o.subtype, o.n_specks, _mirror(o.box, cols), o.contrast, o.group)
            for o in found
        ]
    if plan.marker:
        found.append(add_marker(intensity, plan))
    return RenderedImage(intensity, tuple(found))


def add_marker(intensity: np.ndarray, plan: ImagePlan) -> TruthObject:
    """Burn `plan`'s marker ("L CC", ...) into `intensity` (stored orientation, modified in place), as
    `render_image` does for a plan with a marker; return its truth object. The counterfactual pairs
    (`phantom.counterfactual`) call it on a copy of the image rendered without the marker."""
    text = marker_text(plan.laterality, plan.view)
    chest_wall = "right" if plan.laterality == "R" else "left"
    box = burn_in_marker(intensity, text, chest_wall)
    return TruthObject(f"{plan.image_id}-marker", "marker", text, 0, box, 1.0)


def _mirror(box: Box, cols: int) -> Box:
    x0, y0, x1, y1 = box
    return (float(cols - x1), y0, float(cols - x0), y1)
