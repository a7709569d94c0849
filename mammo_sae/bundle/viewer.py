"""One view of a case as a reader sees it: windowed, optionally inverted, a latent's heatmap blended in,
ground-truth and predicted boxes drawn, then mirrored for the hanging protocol (breasts facing each
other). Returns pixels; the app only shows them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mammo_sae.analysis.localisation import MapThreshold, predicted_boxes
from mammo_sae.bundle.cases import view_boxes
from mammo_sae.bundle.overlays import blend_heatmap, frame_heatmap, heatmap_on_original
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
) -> RenderedView:
    """Draw one view; ``token_map`` (with the view's ``transform``) adds a latent's heatmap."""
    pixels = display_image(image, options.preset)
    # The side is read from the grey levels as the file shows them: inverting changes grey levels, never
    # which way a view hangs.
    flip = options.hang and needs_display_flip(pixels, laterality)
    if options.invert:
        pixels = 255 - pixels
    small, scale = fit_height(pixels, options.max_height)
    out = np.repeat(small[:, :, None], 3, axis=2)
    if token_map is not None and transform is not None and float(np.max(token_map)) > 0:
        heat = heatmap_on_original(token_map, transform, scale)
        heat = heat[: out.shape[0], : out.shape[1]]
        if heat.shape != out.shape[:2]:
            heat = np.pad(heat, ((0, out.shape[0] - heat.shape[0]), (0, out.shape[1] - heat.shape[1])))
        out = blend_heatmap(
            out, heat, colour_map=options.colour_map, opacity=options.opacity, threshold=options.threshold
        )
        if options.show_predicted:
            frame_boxes, _ = predicted_boxes(
                frame_heatmap(token_map, transform.frame_size),
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
) -> RenderedView:
    """One analysed view of a bundle (row ``position``, pixels ``image``) with its ground-truth boxes of
    ``kinds`` and, when ``latent`` is given, that latent's heatmap."""
    row = bundle.images.iloc[position]
    boxes = view_boxes(bundle, position, kinds)
    return render_view(
        image,
        row["laterality"],
        options,
        boxes=boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy(),
        box_kinds=boxes["kind"].tolist(),
        token_map=bundle.latent_map(position, latent) if latent is not None else None,
        transform=transform_from_json(row["transform"]),
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
