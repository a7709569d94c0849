"""One view of a case as a reader sees it: windowed, optionally inverted, a token map blended in (a latent's
activation on a sequential colour map, or a head's signed evidence on a diverging one, both carried to
original pixels through the same frame transform), ground-truth and predicted boxes drawn, then mirrored
for the hanging protocol (breasts facing each other). Returns pixels, and where each token lies on them
(for clicking a view); the app only shows them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.localisation import MapThreshold, predicted_boxes
from mammo_sae.bundle.cases import view_boxes
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.overlays import blend_diverging, blend_heatmap, frame_heatmap, heatmap_on_original
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.render import DEFAULT_COLOUR, FINDING_COLOURS, draw_boxes, fit_height
from mammo_sae.data.dicom import MammogramDicom, display_image
from mammo_sae.data.frames import FrameTransform, needs_display_flip, transform_from_json

PREDICTED_COLOUR = (57, 255, 20)


@dataclass(frozen=True)
class ViewOptions:
    preset: str | None = None  # a window preset name; None = the file's first preset
    invert: bool = False  # grey levels only: the mirroring does not depend on it
    max_height: int = 560
    show_boxes: bool = True
    colour_map: str = "inferno"
    opacity: float = 0.45
    threshold: float = 0.3  # fraction of the map's max below which the heatmap is not drawn
    show_predicted: bool = False
    hang: bool = True  # mirror so that R views face right and L views face left


@dataclass(frozen=True)
class RenderedView:
    pixels: np.ndarray  # RGB
    scale: float  # display pixels per original pixel
    flipped: bool


def render_view(
    image: MammogramDicom,
    laterality: str,
    options: ViewOptions,
    *,
    boxes: np.ndarray | None = None,
    box_kinds: list[str] | None = None,
    token_map: np.ndarray | None = None,
    transform: FrameTransform | None = None,
    diverging: bool = False,
    vmax: float | None = None,
) -> RenderedView:
    """Draw one view; ``token_map`` (with the view's ``transform``) adds a latent's heatmap, or, with
    ``diverging``, a signed map (evidence) centred at zero and scaled to ``vmax`` (default its own largest
    magnitude)."""
    pixels = display_image(image, options.preset)
    # The side is read from the grey levels as the file shows them: inverting changes grey levels, never
    # which way a view hangs.
    flip = options.hang and needs_display_flip(pixels, laterality)
    if options.invert:
        pixels = 255 - pixels
    small, scale = fit_height(pixels, options.max_height)
    out = np.repeat(small[:, :, None], 3, axis=2)
    drawn = token_map is not None and float(np.max(np.abs(token_map) if diverging else token_map)) > 0
    if drawn and token_map is not None and transform is not None:
        heat = heatmap_on_original(token_map, transform, scale)
        heat = heat[: out.shape[0], : out.shape[1]]
        if heat.shape != out.shape[:2]:
            heat = np.pad(heat, ((0, out.shape[0] - heat.shape[0]), (0, out.shape[1] - heat.shape[1])))
        if diverging:
            out = blend_diverging(out, heat, opacity=options.opacity, threshold=options.threshold, vmax=vmax)
        else:
            out = blend_heatmap(
                out, heat, colour_map=options.colour_map, opacity=options.opacity, threshold=options.threshold
            )
        positive = np.maximum(token_map, 0)  # predicted boxes: where the map (the evidence for) is strong
        if options.show_predicted and float(positive.max()) > 0:
            frame_boxes, _ = predicted_boxes(
                frame_heatmap(positive, transform.frame_size),
                MapThreshold("fraction", max(options.threshold, 1e-6)),
            )
            if len(frame_boxes):
                out = draw_boxes(
                    out,
                    transform.boxes_to_original(frame_boxes),
                    scale=scale,
                    colours=[PREDICTED_COLOUR] * len(frame_boxes),
                )
    if options.show_boxes and boxes is not None and len(boxes):
        colours = [FINDING_COLOURS.get(kind, DEFAULT_COLOUR) for kind in (box_kinds or [])] or None
        out = draw_boxes(out, boxes, scale=scale, colours=colours)
    if flip:
        out = np.ascontiguousarray(out[:, ::-1])
    return RenderedView(out, scale, flip)


def render_case_view(
    bundle: Bundle,
    position: int,
    image: MammogramDicom,
    options: ViewOptions,
    latent: int | None = None,
    kinds: tuple[str, ...] | None = None,
    *,
    evidence_head: str | None = None,
    vmax: float | None = None,
) -> RenderedView:
    """One analysed view of a bundle (row ``position``, pixels ``image``) with its ground-truth boxes of
    ``kinds`` and either ``latent``'s heatmap or ``evidence_head``'s evidence map (diverging, scaled to
    ``vmax``; BundleError on a bundle without evidence maps)."""
    if latent is not None and evidence_head is not None:
        raise BundleError("a view shows one overlay: a latent's map or a head's evidence, not both")
    row = bundle.images.iloc[position]
    boxes = view_boxes(bundle, position, kinds)
    token_map = bundle.latent_map(position, latent) if latent is not None else None
    if evidence_head is not None:
        token_map = head_evidence(bundle, position, evidence_head)
    return render_view(
        image,
        row["laterality"],
        options,
        boxes=boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy(),
        box_kinds=boxes["kind"].tolist(),
        token_map=token_map,
        transform=transform_from_json(row["transform"]),
        diverging=evidence_head is not None,
        vmax=vmax,
    )


def head_evidence(bundle: Bundle, position: int, head: str) -> np.ndarray:
    """[gh, gw] float32: each token's share of ``head``'s logit on one image (BundleError when the bundle
    predates evidence maps or has no such head)."""
    evidence_hgw = bundle.evidence(position)
    if evidence_hgw is None:
        raise BundleError(
            f"the bundle {bundle.path} predates evidence maps; rebuild it with python -m mammo_sae.analyze"
        )
    tasks = tuple(bundle.heads.tasks)
    if head not in tasks:
        raise BundleError(f"no head {head!r} in this bundle; its heads are {', '.join(tasks)}")
    return evidence_hgw[tasks.index(head)]


def token_rects(
    transform: FrameTransform, grid: tuple[int, int], scale: float, flipped: bool
) -> pd.DataFrame:
    """Where each token's footprint lies on a rendered view (display pixels: original pixels times
    ``scale``, mirrored when the view hangs ``flipped``): columns token, row, col, x0, y0, x1, y1, clipped
    to the image; tokens wholly outside it (frame padding) are left out."""
    gh, gw = grid
    frame_h, frame_w = transform.frame_size
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    frame_boxes = np.stack(
        [cols * frame_w / gw, rows * frame_h / gh, (cols + 1) * frame_w / gw, (rows + 1) * frame_h / gh],
        axis=1,
    )
    boxes = transform.boxes_to_original(frame_boxes)
    height, width = transform.original_shape
    boxes = np.clip(boxes, 0, [width, height, width, height]) * scale
    if flipped:
        boxes[:, [0, 2]] = round(width * scale) - boxes[:, [2, 0]]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return pd.DataFrame(
        {
            "token": np.arange(gh * gw)[keep],
            "row": rows[keep],
            "col": cols[keep],
            "x0": boxes[keep, 0],
            "y0": boxes[keep, 1],
            "x1": boxes[keep, 2],
            "y1": boxes[keep, 3],
        }
    )


def render_live(
    case, latent: int | None, *, colour_map: str = "inferno", opacity: float = 0.45, threshold: float = 0.3
) -> np.ndarray:
    """An uploaded case's model frame (what the network saw) with a latent's heatmap."""
    frame = case.frame
    if latent is None:
        return np.repeat(frame[:, :, None], 3, axis=2)
    heat = frame_heatmap(case.codes.latent_map(0, int(latent)), frame.shape)
    return blend_heatmap(frame, heat, colour_map=colour_map, opacity=opacity, threshold=threshold)
