"""A case view as the reader sees it: inverting changes grey levels only, never which way a view hangs; a
signed evidence map is drawn even where it is all negative; each token's clickable rectangle lies exactly
where its heat is painted, on mirrored views too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammo_sae.bundle.viewer import ViewOptions, render_view, token_rects
from mammo_sae.data.dicom import read_mammogram, write_mammogram
from mammo_sae.data.frames import AxisMap, FrameTransform


def breast_on_the_left(path: Path) -> Path:
    """A 200 x 120 view whose tissue (bright) fills the left two thirds, a chest wall on the left."""
    stored = np.zeros((200, 120), dtype=np.uint16)
    stored[:, :80] = np.linspace(3000, 1200, 80, dtype=np.uint16)[None, :]
    write_mammogram(path, stored, laterality="L", view="CC")
    return path


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_invert_changes_grey_levels_only_never_the_mirroring(tmp_path: Path, laterality: str) -> None:
    image = read_mammogram(breast_on_the_left(tmp_path / "view.dcm"))
    plain = render_view(image, laterality, ViewOptions(preset="full range", show_boxes=False))
    inverted = render_view(image, laterality, ViewOptions(preset="full range", show_boxes=False, invert=True))
    assert plain.flipped == (laterality == "R"), "an R view hangs with its chest wall on the right"
    assert inverted.flipped == plain.flipped, "inverting must not mirror the view"
    assert np.array_equal(inverted.pixels, 255 - plain.pixels), "the same pixels, grey levels inverted"


def test_an_unhung_view_is_never_mirrored(tmp_path: Path) -> None:
    image = read_mammogram(breast_on_the_left(tmp_path / "view.dcm"))
    for invert in (False, True):
        view = render_view(image, "R", ViewOptions(preset="full range", invert=invert, hang=False))
        assert not view.flipped


def crop_transform() -> FrameTransform:
    """The 200 x 120 view cropped to columns 0..79 and rows 10..189, into a 60 x 40 frame (4 x 4 tokens)."""
    return FrameTransform(
        original_shape=(200, 120),
        x=AxisMap(offset=0, kept=np.arange(0, 80), size=40),
        y=AxisMap(offset=10, kept=np.arange(0, 180), size=60),
    )


@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("token", [0, 5, 15])
def test_each_token_rectangle_covers_where_its_heat_is_painted(
    tmp_path: Path, laterality: str, token: int
) -> None:
    image = read_mammogram(breast_on_the_left(tmp_path / "view.dcm"))
    transform = crop_transform()
    token_map = np.zeros((4, 4), np.float32)
    token_map.flat[token] = 1.0
    options = ViewOptions(preset="full range", show_boxes=False, max_height=100, threshold=0.5, opacity=1.0)
    plain = render_view(image, laterality, options)
    view = render_view(image, laterality, options, token_map=token_map, transform=transform)
    ys, xs = np.nonzero((view.pixels != plain.pixels).any(axis=2))
    rect = token_rects(transform, (4, 4), view.scale, view.flipped).set_index("token").loc[token]
    assert view.flipped == (laterality == "R")
    assert rect.x0 - 1 <= xs.min() and xs.max() + 1 <= rect.x1 + 1, (xs.min(), xs.max(), rect.x0, rect.x1)
    assert rect.y0 - 1 <= ys.min() and ys.max() + 1 <= rect.y1 + 1, (ys.min(), ys.max(), rect.y0, rect.y1)


def test_token_rectangles_tile_the_crop_and_leave_out_nothing_inside(tmp_path: Path) -> None:
    rects = token_rects(crop_transform(), (4, 4), 0.5, flipped=False)
    assert len(rects) == 16
    area = ((rects.x1 - rects.x0) * (rects.y1 - rects.y0)).sum()
    assert area == pytest.approx(80 * 180 * 0.25), "the footprints tile the kept crop exactly"


def test_an_all_negative_evidence_map_is_drawn(tmp_path: Path) -> None:
    image = read_mammogram(breast_on_the_left(tmp_path / "view.dcm"))
    options = ViewOptions(preset="full range", show_boxes=False, threshold=0.0)
    plain = render_view(image, "L", options)
    negative = np.full((4, 4), -1.0, np.float32)
    latent_path = render_view(image, "L", options, token_map=negative, transform=crop_transform())
    evidence = render_view(
        image, "L", options, token_map=negative, transform=crop_transform(), diverging=True
    )
    assert np.array_equal(latent_path.pixels, plain.pixels), "a latent map is never negative: nothing drawn"
    assert evidence.pixels[50, 40, 2] > evidence.pixels[50, 40, 0], "the evidence path draws it cool"
