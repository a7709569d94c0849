"""A study's four views as the hanging viewer component draws them: a JSON-safe spec (per slot the image's
size, how it hangs, its modality-value packing, the file's VOI presets, the model grid's box on original
pixels, the overlay's token map and colours, ground-truth boxes, CAD marks) and the pixels, packed as
zlib-compressed uint16 modality samples so the browser windows them itself.

Everything here is in ORIGINAL image pixels (not mirrored): the browser applies the mirroring, the zoom
and the pan to the image and its overlays alike. See docs/viewer.md for the component's side."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from mammo_sae.bundle.cases import HANGING_ORDER, HangingView, view_boxes, view_probabilities
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.marks import Mark
from mammo_sae.bundle.overlays import COLOUR_MAPS, COOL_HIGH, COOL_LOW, WARM_HIGH, WARM_LOW
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.render import DEFAULT_COLOUR, FINDING_COLOURS, MARK_COLOUR, colour_hex
from mammo_sae.bundle.viewer import head_evidence
from mammo_sae.data.dicom import MammogramDicom, display_image
from mammo_sae.data.dicom.display import FULL_RANGE, modality_values, padding_mask
from mammo_sae.data.frames import FrameTransform, needs_display_flip, transform_from_json

__all__ = [
    "KEYS",
    "MARK_COLOUR",
    "NO_OVERLAY",
    "Overlay",
    "PackedPixels",
    "assemble_spec",
    "empty_slot",
    "hanging_spec",
    "heatmap_colours",
    "slot_spec",
    "view_pixels",
    "view_presets",
]

SAMPLE_LEVELS = 65535  # samples 1..65535 carry values; sample 0 is padding (drawn black)
#: the keyboard, as the on-screen help lists it (the component implements exactly these)
KEYS: dict[str, str] = {
    "j / ↓ / n": "next study",
    "k / ↑ / p": "previous study",
    "1-4": "select a view (again: fill the stage)",
    "0 / Esc": "back to the 2 x 2 hanging",
    "b": "ground-truth boxes on / off",
    "h": "heatmap on / off",
    "m": "CAD marks on / off",
    "o": "all overlays on / off",
    "i": "invert grey levels",
    "r / double-click": "reset zoom, pan and window",
    "l": "link the two views of a side",
    "wheel / drag": "zoom about the cursor / pan",
    "right-drag or shift+drag": "window (horizontal) / level (vertical)",
    "click": "what fires here",
    "?": "this help",
}


class PackedPixels(NamedTuple):
    """One view's modality values as zlib-compressed little-endian uint16 samples, row-major
    ``height x width``; value = ``offset + step * sample`` for samples >= 1, sample 0 = padding."""

    data: bytes
    width: int
    height: int
    scale: float  # pixels sent per original pixel
    offset: float
    step: float


@dataclass(frozen=True)
class Overlay:
    """What a view's heatmap shows: a head's evidence (diverging around zero, scaled to ``vmax``, default
    the study's largest magnitude), a latent's activation (sequential ``colour_map``), or nothing."""

    kind: str = "none"  # "evidence" | "latent" | "none"
    head: str | None = None
    latent: int | None = None
    colour_map: str = "inferno"
    opacity: float = 0.45
    threshold: float = 0.3  # fraction of the map's maximum (largest magnitude for evidence)
    vmax: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("evidence", "latent", "none"):
            raise ValueError(f"overlay kind must be evidence, latent or none, not {self.kind!r}")
        if self.kind == "evidence" and not self.head:
            raise ValueError("an evidence overlay names its head")
        if self.kind == "latent" and self.latent is None:
            raise ValueError("a latent overlay names its latent")
        if not 0 <= self.opacity <= 1 or not 0 <= self.threshold <= 1:
            raise ValueError("opacity and threshold are fractions in [0, 1]")
        if self.colour_map not in COLOUR_MAPS:
            raise ValueError(f"colour map must be one of {', '.join(COLOUR_MAPS)}, got {self.colour_map!r}")


NO_OVERLAY = Overlay()


# --- pixels ------------------------------------------------------------------------------------------------


def view_pixels(image: MammogramDicom, max_rows: int) -> PackedPixels:
    """The image's modality values, downscaled (area average, never upscaled) to at most ``max_rows``
    rows, packed as uint16 samples: exact when the values are integers spanning at most 65534 levels,
    else quantised to 65535 levels over their range. Padding pixels (PixelPaddingValue) are sample 0."""
    assert max_rows > 0, "max_rows must be positive"
    values_hw = modality_values(image).astype(np.float64)
    padding_hw = padding_mask(image)
    rows, cols = values_hw.shape
    scale = 1.0
    if rows > max_rows:  # an area average of the tissue alone: padding never bleeds into its neighbours
        scale = max_rows / rows
        size = (max(1, round(cols * scale)), max_rows)
        tissue_hw = (~padding_hw).astype(np.float32)
        summed_hw = cv2.resize(
            np.where(padding_hw, 0.0, values_hw).astype(np.float32), size, interpolation=cv2.INTER_AREA
        )
        share_hw = cv2.resize(tissue_hw, size, interpolation=cv2.INTER_AREA)
        padding_hw = share_hw < 0.5  # mostly padding: padding
        values_hw = (summed_hw / np.maximum(share_hw, 1e-6)).astype(np.float64)
    shown = values_hw[~padding_hw]
    low = float(shown.min()) if shown.size else 0.0
    high = float(shown.max()) if shown.size else 0.0
    integral = scale == 1.0 and bool(np.all(np.equal(np.mod(shown, 1), 0)))
    if integral and high - low <= SAMPLE_LEVELS - 1:
        step = 1.0
    else:
        step = max(high - low, 1e-12) / (SAMPLE_LEVELS - 1)
    offset = low - step  # the lowest value is sample 1
    samples_hw = np.clip(np.rint((values_hw - offset) / step), 1, SAMPLE_LEVELS).astype("<u2")
    samples_hw[padding_hw] = 0
    data = zlib.compress(np.ascontiguousarray(samples_hw).tobytes(), 1)  # level 6: 2x the time, 1% smaller
    height, width = samples_hw.shape
    return PackedPixels(data, int(width), int(height), float(scale), float(offset), float(step))


def pixels_key(packed: PackedPixels) -> str:
    """A short content key of packed pixels (the browser caches decoded views by it)."""
    digest = hashlib.blake2b(packed.data, digest_size=10)
    digest.update(f"{packed.width}x{packed.height}:{packed.offset!r}:{packed.step!r}".encode())
    return digest.hexdigest()


# --- presets -----------------------------------------------------------------------------------------------


def view_presets(image: MammogramDicom) -> list[dict[str, Any]]:
    """The file's VOI presets named as the file names them (windows, then VOI LUTs), then FULL RANGE (the
    non-padding values' min to max); the browser applies them to the modality values it is sent."""
    function = image.voi_lut_function.upper()
    out: list[dict[str, Any]] = [
        {"name": w.name, "center": float(w.center), "width": float(w.width), "function": function}
        for w in image.window_presets
    ]
    for lut in image.voi_luts:
        top = float((1 << lut.bits) - 1)
        data = [round(float(v) / top, 5) for v in np.asarray(lut.data, dtype=np.float64)]
        out.append({"name": lut.name, "lut": {"first": float(lut.first_mapped), "data": data}})
    values = modality_values(image)
    padding = padding_mask(image)
    shown = values[~padding] if padding.any() else values.ravel()
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    out.append(
        {
            "name": FULL_RANGE,
            "center": (low + high) / 2,
            "width": max(high - low, 1e-6),
            "function": "LINEAR_EXACT",
        }
    )
    return out


# --- overlays ----------------------------------------------------------------------------------------------


def heatmap_colours(colour_map: str, diverging: bool) -> list[list[int]]:
    """256 RGB colours: a sequential map from 0 to vmax, or the diverging map from -vmax (index 0, deep
    blue) through zero (the light ends, never drawn) to +vmax (index 255, red), as overlays.py blends."""
    if diverging:
        level = np.linspace(-1.0, 1.0, 256, dtype=np.float32)[:, None]
        magnitude = np.abs(level)
        warm = WARM_LOW + (WARM_HIGH - WARM_LOW) * magnitude
        cool = COOL_LOW + (COOL_HIGH - COOL_LOW) * magnitude
        rgb = np.where(level > 0, warm, cool)
    else:
        ramp = np.arange(256, dtype=np.uint8)[:, None]
        rgb = cv2.cvtColor(cv2.applyColorMap(ramp, COLOUR_MAPS[colour_map]), cv2.COLOR_BGR2RGB)[:, 0]
    return np.clip(np.rint(rgb), 0, 255).astype(int).reshape(256, 3).tolist()


def grid_box(transform: FrameTransform) -> list[float]:
    """The model frame's corners (0, 0) and (W, H) in original pixels: where the token grid lies."""
    height, width = transform.frame_size
    box = transform.boxes_to_original(np.array([[0.0, 0.0, width, height]]))[0]
    return [float(v) for v in box]


def _token_map(bundle: Bundle, position: int, overlay: Overlay) -> np.ndarray | None:
    if overlay.kind == "evidence":
        return head_evidence(bundle, position, str(overlay.head))
    if overlay.kind == "latent":
        return bundle.latent_map(position, int(overlay.latent))  # type: ignore[arg-type]
    return None


def _heatmap(token_map_hw: np.ndarray | None, overlay: Overlay, vmax: float | None) -> dict[str, Any] | None:
    if token_map_hw is None:
        return None
    diverging = overlay.kind == "evidence"
    peak = (
        vmax if vmax is not None else float(np.abs(token_map_hw).max() if diverging else token_map_hw.max())
    )
    return {
        "values": [round(float(v), 6) for v in np.asarray(token_map_hw, np.float64).ravel()],
        "diverging": diverging,
        "vmax": float(max(peak, 0.0)),
        "colours": heatmap_colours(overlay.colour_map, diverging),
        "threshold": float(overlay.threshold),
        "opacity": float(overlay.opacity),
    }


def finding_colour(kind: str) -> str:
    return colour_hex(FINDING_COLOURS.get(kind, DEFAULT_COLOUR))


def _caption(bundle: Bundle, position: int) -> str:
    table = view_probabilities(bundle, position)
    return " · ".join(f"{row.head} {row.original:.2f}" for row in table.itertuples())


# --- the spec ----------------------------------------------------------------------------------------------


def empty_slot(laterality: str, view: str) -> dict[str, Any]:
    """A slot the study lacks: drawn empty with its name."""
    return {
        "name": f"{laterality} {view}", "laterality": laterality, "view": view, "present": False,
        "position": None, "image_key": "", "width": 0, "height": 0, "scale": 1.0, "flip": False,
        "anchor": "right" if laterality == "R" else "left", "values": {"offset": 0.0, "step": 1.0},
        "monochrome1": False, "presets": [], "default_preset": 0, "grid": None, "heatmap": None,
        "boxes": [], "marks": [], "caption": "", "notes": [],
    }  # fmt: skip


def slot_spec(
    laterality: str,
    view: str,
    image: MammogramDicom,
    packed: PackedPixels,
    *,
    position: int | None = None,
    transform: FrameTransform | None = None,
    grid: tuple[int, int] | None = None,
    token_map: np.ndarray | None = None,
    overlay: Overlay = NO_OVERLAY,
    vmax: float | None = None,
    boxes: Sequence[tuple[str, Sequence[float]]] = (),
    marks: Sequence[Mark] = (),
    caption: str = "",
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """One present view's slot: ``image`` (decoded) and ``packed`` (its ``view_pixels``); the model
    ``grid`` (rows, cols) over the frame of ``transform``; ``token_map`` [rows, cols] shown as ``overlay``
    scaled to ``vmax`` (default its own peak); ground-truth ``boxes`` as (kind, box) and CAD ``marks``,
    all in original pixels."""
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    if transform is not None and tuple(transform.original_shape) != tuple(image.stored.shape):
        raise BundleError(
            f"the {laterality} {view} image is {image.stored.shape[0]}x{image.stored.shape[1]} but was analysed at "
            f"{transform.original_shape[0]}x{transform.original_shape[1]}; re-analyse or restore the file"
        )
    if token_map is not None and (grid is None or tuple(np.shape(token_map)) != tuple(grid)):
        raise ValueError(f"a token map {np.shape(token_map)} needs the grid it lies on (got {grid})")
    # the side is read from the file's default display, as render_view does: invert never changes it
    flip = needs_display_flip(display_image(image, None), laterality)
    grid_spec = None
    if grid is not None and transform is not None:
        grid_spec = {"rows": int(grid[0]), "cols": int(grid[1]), "box": grid_box(transform)}
    return {
        "name": f"{laterality} {view}",
        "laterality": laterality,
        "view": view,
        "present": True,
        "position": None if position is None else int(position),
        "image_key": pixels_key(packed),
        "width": packed.width,
        "height": packed.height,
        "scale": packed.scale,
        "flip": bool(flip),
        "anchor": "right" if laterality == "R" else "left",
        "values": {"offset": packed.offset, "step": packed.step},
        "monochrome1": image.photometric == "MONOCHROME1",
        "presets": view_presets(image),
        "default_preset": 0,
        "grid": grid_spec,
        "heatmap": _heatmap(token_map, overlay, vmax) if grid_spec is not None else None,
        "boxes": [
            {
                "box": [float(v) for v in box],
                "kind": str(kind),
                "colour": finding_colour(str(kind)),
                "label": str(kind),
            }
            for kind, box in boxes
        ],
        "marks": [
            {
                "box": [float(v) for v in m.box],
                "head": str(m.head),
                "score": float(m.score),
                "label": f"{m.head} {m.score:.0%}",
                "colour": colour_hex(MARK_COLOUR),
            }
            for m in marks
        ],
        "caption": str(caption),
        "notes": [str(n) for n in notes],
    }


def assemble_spec(
    study: str,
    slots: Sequence[dict[str, Any]],
    *,
    overlay: Overlay = NO_OVERLAY,
    vmax: float | None = None,
    nonce: int = 0,
    selected: int = 0,
    box_kinds: Sequence[str] = (),
) -> dict[str, Any]:
    """The spec of four slots in hanging order, with the legend (``box_kinds``: the categories named
    besides those drawn) and the keys."""
    if [(s["laterality"], s["view"]) for s in slots] != list(HANGING_ORDER):
        raise BundleError(
            "a hanging has four views in the order R CC, L CC, R MLO, L MLO (cases.hanging_views)"
        )
    if not 0 <= selected <= 3:
        raise ValueError(f"selected is a slot 0..3, got {selected}")
    return {
        "study": str(study),
        "nonce": int(nonce),
        "selected": int(selected),
        "slots": list(slots),
        "legend": _legend(slots, box_kinds, overlay, vmax),
        "keys": dict(KEYS),
    }


def hanging_spec(
    bundle: Bundle,
    study: str,
    views: Sequence[HangingView],
    images: Sequence[MammogramDicom | None],
    pixels: Sequence[PackedPixels | None],
    *,
    overlay: Overlay = NO_OVERLAY,
    kinds: tuple[str, ...] | None = None,
    marks: Sequence[Mark] = (),
    nonce: int = 0,
    selected: int = 0,
    captions: dict[int, str] | None = None,
    notes: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """The viewer component's spec for one study of a bundle (see docs/viewer.md): ``views`` in hanging
    order (``cases.hanging_views``), each present view's decoded ``images[i]`` and ``pixels[i]``
    (``view_pixels``); the ``overlay`` (one colour scale for the study); ground-truth boxes of ``kinds``
    (None: all); the ``marks`` (each drawn on the view at its position); ``captions`` / ``notes`` per
    position (default caption: each head's probability)."""
    if len(views) != 4 or len(images) != 4 or len(pixels) != 4:
        raise BundleError(
            "give four hanging views, and one image and packed pixel set each (None where absent)"
        )
    captions, notes = captions or {}, notes or {}
    maps = {
        v.position: _token_map(bundle, v.position, overlay) for v in views if v.position is not None
    }  # fmt: skip
    vmax = overlay.vmax  # one colour scale for the study: its largest value (magnitude for evidence)
    if overlay.kind != "none" and vmax is None:
        vmax = max((float(np.abs(m).max()) for m in maps.values() if m is not None), default=0.0)
    slots = []
    for view, image, packed in zip(views, images, pixels, strict=True):
        if view.position is None or image is None or packed is None:
            slots.append(empty_slot(view.laterality, view.view))
            continue
        position = int(view.position)
        boxes = view_boxes(bundle, position, kinds)
        slots.append(
            slot_spec(
                view.laterality, view.view, image, packed, position=position,
                transform=transform_from_json(bundle.images.iloc[position]["transform"]), grid=bundle.grid,
                token_map=maps[position], overlay=overlay, vmax=vmax,
                boxes=[(b.kind, (b.xmin, b.ymin, b.xmax, b.ymax)) for b in boxes.itertuples()],
                marks=[m for m in marks if m.position == position],
                caption=captions.get(position, _caption(bundle, position)), notes=notes.get(position, ()),
            )
        )  # fmt: skip
    # the ground-truth colours, named even on views without such a box; none for an unlabelled bundle
    kinds_named = [k for k in FINDING_COLOURS if k in bundle.concepts] if bundle.labelled else []
    return assemble_spec(
        study, slots, overlay=overlay, vmax=vmax, nonce=nonce, selected=selected, box_kinds=kinds_named
    )


def _legend(
    slots: Sequence[dict[str, Any]], box_kinds: Sequence[str], overlay: Overlay, vmax: float | None
) -> list[dict[str, Any]]:
    drawn = [b["kind"] for s in slots for b in s["boxes"]]
    kinds = list(dict.fromkeys([*box_kinds, *drawn]))
    legend: list[dict[str, Any]] = [
        {"kind": "box", "label": kind, "colour": finding_colour(kind), "colours": None,
         "min": "", "max": ""}
        for kind in kinds
    ]  # fmt: skip
    if any(s["marks"] for s in slots):
        legend.append(
            {"kind": "mark", "label": "CAD mark (calibrated probability)", "colour": colour_hex(MARK_COLOUR),
             "colours": None, "min": "", "max": ""}
        )  # fmt: skip
    if overlay.kind != "none":
        peaks = [s["heatmap"]["vmax"] for s in slots if s.get("heatmap")]
        peak = float(vmax) if vmax is not None else max(peaks, default=0.0)
        diverging = overlay.kind == "evidence"
        label = f"evidence for {overlay.head}" if diverging else f"latent {overlay.latent}"
        legend.append(
            {"kind": "scale", "label": label, "colour": None,
             "colours": heatmap_colours(overlay.colour_map, diverging),
             "min": f"{-peak:.3g}" if diverging and peak else "0",
             "max": f"{peak:+.3g}" if diverging and peak else f"{peak:.3g}"}
        )  # fmt: skip
    return legend
