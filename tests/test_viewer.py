"""A case view as the reader sees it: inverting changes grey levels only, never which way a view hangs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammo_sae.bundle.viewer import ViewOptions, render_view
from mammo_sae.data.dicom import read_mammogram, write_mammogram


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
