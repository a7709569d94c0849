"""Bit planes of a model frame: the breast (largest component, holes filled), the skin band (never along
the frame edge), burned-in markers (bright text-like components outside the breast), and exact per-token
shares of each plane."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mammo_sae.core.errors import DataError
from mammo_sae.data.breast_mask import (
    TISSUE_BREAST,
    TISSUE_MARKER,
    TISSUE_SKIN,
    breast_mask,
    detect_markers,
    skin_band,
    tissue_bits,
    token_fractions,
)

H, W = 320, 192
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "regions.py"


def drawn_frame() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A breast against the left frame edge (the chest wall) with a dark hole, "R MLO" burned into the air
    at the top right, and things outside the breast that are not markers: a speck, a solid bright square,
    a long dashed line, a dim text-sized blob. Returns the frame and the text's tight box."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 30, size=(H, W)).astype(np.uint8)  # the noise floor of the air, <= 40
    cv2.ellipse(frame, (0, H // 2), (120, 150), 0, -90, 90, 120, thickness=-1)
    frame[150:160, 40:50] = 10  # a hole (fat darker than the threshold) inside the breast
    text = np.zeros_like(frame)
    cv2.putText(text, "R MLO", (128, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 250, 1, cv2.LINE_AA)
    frame = np.maximum(frame, text)
    ys, xs = np.nonzero(text > 40)
    frame[300:304:2, 180:184] = 255  # a speck: too few pixels
    frame[260:275, 160:175] = 255  # a solid square: too full for text
    frame[230:232, 125:190:2] = 255  # a dashed line: too long for its height
    cv2.putText(frame, "X", (170, 210), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 120, 1)  # dim: below the peak level
    return frame, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_the_breast_is_the_largest_component_with_its_holes_filled() -> None:
    frame, (x0, y0, x1, y1) = drawn_frame()
    breast = breast_mask(frame)
    ellipse = np.zeros((H, W), np.uint8)
    cv2.ellipse(ellipse, (0, H // 2), (120, 150), 0, -90, 90, 1, thickness=-1)
    assert np.array_equal(breast, ellipse.astype(bool))  # hole filled, marker and the rest left out
    assert breast[155, 45] and not breast[y0:y1, x0:x1].any()
    assert not breast_mask(np.full((20, 10), 40, np.uint8)).any()  # 40 is background (<= 40)


def test_markers_are_bright_compact_text_outside_the_breast() -> None:
    frame, truth = drawn_frame()
    boxes = detect_markers(frame, breast_mask(frame))
    assert boxes.shape == (1, 4)
    assert np.array_equal(boxes[0], np.array(truth, dtype=float))  # the words joined into one line
    bits = tissue_bits(frame)
    x0, y0, x1, y1 = truth
    assert ((bits[y0:y1, x0:x1] & TISSUE_MARKER) > 0).all()  # filled as its box
    assert ((bits & TISSUE_MARKER) > 0).sum() == (x1 - x0) * (y1 - y0)
    # the same text inside the breast is tissue, not a marker
    inside = frame.copy()
    cv2.putText(inside, "R MLO", (10, 170), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 250, 1, cv2.LINE_AA)
    assert len(detect_markers(inside, breast_mask(inside))) == 1
    with pytest.raises(DataError, match="does not fit"):
        detect_markers(frame, np.zeros((10, 10), bool))


def test_the_skin_band_follows_the_breast_edge_but_not_the_frame_edge() -> None:
    breast = np.zeros((60, 40), bool)
    breast[:, :25] = True  # touches the top, bottom and left frame edges; one real edge at column 25
    band = skin_band(breast, 4.0)
    assert band[:, 21:25].all() and not band[:, :20].any() and not band[:, 25:].any()
    # against a brute-force Euclidean distance to the nearest background pixel
    rng = np.random.default_rng(0)
    blob = np.zeros((50, 50), np.uint8)
    cv2.circle(blob, (20, 30), 18, 1, -1)
    cv2.circle(blob, (35, 15), 10, 1, -1)
    blob = blob.astype(bool)
    band = skin_band(blob, 5.0)
    by, bx = np.nonzero(~blob)
    for y, x in zip(*np.nonzero(blob), strict=True):
        if rng.random() > 0.3:
            continue
        d = np.sqrt(((by - y) ** 2 + (bx - x) ** 2).min())
        if d <= 4.6:
            assert band[y, x], (y, x, d)
        elif d >= 5.4:
            assert not band[y, x], (y, x, d)
    with pytest.raises(DataError, match="positive"):
        skin_band(blob, 0.0)


def test_tissue_bits_stack_the_planes() -> None:
    frame, _ = drawn_frame()
    bits = tissue_bits(frame, skin_band_px=6)
    breast, skin = (bits & TISSUE_BREAST) > 0, (bits & TISSUE_SKIN) > 0
    assert np.array_equal(breast, breast_mask(frame))
    assert np.array_equal(skin, skin_band(breast, 6))
    assert not (skin & ~breast).any()
    assert skin[H // 2, 115:120].all() and not skin[H // 2, :100].any()
    default = tissue_bits(frame)  # band = 2% of the width: 3.84 px
    assert ((default & TISSUE_SKIN) > 0).sum() < skin.sum()
    assert not tissue_bits(np.zeros((8, 8), np.uint8)).any()
    with pytest.raises(DataError, match="uint8"):
        tissue_bits(frame.astype(np.float32))


def test_token_fractions_match_inter_area_on_an_even_grid() -> None:
    frame, _ = drawn_frame()
    bits = tissue_bits(frame)
    fractions = token_fractions(bits, (20, 12))  # 16 x 16 px footprints
    assert fractions.shape == (3, 20, 12) and fractions.dtype == np.float32
    for k, bit in enumerate((TISSUE_BREAST, TISSUE_SKIN, TISSUE_MARKER)):
        plane = ((bits & bit) > 0).astype(np.float32)
        assert np.allclose(fractions[k], cv2.resize(plane, (12, 20), interpolation=cv2.INTER_AREA), atol=1e-6)


def test_token_fractions_are_exact_on_an_uneven_grid() -> None:
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 8, size=(31, 23)).astype(np.uint8)
    grid = (4, 3)  # footprints 7.75 x 7.667 px
    fractions = token_fractions(bits, grid)
    # brute force: split every pixel into 12 x 12 sub-pixels; footprint edges fall on sub-pixel edges
    up = 12
    for k, bit in enumerate((1, 2, 4)):
        fine = np.kron(((bits & bit) > 0).astype(np.float64), np.ones((up, up)))
        rows, cols = 31 * up // grid[0], 23 * up // grid[1]
        assert 31 * up % grid[0] == 0 and 23 * up % grid[1] == 0
        expect = fine.reshape(grid[0], rows, grid[1], cols).mean(axis=(1, 3))
        assert np.allclose(fractions[k], expect, atol=1e-6)
    with pytest.raises(DataError, match="does not fit"):
        token_fractions(bits, (40, 3))


def reference_breast(frame: np.ndarray) -> np.ndarray:
    """Brute force: the largest 8-connected component by pixel count, then every background pixel that is
    not 4-connected to the frame's edge through background (a hole) is filled."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats((frame > 40).astype(np.uint8), connectivity=8)
    component = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, back = cv2.connectedComponents((~component).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([back[0], back[-1], back[:, 0], back[:, -1]]))
    return ~np.isin(back, edge[edge > 0])


def test_breast_mask_matches_a_brute_force_on_random_blobs() -> None:
    rng = np.random.default_rng(7)
    for _ in range(10):
        frame = rng.integers(0, 41, size=(120, 90)).astype(np.uint8)
        cv2.ellipse(frame, (0, 60), (60, 50), 0, -90, 90, int(rng.integers(60, 200)), -1)
        for _ in range(6):  # holes, islands inside holes, blobs in the air
            centre = (int(rng.integers(0, 90)), int(rng.integers(0, 120)))
            cv2.circle(frame, centre, int(rng.integers(2, 9)), int(rng.choice([0, 90, 255])), -1)
        assert np.array_equal(breast_mask(frame), reference_breast(frame))


def load_benchmark():
    spec = importlib.util.spec_from_file_location("regions_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_detector_finds_the_phantom_markers(tmp_path: Path) -> None:
    bench = load_benchmark()
    root = bench.make_phantoms(tmp_path / "phantoms", studies=3, seed=41, size=(320, 256))
    score = bench.measure_markers(root, (320, 192))
    assert score.images == 12 and 0 < score.with_marker < 12
    assert score.recall == 1.0 and score.precision == 1.0 and score.false_positive_rate == 0.0
