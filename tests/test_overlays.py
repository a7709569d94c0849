"""Heatmaps carried back to original pixels, blended overlays (sequential and diverging), gallery crops,
zoom windows and images as inline data URLs."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_sae.bundle.overlays import (
    blend_diverging,
    blend_heatmap,
    frame_heatmap,
    heatmap_on_original,
    image_data_url,
    patch_crop,
    zoom_region,
)
from mammo_sae.data.frames import AxisMap, FrameTransform


def transform(shape=(1000, 800), crop_x=(100, 700), crop_y=(50, 950), frame=(150, 90)) -> FrameTransform:
    return FrameTransform(
        original_shape=shape,
        x=AxisMap(offset=5, kept=np.arange(*crop_x), size=frame[1]),
        y=AxisMap(offset=5, kept=np.arange(*crop_y), size=frame[0]),
    )


def test_a_hot_token_lands_where_the_transform_puts_it() -> None:
    t = transform()
    token_map = np.zeros((15, 9), np.float32)
    token_map[4, 6] = 1.0
    heat = heatmap_on_original(token_map, t)
    assert heat.shape == t.original_shape
    peak_y, peak_x = np.unravel_index(np.argmax(heat), heat.shape)
    # the token's centre in frame pixels, mapped back to original pixels
    expected = t.points_to_original(np.array([[(6 + 0.5) * 10, (4 + 0.5) * 10]]))[0]
    assert abs(peak_x + 0.5 - expected[0]) <= 4 and abs(peak_y + 0.5 - expected[1]) <= 6
    assert heat[:, :100].max() == 0 and heat[:50].max() == 0, "nothing outside the breast crop"


def test_display_scale_gives_the_same_map_smaller() -> None:
    t = transform()
    token_map = np.add.outer(np.linspace(0, 1, 15), np.linspace(0, 1, 9)).astype(np.float32)
    full = heatmap_on_original(token_map, t)
    half = heatmap_on_original(token_map, t, scale=0.5)
    assert half.shape == (500, 400)
    pooled = full.reshape(500, 2, 400, 2).mean(axis=(1, 3))  # what the half-size pixels cover
    inside = (slice(40, 470), slice(60, 340))  # away from the crop's edges
    assert np.allclose(half[inside], pooled[inside], atol=0.02)


def test_frame_heatmap_keeps_a_constant_map_constant() -> None:
    heat = frame_heatmap(np.full((4, 3), 2.5, np.float32), (40, 30))
    assert heat.shape == (40, 30) and np.allclose(heat, 2.5)


def test_blend_colours_only_where_the_map_reaches_the_threshold() -> None:
    image = np.full((20, 20), 100, np.uint8)
    heat = np.zeros((20, 20), np.float32)
    heat[5:10, 5:10] = 1.0
    heat[15:, 15:] = 0.2
    out = blend_heatmap(image, heat, opacity=0.6, threshold=0.5)
    assert out.shape == (20, 20, 3)
    assert (out[7, 7] != 100).any() and (out[17, 17] == 100).all() and (out[0, 0] == 100).all()
    assert np.array_equal(blend_heatmap(image, np.zeros_like(heat)), np.repeat(image[:, :, None], 3, 2))
    with pytest.raises(ValueError, match="colour map"):
        blend_heatmap(image, heat, colour_map="rainbow")


def test_patch_crop_is_square_with_the_patch_outlined_even_at_the_border() -> None:
    image = np.zeros((100, 80), np.uint8)
    crop = patch_crop(image, (0, 0, 10, 10), size=64)
    assert crop.shape == (64, 64, 3)
    assert (crop == (255, 214, 10)).all(axis=2).any(), "the outline is drawn"


def test_zoom_window_stays_inside_the_image() -> None:
    image = np.arange(100 * 80).reshape(100, 80)
    window = zoom_region(image, (78, 2), 10)
    assert window.shape == (20, 20) and window[0, -1] == image[0, 79]


def test_diverging_blend_is_warm_for_positive_cool_for_negative_and_clear_at_zero() -> None:
    image = np.full((20, 20), 128, np.uint8)
    heat = np.zeros((20, 20), np.float32)
    heat[2:6, 2:6] = 1.0
    heat[10:14, 10:14] = -1.0
    heat[16:, 16:] = 0.05  # below the threshold
    out = blend_diverging(image, heat, opacity=0.8, threshold=0.1)
    warm, cool = out[3, 3].astype(int), out[11, 11].astype(int)
    assert warm[0] > warm[2] + 50, "positive evidence is warm (red over blue)"
    assert cool[2] > cool[0] + 50, "negative evidence is cool (blue over red)"
    assert (out[0, 0] == 128).all() and (out[18, 18] == 128).all(), "zero and sub-threshold stay clear"
    half = blend_diverging(image, heat * 0.5, opacity=0.8, vmax=1.0)
    assert abs(int(half[3, 3, 0]) - 128) < abs(int(out[3, 3, 0]) - 128), "weaker evidence is fainter"
    flipped = blend_diverging(image, -heat, opacity=0.8, threshold=0.1)
    assert np.array_equal(flipped[3, 3], cool) and np.array_equal(flipped[11, 11], warm), (
        "the sign alone decides"
    )
    assert np.array_equal(blend_diverging(image, np.zeros_like(heat)), np.repeat(image[:, :, None], 3, 2))


def test_an_all_negative_map_is_drawn_on_its_own_scale() -> None:
    image = np.full((10, 10), 100, np.uint8)
    heat = np.full((10, 10), -0.2, np.float32)
    out = blend_diverging(image, heat, opacity=1.0)
    assert (out[..., 2] > out[..., 0]).all(), "scaled to its largest magnitude, every pixel is full cool"


def test_a_data_url_carries_the_image_itself() -> None:
    import base64

    import cv2

    image = np.zeros((48, 32, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, 32)[None, :]  # smooth grey levels with a coloured overlay
    image[..., 1] = np.linspace(0, 255, 48)[:, None]
    image[10:20, 10:20] = (230, 40, 30)
    url = image_data_url(image)
    assert url.startswith("data:image/jpeg;base64,")
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert np.abs(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(int) - image).mean() < 3
