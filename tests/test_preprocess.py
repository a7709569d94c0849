"""Mammo-CLIP preprocessing: bit-exact steps, the breast crop rule and box transforms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mammo_sae.core.errors import DataError
from mammo_sae.data.frames import AxisMap, FrameTransform, flip_boxes_horizontally, needs_display_flip
from mammo_sae.data.preprocess import (
    PIXEL_MEAN,
    PIXEL_STD,
    breast_extent,
    model_input,
    preprocess,
    run_scores,
    to_uint8,
)


def naive_run_scores(marked: list[bool]) -> list[int]:
    """Oracle written from the FACTS.md 3 wording, position by position."""
    n = len(marked)
    out = []
    for i, m in enumerate(marked):
        if not m:
            out.append(-1)
            continue
        lo = i
        while lo > 0 and marked[lo - 1]:
            lo -= 1
        hi = i
        while hi < n - 1 and marked[hi + 1]:
            hi += 1
        length = hi - lo + 1
        out.append(length - (lo == 0) - (hi == n - 1))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_run_scores_match_the_reference_counting(marked: list[bool]) -> None:
    assert run_scores(np.array(marked)).tolist() == naive_run_scores(marked)


def test_interior_run_beats_an_edge_run_of_equal_length() -> None:
    marked = np.array([1, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    scores = run_scores(marked)
    assert np.flatnonzero(scores == scores.max()).tolist() == [4, 5, 6]


def synthetic_breast(
    height: int = 400, width: int = 300, chest_wall: str = "left", seed: int = 0
) -> np.ndarray:
    """A 12-bit image: noisy half-disc of tissue against one edge, dark background, a bright label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cx = 0 if chest_wall == "left" else width - 1
    inside = ((xx - cx) / (0.7 * width)) ** 2 + ((yy - height / 2) / (0.42 * height)) ** 2 < 1
    img = np.where(inside, 1800 + rng.normal(0, 300, (height, width)), 60 + rng.normal(0, 2, (height, width)))
    return np.clip(img, 0, 4095).astype(np.uint16)


def test_to_uint8_truncates_after_float32_min_max() -> None:
    stored = np.zeros((13, 13), dtype=np.uint16)
    stored[7, 7] = 1000  # the maximum inside the 5-px border
    stored[6, 6] = 999  # 999/1000*255 = 254.745 -> 254: truncated, not rounded
    stored[5, 7] = 2  # 2/1000*255 = 0.51 -> 0
    stored[0, 0] = 4000  # in the border: must not count
    out = to_uint8(stored, "MONOCHROME2")
    assert out.shape == (3, 3)
    assert (out[2, 2], out[1, 1], out[0, 2], out[0, 0]) == (255, 254, 0, 0)


def test_to_uint8_matches_an_explicit_float32_formula() -> None:
    stored = synthetic_breast()
    crop = stored[5:-5, 5:-5].astype(np.float32)
    expected = (((crop - crop.min()) / (crop - crop.min()).max()) * np.float32(255)).astype(np.uint8)
    assert np.array_equal(to_uint8(stored, "MONOCHROME2"), expected)


def test_monochrome1_is_inverted_to_the_same_picture() -> None:
    stored = synthetic_breast()
    inverted = (4095 - stored).astype(np.uint16)
    assert np.array_equal(to_uint8(stored, "MONOCHROME2"), to_uint8(inverted, "MONOCHROME1"))


@pytest.mark.parametrize("bad", ["RGB", "PALETTE COLOR"])
def test_non_greyscale_photometric_is_refused(bad: str) -> None:
    with pytest.raises(DataError, match="greyscale"):
        to_uint8(synthetic_breast(), bad)


def test_constant_image_is_refused_with_a_clear_error() -> None:
    with pytest.raises(DataError, match="constant"):
        to_uint8(np.full((50, 50), 7, dtype=np.uint16), "MONOCHROME2")


@pytest.mark.parametrize("chest_wall", ["left", "right"])
def test_breast_extent_keeps_the_tissue_and_drops_background(chest_wall: str) -> None:
    img8 = to_uint8(synthetic_breast(chest_wall=chest_wall), "MONOCHROME2")
    rows, cols = breast_extent(img8)
    tissue = img8 > 40
    tissue_cols = np.flatnonzero(tissue[100:300].any(axis=0))
    assert cols[0] <= tissue_cols.min() + 1 and cols[-1] >= tissue_cols.max() - 1
    assert len(cols) < img8.shape[1] and len(rows) < img8.shape[0]
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)


def test_preprocess_produces_the_frame_and_matches_inter_area_of_the_crop() -> None:
    stored = synthetic_breast()
    result = preprocess(stored, "MONOCHROME2")
    assert result.png.shape == (1520, 912) and result.png.dtype == np.uint8
    img8 = to_uint8(stored, "MONOCHROME2")
    rows, cols = breast_extent(img8)
    expected = cv2.resize(
        img8[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], (912, 1520), interpolation=cv2.INTER_AREA
    )
    assert np.array_equal(result.png, expected)


def test_box_round_trip_within_one_pixel() -> None:
    result = preprocess(synthetic_breast(), "MONOCHROME2")
    rng = np.random.default_rng(1)
    x0, y0 = rng.uniform(10, 150, 50), rng.uniform(10, 300, 50)
    boxes = np.stack([x0, y0, x0 + rng.uniform(5, 80, 50), y0 + rng.uniform(5, 80, 50)], axis=1)
    back = result.transform.boxes_to_original(result.transform.boxes_to_frame(boxes))
    assert np.max(np.abs(back - boxes)) < 1.0


def test_box_transform_is_the_mammoclip_shift_and_scale() -> None:
    result = preprocess(synthetic_breast(), "MONOCHROME2")
    t = result.transform
    xmin, ymin, _, _ = t.crop_box
    crop_w, crop_h = len(t.x.kept), len(t.y.kept)
    box = np.array([[100.0, 120.0, 140.0, 180.0]])
    expected = [
        (100 - xmin) * 912 / crop_w,
        (120 - ymin) * 1520 / crop_h,
        (140 - xmin) * 912 / crop_w,
        (180 - ymin) * 1520 / crop_h,
    ]
    assert np.allclose(t.boxes_to_frame(box)[0], expected)


def test_a_bright_spot_lands_where_the_transform_says() -> None:
    stored = synthetic_breast()
    stored[200:204, 60:64] = 4095
    result = preprocess(stored, "MONOCHROME2")
    centre = result.transform.points_to_frame(np.array([[62.0, 202.0]]))[0]
    ys, xs = np.nonzero(result.png >= 250)
    assert abs(xs.mean() + 0.5 - centre[0]) < 1.5 and abs(ys.mean() + 0.5 - centre[1]) < 1.5


def test_non_contiguous_axis_maps_monotonically_and_round_trips_kept_pixels() -> None:
    axis = AxisMap(offset=5, kept=np.array([0, 1, 2, 10, 11, 12, 13]), size=70)
    original = np.array([5.0, 6.5, 7.9, 15.0, 17.5, 18.99])
    frame = axis.to_frame(original)
    assert np.all(np.diff(frame) > 0)
    assert np.allclose(axis.to_original(frame), original)
    assert np.allclose(axis.to_frame(np.array([4.0, 20.0])), [-10.0, 80.0])


def test_flip_boxes_is_an_involution() -> None:
    boxes = np.array([[10.0, 5.0, 30.0, 25.0]])
    flipped = flip_boxes_horizontally(boxes, 100)
    assert flipped.tolist() == [[70.0, 5.0, 90.0, 25.0]]
    assert np.array_equal(flip_boxes_horizontally(flipped, 100), boxes)


def test_display_flip_follows_laterality() -> None:
    left_wall = to_uint8(synthetic_breast(chest_wall="left"), "MONOCHROME2")
    assert not needs_display_flip(left_wall, "L")
    assert needs_display_flip(left_wall, "R")
    with pytest.raises(ValueError, match="laterality"):
        needs_display_flip(left_wall, "X")


def test_model_input_is_three_normalised_channels() -> None:
    png = np.tile(np.arange(0, 200, dtype=np.uint8), (10, 1))
    x = model_input(png)
    assert x.shape == (3, 10, 200) and x.dtype == np.float32
    assert np.array_equal(x[0], x[2])
    assert np.isclose(x.min(), -PIXEL_MEAN / PIXEL_STD, atol=1e-6)
    assert np.isclose(x.max(), (1 - PIXEL_MEAN) / PIXEL_STD, atol=1e-6)


def test_transform_reports_frame_size() -> None:
    t = FrameTransform(
        original_shape=(100, 80),
        x=AxisMap(offset=5, kept=np.arange(10, 60), size=912),
        y=AxisMap(offset=5, kept=np.arange(0, 90), size=1520),
    )
    assert t.frame_size == (1520, 912)
    assert t.crop_box == (15.0, 5.0, 65.0, 95.0)
