"""Latent localisation: heatmaps, masks, boxes, pointing, IoU and AP against answers worked out by hand.

Most maps are 6x4 (or 8x6) tokens on a frame ten times larger, so token (r, c) covers pixels
x in [10c, 10c+10), y in [10r, 10r+10) and bilinear upsampling (half-pixel centres) gives pixel (x, y) the
source coordinate ((x + 0.5) / 10 - 0.5, (y + 0.5) / 10 - 0.5). A single hot interior token then peaks at
0.95 x 0.95 = 0.9025 (pixels 14-15 / 24-25 for token (2, 1)) and its 0.3 x max mask reaches the pixels whose
tent weights multiply to >= 0.27075: x in [8, 22), y in [18, 32).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.latent_table import localisation_table
from mammo_sae.analysis.localisation import (
    THRESHOLD_METHODS,
    LocalisationError,
    LocalisationResult,
    MapThreshold,
    average_precision,
    box_iou,
    box_peak_scores,
    localise,
    mask_boxes,
    mean_best_iou,
    peak_point,
    point_in_boxes,
    pointing_hits,
    predicted_boxes,
    threshold_mask,
    upsample_map,
)
from mammo_sae.analysis.peaks import (
    BOX,
    FRAME_BOX,
    PointingScreen,
    image_tolerance,
    marker_latents,
    pointing_tolerances,
)
from mammo_sae.core.errors import MammoSaeError

FRAME = (60, 40)  # (H, W) for a 6x4 token map


def hot_tokens(shape: tuple[int, int], *tokens: tuple[int, int]) -> np.ndarray:
    """A float32 token map that is 1 at ``tokens`` and 0 elsewhere."""
    token_map = np.zeros(shape, dtype=np.float32)
    for row, col in tokens:
        token_map[row, col] = 1.0
    return token_map


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


# --- heatmaps and masks ------------------------------------------------------------------------------------


def test_upsample_map_shape_dtype_and_constant_map() -> None:
    heatmap = upsample_map(np.full((6, 4), 0.7), FRAME)
    assert heatmap.shape == FRAME and heatmap.dtype == np.float32
    assert np.all(heatmap == np.float32(0.7))
    assert upsample_map(np.ones((1, 4)), (1, 40)).shape == (1, 40)  # a unit axis is kept


def test_upsample_map_puts_a_token_at_the_centre_of_its_footprint() -> None:
    heatmap = upsample_map(hot_tokens((6, 4), (2, 1)), FRAME)
    assert heatmap.max() == pytest.approx(0.9025, abs=1e-6)
    assert np.array_equal(np.argwhere(heatmap == heatmap.max()), [[24, 14], [24, 15], [25, 14], [25, 15]])
    assert np.array_equal(np.unique(np.nonzero(heatmap)[0]), np.arange(15, 35))  # |source row - 2| < 1


def test_single_hot_token_gives_one_box_around_its_footprint() -> None:
    heatmap = upsample_map(hot_tokens((6, 4), (2, 1)), FRAME)
    pred, scores = predicted_boxes(heatmap, MapThreshold())
    assert np.array_equal(pred, boxes((8, 18, 22, 32)))
    assert scores == pytest.approx([0.9025], abs=1e-6)
    assert peak_point(heatmap) == (14.5, 24.5)


def test_two_separate_hot_regions_give_two_boxes_in_reading_order() -> None:
    heatmap = upsample_map(hot_tokens((8, 6), (5, 4), (2, 1)), (80, 60))
    pred, scores = predicted_boxes(heatmap, MapThreshold())
    assert np.array_equal(pred, boxes((8, 18, 22, 32), (38, 48, 52, 62)))
    assert scores == pytest.approx([0.9025, 0.9025], abs=1e-6)


def test_fraction_and_percentile_levels() -> None:
    heatmap = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
    assert threshold_mask(heatmap, MapThreshold("fraction", 0.3)).sum() == 71  # values >= 30
    assert threshold_mask(heatmap, MapThreshold("percentile", 95)).sum() == 5  # >= 95.05: 96..100
    assert threshold_mask(heatmap, MapThreshold("fraction", 1.0)).sum() == 1


def test_percentile_on_a_sparse_map_ignores_the_zeros() -> None:
    # 400 of the 2400 pixels are positive, so the median is 0: only the positive footprint is kept
    heatmap = upsample_map(hot_tokens((6, 4), (2, 1)), FRAME)
    mask = threshold_mask(heatmap, MapThreshold("percentile", 50))
    assert mask.sum() == 400
    assert np.array_equal(mask_boxes(mask), boxes((5, 15, 25, 35)))


def test_maps_without_a_positive_value_give_nothing() -> None:
    for heatmap in (np.zeros(FRAME, np.float32), np.full(FRAME, -1.0)):
        for threshold in (MapThreshold(), MapThreshold("percentile", 0)):
            assert not threshold_mask(heatmap, threshold).any()
            pred, scores = predicted_boxes(heatmap, threshold)
            assert pred.shape == (0, 4) and scores.shape == (0,)


def test_mask_boxes_min_area_is_inclusive() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:5, 2:5] = True  # 3 x 3 = 9 px
    mask[10:12, 5:10] = True  # 5 wide x 2 high = 10 px
    mask[18, 18] = True  # 1 px
    assert np.array_equal(mask_boxes(mask, 10), boxes((5, 10, 10, 12)))
    assert np.array_equal(mask_boxes(mask, 9), boxes((2, 2, 5, 5), (5, 10, 10, 12)))
    assert len(mask_boxes(mask, 0)) == 3
    assert mask_boxes(np.zeros((5, 5), bool)).shape == (0, 4)


def test_mask_boxes_keeps_only_external_contours() -> None:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2:18, 2:18] = 1
    mask[6:14, 6:14] = 0  # a hole with an island inside it
    mask[8:12, 8:12] = 1
    assert np.array_equal(mask_boxes(mask), boxes((2, 2, 18, 18)))


def test_box_peak_scores_cover_the_pixels_a_box_touches() -> None:
    heatmap = np.arange(20, dtype=np.float32).reshape(4, 5)  # value = 5 * row + col
    scores = box_peak_scores(heatmap, boxes((0, 0, 2, 2), (2.5, 0, 3.2, 1), (1, 1, 1, 3), (7, 7, 9, 9)))
    assert scores[:2].tolist() == [6.0, 3.0]  # pixel (1, 1); pixels x 2..3 of row 0
    assert scores[2:].tolist() == [-np.inf, -np.inf]  # zero width; outside the frame


# --- pointing and IoU --------------------------------------------------------------------------------------


def test_peak_point_takes_the_first_maximum_in_row_major_order() -> None:
    assert peak_point(np.array([[0, 5, 1], [5, 0, 5]])) == (1.5, 0.5)
    assert peak_point(np.zeros((3, 3))) == (0.5, 0.5)


def test_point_in_boxes_is_inclusive_and_false_without_boxes() -> None:
    gt = boxes((10, 20, 20, 30))
    assert point_in_boxes((10, 30), gt) and point_in_boxes((15, 25), gt)
    assert not point_in_boxes((20.01, 25), gt)
    assert not point_in_boxes((15, 25), np.zeros((0, 4)))


def test_point_in_boxes_with_a_tolerance_grows_every_side() -> None:
    gt = boxes((10, 20, 20, 30))
    assert not point_in_boxes((24.0, 25), gt)
    assert point_in_boxes((24.0, 25), gt, tolerance=4.0) and point_in_boxes((15, 16.0), gt, tolerance=4.0)
    assert not point_in_boxes((24.5, 25), gt, tolerance=4.0)
    with pytest.raises(LocalisationError, match="tolerance"):
        point_in_boxes((15, 25), gt, tolerance=-1.0)


def test_point_in_boxes_with_a_tolerance_per_axis() -> None:
    gt = boxes((10, 20, 20, 30))
    assert point_in_boxes((24.0, 25), gt, tolerance=(4.0, 0.0))  # 4 px right: x grows by 4
    assert not point_in_boxes((15, 16.0), gt, tolerance=(4.0, 0.0))  # 4 px above: y does not grow
    assert point_in_boxes((15, 16.0), gt, tolerance=(0.0, 4.0)) and point_in_boxes((24, 34), gt, (4.0, 4.0))
    for bad in ((1.0,), (1.0, -2.0), (1.0, math.nan), "4"):
        with pytest.raises(LocalisationError, match="tolerance"):
            point_in_boxes((15, 25), gt, tolerance=bad)


def test_localise_takes_an_x_y_tolerance_per_image() -> None:
    """The hot token (2, 1) peaks at (15, 25); a box 6 px to its right is reached by an x tolerance of 8 and
    not by a y tolerance of 8; a box 6 px below it, the other way round."""
    token_map = hot_tokens((6, 4), (2, 1))
    right, below = [boxes((21, 20, 29, 30))], [boxes((10, 31, 20, 40))]
    assert localise([token_map], right, FRAME, tolerances=[(8.0, 0.0)]).pointing == 1.0
    assert localise([token_map], right, FRAME, tolerances=[(0.0, 8.0)]).pointing == 0.0
    assert localise([token_map], below, FRAME, tolerances=[(0.0, 8.0)]).pointing == 1.0
    both = localise([token_map] * 2, right + below, FRAME, tolerances=[(8.0, 0.0), 8.0])
    assert both.pointing == 1.0 and both.pointing_strict == 0.0


def test_pointing_hits_give_localise_s_game_per_image() -> None:
    hot = hot_tokens((6, 4), (2, 1))
    maps = [hot, hot, np.zeros((6, 4)), hot, hot]
    gt = [boxes((8, 18, 22, 32)), boxes((21, 20, 29, 30)), boxes((0, 0, 10, 10)), np.zeros((0, 4)), GT_A]
    tolerances = [(0.0, 0.0), (8.0, 0.0), 50.0, 1.0, (0.0, 0.0)]
    tolerant, strict = pointing_hits(maps, gt, FRAME, tolerances)
    assert tolerant.tolist() == [True, True, False, False, point_in_boxes((15, 25), GT_A)]
    assert strict.tolist() == [True, False, False, False, point_in_boxes((15, 25), GT_A)]
    result = localise(maps, gt, FRAME, tolerances=tolerances)
    scored = [0, 1, 2, 4]  # image 3 has no box
    assert result.pointing == tolerant[scored].mean() and result.pointing_strict == strict[scored].mean()
    with pytest.raises(LocalisationError, match="one of each per image"):
        pointing_hits(maps, gt[:2], FRAME)


def test_localise_counts_a_peak_within_the_tolerance_as_a_hit() -> None:
    """A one-token-wide miss becomes a hit once the box is grown by the image's tolerance, and only the
    pointing game changes (IoU and AP use the boxes as they are)."""
    token_map = hot_tokens((6, 4), (2, 1))
    gt = [boxes((21, 20, 29, 30))]  # just right of the hot token's centre
    strict = localise([token_map], gt, FRAME)
    tolerant = localise([token_map], gt, FRAME, tolerances=[8.0])
    assert strict.pointing == 0.0 and tolerant.pointing == 1.0
    assert strict.pointing_strict == tolerant.pointing_strict == 0.0  # the strict game ignores tolerances
    assert strict.mean_iou == tolerant.mean_iou and strict.ap == tolerant.ap
    with pytest.raises(LocalisationError, match="one per image"):
        localise([token_map], gt, FRAME, tolerances=[1.0, 2.0])


def test_pointing_inside_a_box_around_the_token_and_not_in_a_far_box() -> None:
    heatmap = upsample_map(hot_tokens((6, 4), (2, 1)), FRAME)
    assert point_in_boxes(peak_point(heatmap), boxes((10, 20, 20, 30)))
    assert not point_in_boxes(peak_point(heatmap), boxes((25, 40, 38, 55)))


def test_box_iou_hand_values() -> None:
    a = boxes((0, 0, 2, 2))
    assert box_iou(a, a).tolist() == [[1.0]]
    assert box_iou(a, boxes((2, 0, 4, 2))).tolist() == [[0.0]]  # touching edges do not overlap
    assert box_iou(a, boxes((1, 0, 3, 2)))[0, 0] == pytest.approx(1 / 3)  # 2 / (4 + 4 - 2)
    assert box_iou(a, boxes((0, 0, 1, 1)))[0, 0] == pytest.approx(1 / 4)  # nested


def test_box_iou_zero_area_and_empty_inputs() -> None:
    flat = boxes((1, 1, 1, 1), (3, 0, 3, 5))
    iou = box_iou(flat, boxes((0, 0, 2, 2), (1, 1, 1, 1)))
    assert iou.shape == (2, 2) and np.array_equal(iou, np.zeros((2, 2)))
    assert box_iou(np.zeros((0, 4)), boxes((0, 0, 1, 1))).shape == (0, 1)


def test_mean_best_iou() -> None:
    gt = boxes((0, 0, 2, 2), (10, 10, 12, 12))
    assert mean_best_iou(boxes((0, 0, 2, 2), (1, 0, 3, 2)), gt) == pytest.approx(0.5)  # (1 + 0) / 2
    assert mean_best_iou(np.zeros((0, 4)), gt) == 0.0
    assert math.isnan(mean_best_iou(gt, np.zeros((0, 4))))


# --- average precision -------------------------------------------------------------------------------------

GT_A = boxes((0, 0, 10, 10))
GT_B = boxes((20, 20, 30, 30))
FAR = (50, 50, 60, 60)


def test_ap_perfect_detections_over_two_images() -> None:
    predictions = [(GT_A, [0.9]), (GT_B, [0.4])]
    assert average_precision(predictions, [GT_A, GT_B]) == 1.0


def test_ap_false_positive_ranked_above_the_true_positive() -> None:
    # precision 0 then 1/2 at recall 1
    assert average_precision([(boxes(FAR, (0, 0, 10, 10)), [0.9, 0.8])], [GT_A]) == pytest.approx(0.5)
    assert average_precision([(boxes(FAR, (0, 0, 10, 10)), [0.8, 0.9])], [GT_A]) == 1.0


def test_ap_duplicate_detection_is_a_false_positive() -> None:
    # hit, duplicate, hit on two gt boxes: 0.5 x 1 + 0.5 x 2/3
    gt = np.concatenate([GT_A, GT_B])
    predictions = [(boxes((0, 0, 10, 10), (0, 0, 10, 9), (20, 20, 30, 30)), [0.9, 0.8, 0.7])]
    assert average_precision(predictions, [gt]) == pytest.approx(5 / 6)


def test_ap_pools_images_and_matches_within_an_image_only() -> None:
    # image 1's 0.95 box lies on image 0's gt: a miss. Ranks: FP, TP (1/2), TP (2/3) -> envelope 2/3 at both hits
    predictions = [(GT_A, [0.9]), (boxes((0, 0, 10, 10), (20, 20, 30, 30)), [0.95, 0.5])]
    assert average_precision(predictions, [GT_A, GT_B]) == pytest.approx(2 / 3)
    # an image with gt but no prediction costs recall
    assert average_precision([(GT_A, [0.9]), (np.zeros((0, 4)), [])], [GT_A, GT_B]) == pytest.approx(0.5)


def test_ap_ties_keep_input_order() -> None:
    assert average_precision([(boxes(FAR, (0, 0, 10, 10)), [0.5, 0.5])], [GT_A]) == pytest.approx(0.5)
    assert average_precision([(boxes((0, 0, 10, 10), FAR), [0.5, 0.5])], [GT_A]) == 1.0


def test_ap_iou_threshold_decides_what_counts() -> None:
    half = [(boxes((5, 0, 15, 10)), [1.0])]  # IoU 1/3 with GT_A
    assert average_precision(half, [GT_A], iou_threshold=0.3) == 1.0
    assert average_precision(half, [GT_A], iou_threshold=0.5) == 0.0
    assert average_precision([(boxes((0, 0, 10, 5)), [1.0])], [GT_A], iou_threshold=0.5) == 1.0  # IoU 0.5


def test_ap_matches_the_best_unmatched_gt_box() -> None:
    # the second prediction's best box is taken, so it goes to the other one (IoU 0.6)
    gt = boxes((0, 0, 10, 10), (0, 0, 10, 6))
    assert average_precision([(boxes((0, 0, 10, 10), (0, 0, 10, 10)), [0.9, 0.8])], [gt]) == 1.0


def test_ap_edge_cases() -> None:
    assert math.isnan(average_precision([(GT_A, [1.0])], [np.zeros((0, 4))]))
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], [GT_A]) == 0.0
    assert math.isnan(average_precision([], []))


def test_ap_argument_errors() -> None:
    with pytest.raises(LocalisationError, match="predictions for 1 images but ground truth for 2"):
        average_precision([(GT_A, [1.0])], [GT_A, GT_B])
    with pytest.raises(LocalisationError, match="1 predicted boxes but 2 scores"):
        average_precision([(GT_A, [1.0, 0.5])], [GT_A])
    with pytest.raises(LocalisationError, match=r"IoU threshold must be in \(0, 1\]"):
        average_precision([(GT_A, [1.0])], [GT_A], iou_threshold=0.0)
    with pytest.raises(LocalisationError, match=r"\[n, 4\]"):
        average_precision([(np.ones((2, 3)), [1.0, 1.0])], [GT_A])
    with pytest.raises(LocalisationError, match="drop the rows that have no box"):
        average_precision([(GT_A, [1.0])], [boxes((np.nan, 0, 1, 1))])


# --- thresholds and validation -----------------------------------------------------------------------------


def test_map_threshold_defaults_and_methods() -> None:
    assert MapThreshold() == MapThreshold("fraction", 0.3, 10.0)
    assert THRESHOLD_METHODS == ("fraction", "percentile")
    MapThreshold("percentile", 0)
    MapThreshold("percentile", 99.9, min_area=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "otsu"}, "unknown threshold method 'otsu'; use one of fraction, percentile"),
        ({"value": 0.0}, r"fraction threshold must be in \(0, 1\], got 0.0"),
        ({"value": 1.5}, r"fraction threshold must be in \(0, 1\], got 1.5"),
        ({"method": "percentile", "value": 100}, r"percentile threshold must be in \[0, 100\), got 100"),
        ({"method": "percentile", "value": -1}, r"percentile threshold must be in \[0, 100\)"),
        ({"min_area": -1.0}, "min_area must be a finite number >= 0"),
        ({"value": "0.3"}, "must be numbers"),
    ],
)
def test_map_threshold_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(LocalisationError, match=message) as caught:
        MapThreshold(**kwargs)
    assert isinstance(caught.value, MammoSaeError)


def test_maps_and_frames_are_checked() -> None:
    with pytest.raises(LocalisationError, match="2-D"):
        upsample_map(np.zeros(5), FRAME)
    with pytest.raises(LocalisationError, match="finite"):
        upsample_map(np.array([[0.0, np.nan]]), FRAME)
    with pytest.raises(LocalisationError, match="frame_size"):
        upsample_map(np.zeros((2, 2)), (0, 10))
    with pytest.raises(LocalisationError, match="finite"):
        threshold_mask(np.array([[1.0, np.inf]]), MapThreshold())
    with pytest.raises(LocalisationError, match="finite"):
        peak_point(np.array([[1.0, np.nan]]))


# --- localise ----------------------------------------------------------------------------------------------


def test_localise_scores_one_latent_over_images() -> None:
    hot = hot_tokens((6, 4), (2, 1))
    result = localise(
        [hot, hot, np.zeros((6, 4)), hot],
        [boxes((8, 18, 22, 32)), boxes((25, 40, 38, 55)), boxes((0, 0, 10, 10)), np.zeros((0, 4))],
        FRAME,
    )
    # image 0: exact hit; image 1: far box; image 2: an all-zero map, a miss; image 3: no gt, skipped.
    # AP: two equal-score predictions, the first a hit -> precision 1 at recall 1/3
    assert result == LocalisationResult(
        n_images=3, pointing=1 / 3, mean_iou=1 / 3, ap={0.3: 1 / 3, 0.5: 1 / 3}, pointing_strict=1 / 3
    )


def test_localise_as_dict_is_flat_and_json_ready() -> None:
    result = localise(
        [hot_tokens((6, 4), (2, 1))], [boxes((8, 18, 22, 32))], FRAME, iou_thresholds=(0.1, 0.3, 0.5)
    )
    flat = result.as_dict("l7_")
    assert flat == {
        "l7_pointing": 1.0,
        "l7_pointing_strict": 1.0,
        "l7_mean_iou": 1.0,
        "l7_ap10": 1.0,
        "l7_ap30": 1.0,
        "l7_ap50": 1.0,
    }
    assert json.loads(json.dumps(flat)) == flat


def test_localise_without_scored_images_is_nan() -> None:
    result = localise([np.ones((6, 4))], [np.zeros((0, 4))], FRAME)
    assert result.n_images == 0 and math.isnan(result.pointing) and math.isnan(result.mean_iou)
    assert all(math.isnan(v) for v in result.ap.values())


def test_localise_argument_errors() -> None:
    with pytest.raises(LocalisationError, match="2 token maps but 1 gt box arrays"):
        localise([np.ones((6, 4))] * 2, [GT_A], FRAME)
    with pytest.raises(LocalisationError, match="IoU threshold"):
        localise([np.ones((6, 4))], [GT_A], FRAME, iou_thresholds=(1.5,))


def random_token_boxes(rng: np.random.Generator, grid: tuple[int, int], n: int) -> list[tuple[int, ...]]:
    """Random token-aligned boxes (row0, col0, row1, col1), end-exclusive."""
    out = []
    for _ in range(n):
        r0, r1 = sorted(rng.choice(grid[0] + 1, 2, replace=False))
        c0, c1 = sorted(rng.choice(grid[1] + 1, 2, replace=False))
        out.append((r0, c0, r1, c1))
    return out


def indicator_maps(grid: tuple[int, int], frame: tuple[int, int], token_boxes: list) -> tuple[list, list]:
    """Token maps equal to the indicator of each box, and the boxes in frame pixels."""
    sy, sx = frame[0] / grid[0], frame[1] / grid[1]
    maps, gts = [], []
    for r0, c0, r1, c1 in token_boxes:
        token_map = np.zeros(grid, dtype=np.float32)
        token_map[r0:r1, c0:c1] = 1.0
        maps.append(token_map)
        gts.append(boxes((c0 * sx, r0 * sy, c1 * sx, r1 * sy)))
    return maps, gts


def test_localise_indicator_maps_of_the_gt_box_localise_it() -> None:
    rng = np.random.default_rng(0)
    # integer scale: the half-height level of a bilinear ramp falls exactly on the token edges
    maps, gts = indicator_maps((6, 4), FRAME, random_token_boxes(rng, (6, 4), 20))
    exact = localise(maps, gts, FRAME, MapThreshold("fraction", 0.5))
    assert exact.n_images == 20 and exact.pointing == 1.0 and exact.mean_iou == pytest.approx(1.0)
    assert exact.ap == {0.3: 1.0, 0.5: 1.0}
    loose = localise(maps, gts, FRAME)  # 0.3 x max spills 2 px past each inner edge
    assert loose.pointing == 1.0 and loose.mean_iou > 0.7 and loose.ap[0.5] == 1.0
    # the model frame: 48x29 tokens on 1520x912 pixels (non-integer scale)
    maps, gts = indicator_maps((48, 29), (1520, 912), random_token_boxes(rng, (48, 29), 5))
    real = localise(maps, gts, (1520, 912), MapThreshold("fraction", 0.5))
    assert real.pointing == 1.0 and real.mean_iou > 0.95 and real.ap[0.5] == 1.0


# --- per-axis tolerances, the pointing screen and the localisation table ------------------------------------


def box_rows(*rows: tuple) -> pd.DataFrame:
    """truth_boxes rows (position, kind, original box, frame box)."""
    columns = ["position", "kind", *BOX, *FRAME_BOX]
    return pd.DataFrame([dict(zip(columns, r, strict=True)) for r in rows])


def test_pointing_tolerances_use_each_axis_scale_and_borrow_for_degenerate_boxes() -> None:
    """Image 0 is resized by 0.5 across and 2 down: 15 px become (7.5, 30) frame px. Its second box is flat in
    y and a point in x, so it borrows both scales from the first; image 1's only box is degenerate: scale 1."""
    table = box_rows(
        (0, "mass", 100, 100, 140, 110, 50, 200, 70, 220),
        (0, "mass", 200, 300, 200, 300, 100, 600, 100, 600),
        (1, "calcification", 10, 10, 10, 10, 5, 5, 5, 5),
    )
    tolerance = pointing_tolerances(table, 15.0)
    assert list(tolerance.columns) == ["tolerance_x", "tolerance_y"] and tolerance.index.equals(table.index)
    assert tolerance.to_numpy().tolist() == [[7.5, 30.0], [7.5, 30.0], [15.0, 15.0]]
    assert image_tolerance(table.join(tolerance).iloc[:2]) == (7.5, 30.0)
    assert image_tolerance(table.assign(tolerance=3.0)) == (3.0, 3.0)  # an older one-axis column
    assert image_tolerance(table) == (0.0, 0.0)


def one_image_codes(grid: tuple[int, int], hot: dict[int, tuple[int, float]], d_sae: int = 3) -> TokenCodes:
    """One image whose latent l fires only at token hot[l][0] with value hot[l][1]."""
    z = np.zeros((grid[0] * grid[1], d_sae), dtype=np.float32)
    for latent, (token, value) in hot.items():
        z[token, latent] = value
    return TokenCodes.from_dense(z, grid)


def test_pointing_screen_grows_each_box_by_its_own_axis_tolerance() -> None:
    """Grid 6x4 on a 60x40 frame: latent 0 peaks at token (2, 1), centre (15, 25); latent 1 at token (4, 1),
    centre (15, 45). The box (21, 20, 29, 30) lies 6 px right of latent 0's centre: an x tolerance of 8
    catches it, a y tolerance never; the box (10, 20, 20, 30) holds latent 0 and ends 15 px above latent 1,
    which a y tolerance of 16 reaches."""
    codes = one_image_codes((6, 4), {0: (2 * 4 + 1, 1.0), 1: (4 * 4 + 1, 1.0)})
    screen = PointingScreen((6, 4), FRAME, 3)
    base = box_rows((0, "mass", 0, 0, 1, 1, 21, 20, 29, 30))
    for (tx, ty), expected in (((0, 0), [0, 0]), ((8, 0), [1, 0]), ((0, 8), [0, 0]), ((0, 16), [0, 0])):
        hits = screen.run(codes, base.assign(tolerance_x=float(tx), tolerance_y=float(ty)), "mass")
        assert hits["peak_in_mass"].tolist()[:2] == expected and hits["fired_mass"].tolist() == [1, 1, 0]
    wide = box_rows((0, "mass", 0, 0, 1, 1, 10, 20, 20, 30)).assign(tolerance_x=0.0, tolerance_y=16.0)
    assert screen.run(codes, wide, "mass")["peak_in_mass"].tolist()[:2] == [1, 1]
    assert screen.run(
        codes, wide.drop(columns=["tolerance_x", "tolerance_y"]).assign(tolerance=16.0), "mass"
    )["peak_in_mass"].tolist()[:2] == [1, 1]  # an older one-axis column grows both axes


def test_localisation_table_gives_the_tolerant_and_the_strict_game() -> None:
    codes = one_image_codes((6, 4), {0: (2 * 4 + 1, 1.0), 1: (4 * 4 + 1, 1.0)})
    boxes_ = box_rows((0, "mass", 0, 0, 1, 1, 21, 20, 29, 30)).assign(tolerance_x=8.0, tolerance_y=0.0)
    rankings = {("mass", 1): np.array([0, 1]), ("mass", 0): np.array([], dtype=np.int64)}
    table = localisation_table(codes, boxes_, rankings, FRAME, MapThreshold(), 5, ())
    assert table[["latent", "pointing", "pointing_strict"]].to_numpy().tolist() == [
        [0, 1.0, 0.0],
        [1, 0.0, 0.0],
    ]
    untouched = localisation_table(
        codes, boxes_.drop(columns=["tolerance_x", "tolerance_y"]), rankings, FRAME, MapThreshold(), 5, ()
    )
    assert untouched["pointing"].tolist() == [0.0, 0.0]


def test_marker_latents_are_all_returned_and_counted() -> None:
    n = 30
    latents = pd.DataFrame(
        {
            "peak_in_marker": np.linspace(1.0, 0.3, n),
            "fired_marker": np.full(n, 10),
            "score_calcification_1": np.zeros(n),
            "effect_calcification": np.zeros(n),
        }
    )
    hits = marker_latents(latents, 40)
    meets = int((latents["peak_in_marker"] >= 0.5).sum())
    assert meets > 20 and len(hits) == meets and hits.attrs["total"] == meets and hits.attrs["support"] == 4
    capped = marker_latents(latents, 40, limit=5)
    assert len(capped) == 5 and capped.attrs["total"] == meets
    assert marker_latents(latents.drop(columns="peak_in_marker"), 40).empty
