"""Viewer rendering: fitting to a height and drawing boxes where they belong."""

from __future__ import annotations

import numpy as np

from mammo_sae.bundle.render import draw_boxes, fit_height, to_rgb


def test_fit_height_downscales_only() -> None:
    image = np.zeros((400, 200), dtype=np.uint8)
    small, scale = fit_height(image, 100)
    assert small.shape == (100, 50) and scale == 0.25
    same, scale = fit_height(image, 1000)
    assert same is image and scale == 1.0


def test_draw_boxes_marks_the_box_edges_and_leaves_the_rest() -> None:
    image = np.zeros((100, 100), dtype=np.uint8)
    out = draw_boxes(image, np.array([[20.0, 30.0, 60.0, 70.0]]), scale=0.5, colours=[(255, 0, 0)])
    assert out.shape == (100, 100, 3)
    assert out[15, 20, 0] == 255 and out[15, 20, 1] == 0  # the top edge at y = 30 * 0.5
    assert out[25, 20].sum() == 0  # inside the box stays untouched
    assert image.sum() == 0  # the input is not modified


def test_non_finite_boxes_are_skipped() -> None:
    out = draw_boxes(np.zeros((10, 10), dtype=np.uint8), np.array([[np.nan, 1, 2, 3]]))
    assert out.sum() == 0
    assert np.array_equal(to_rgb(out), out)
