"""Region labels per token: exact box coverage, the centre rule, the label priority, the split's labels
and the near-box ring, against hand-made maps and brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.regions import (
    BASE_REGIONS,
    RegionError,
    RegionSettings,
    box_coverage,
    box_tokens,
    near_box,
    region_names,
    split_regions,
    token_regions,
)

CATS = ("mass", "calcification")
NAMES = region_names(CATS)
L = {name: k for k, name in enumerate(NAMES)}


def raster_coverage(boxes: np.ndarray, grid: tuple[int, int], frame: tuple[int, int], up: int) -> np.ndarray:
    """Brute force: rasterise the union on sub-pixels of 1/up px and average over each footprint."""
    height, width = frame
    fine = np.zeros((height * up, width * up), bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = (round(np.clip(v, 0, width) * up) for v in (x0, x1))
        r0, r1 = (round(np.clip(v, 0, height) * up) for v in (y0, y1))
        fine[r0:r1, c0:c1] = True
    gh, gw = grid
    return fine.reshape(gh, height * up // gh, gw, width * up // gw).mean(axis=(1, 3))


def test_box_coverage_by_hand() -> None:
    cover = box_coverage(np.array([[5, 5, 15, 15]]), (2, 2), (20, 20))
    assert np.allclose(cover, 0.25)
    union = box_coverage(np.array([[0, 0, 10, 10], [5, 0, 10, 10], [-50, 10, 5, 99]]), (2, 2), (20, 20))
    assert np.allclose(union, [[1.0, 0.0], [0.5, 0.0]])  # overlaps counted once, clipped to the frame
    assert not box_coverage(np.zeros((0, 4)), (2, 2), (20, 20)).any()
    assert not box_coverage(np.array([[30, 30, 40, 40]]), (2, 2), (20, 20)).any()


def test_box_coverage_is_exact_on_an_uneven_grid() -> None:
    rng = np.random.default_rng(0)
    grid, frame = (3, 4), (10, 14)  # footprints 3.33 x 3.5 px
    for _ in range(20):
        n = int(rng.integers(1, 5))
        corners = rng.integers(-8, 64, size=(n, 2, 2)) / 4  # edges on quarter pixels
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        expect = raster_coverage(boxes, grid, frame, up=12)
        assert np.allclose(box_coverage(boxes, grid, frame), expect, atol=1e-6)


def test_box_tokens_overlap_and_centre_rules() -> None:
    grid, frame = (4, 4), (40, 40)
    small = np.array([[12.0, 22.0, 14.0, 24.0]])  # 4 px^2 inside token (2, 1)
    tokens = box_tokens(small, grid, frame, 0.25)
    assert tokens.sum() == 1 and tokens[2, 1]
    wide = np.array([[0.0, 0.0, 13.0, 10.0]])  # covers token (0, 0) and 30% of token (0, 1)
    assert box_tokens(wide, grid, frame, 0.25)[0].tolist() == [True, True, False, False]
    assert box_tokens(wide, grid, frame, 0.5)[0].tolist() == [True, False, False, False]
    edge = np.array([[30.0, 30.0, 50.0, 50.0]])  # half outside: its clipped centre (35, 35) counts
    assert box_tokens(edge, grid, frame, 1.0)[3, 3] and box_tokens(edge, grid, frame, 1.0).sum() == 1
    point = np.array([[10.0, 10.0, 10.0, 10.0]])  # a degenerate box on a token corner: half-open footprints
    assert box_tokens(point, grid, frame, 0.25)[1, 1] and box_tokens(point, grid, frame, 0.25).sum() == 1
    with pytest.raises(RegionError, match="finite"):
        box_tokens(np.array([[np.nan, 0, 1, 1]]), grid, frame, 0.25)
    with pytest.raises(RegionError, match="x1 >= x0"):
        box_tokens(np.array([[5.0, 0, 1, 1]]), grid, frame, 0.25)
    with pytest.raises(RegionError, match="min_overlap"):
        box_tokens(small, grid, frame, 0.0)


def hand_tissue() -> np.ndarray:
    """[3, 20] planes on a 4 x 5 grid: breast everywhere but column 4 (background), a thin skin band in
    column 3 (row 1: 0.3 of a 0.6-breast token is skin -> half its breast), a detected marker at (2, 4)."""
    breast = np.ones((4, 5), np.float32)
    breast[:, 4] = 0.0
    breast[1, 3] = 0.6
    skin = np.zeros((4, 5), np.float32)
    skin[1, 3], skin[2, 3] = 0.3, 0.4
    marker = np.zeros((4, 5), np.float32)
    marker[2, 4] = 0.3
    return np.stack([breast, skin, marker]).reshape(3, 20)


def test_token_regions_priority_by_hand() -> None:
    grid, frame = (4, 5), (40, 50)
    tissue = hand_tissue()
    labels = token_regions(tissue, {}, CATS, grid, frame, RegionSettings())
    expect = np.array(
        [
            ["border"] * 5,
            ["border", "breast", "breast", "skin", "border"],
            ["border", "breast", "breast", "breast", "marker"],
            ["border"] * 5,
        ]
    )
    assert [NAMES[v] for v in labels] == expect.ravel().tolist()
    assert labels.dtype == np.uint8
    boxes = {
        "calcification": np.array([[10.0, 10.0, 30.0, 20.0]]),  # tokens (1, 1) and (1, 2)
        "mass": np.array([[20.0, 10.0, 30.0, 30.0]]),  # tokens (1, 2) and (2, 2): mass wins (1, 2)
        "marker": np.array([[30.0, 20.0, 40.0, 30.0]]),  # token (2, 3)
        "benign": np.array([[0.0, 0.0, 50.0, 40.0]]),  # not a region: ignored
    }
    labels = token_regions(tissue, boxes, CATS, grid, frame).reshape(4, 5)
    assert NAMES[labels[1, 1]] == "box:calcification"
    assert NAMES[labels[1, 2]] == NAMES[labels[2, 2]] == "box:mass"
    assert NAMES[labels[2, 3]] == "marker" and NAMES[labels[2, 4]] == "marker"
    assert NAMES[labels[1, 3]] == "skin" and NAMES[labels[0, 0]] == "border"
    # a finding box beats the border and the background; thresholds move the tissue labels
    edge = token_regions(tissue, {"mass": np.array([[45.0, 35.0, 46.0, 36.0]])}, CATS, grid, frame)
    assert NAMES[edge[19]] == "box:mass"
    strict = token_regions(
        tissue, {}, CATS, grid, frame, RegionSettings(skin_fraction=0.6, marker_fraction=0.5)
    )
    assert NAMES[strict[8]] == "breast" and NAMES[strict[14]] == "border"  # (2, 4) is a border token
    loose = token_regions(tissue, {}, CATS, grid, frame, RegionSettings(breast_fraction=0.7))
    assert NAMES[loose[8]] == "background"
    with pytest.raises(RegionError, match=r"\[3, 20\]"):
        token_regions(tissue[:2], {}, CATS, grid, frame)


def test_split_regions_agree_with_token_regions() -> None:
    rng = np.random.default_rng(2)
    grid, frame = (6, 5), (60, 40)
    n = 4
    tissue = rng.random((n, 3, 30)).astype(np.float16)
    rows = []
    for p, kind in [
        (0, "mass"),
        (0, "calcification"),
        (2, "marker"),
        (2, "mass"),
        (3, "benign"),
        (2, "mass"),
    ]:
        x0, y0 = rng.uniform(0, 35), rng.uniform(0, 55)
        rows.append(
            {
                "position": p,
                "kind": kind,
                "frame_x0": x0,
                "frame_y0": y0,
                "frame_x1": x0 + rng.uniform(0, 15),
                "frame_y1": y0 + rng.uniform(0, 15),
            }
        )
    boxes = pd.DataFrame(rows)
    labels = split_regions(tissue, boxes, CATS, grid, frame)
    assert labels.shape == (n, 30) and labels.dtype == np.uint8
    for p in range(n):
        mine = boxes[boxes["position"] == p]
        by_kind = {
            k: g[["frame_x0", "frame_y0", "frame_x1", "frame_y1"]].to_numpy() for k, g in mine.groupby("kind")
        }
        assert np.array_equal(labels[p], token_regions(tissue[p], by_kind, CATS, grid, frame))
    assert (labels[0] == L["box:mass"]).any() and (labels[2] == L["marker"]).any()
    with pytest.raises(RegionError, match="outside"):
        split_regions(tissue[:2], boxes, CATS, grid, frame)
    with pytest.raises(RegionError, match="columns"):
        split_regions(tissue, boxes.drop(columns="frame_x0"), CATS, grid, frame)


def test_near_box_is_a_chebyshev_ring_on_tissue() -> None:
    rng = np.random.default_rng(4)
    grid = (7, 9)
    for _ in range(10):
        labels = rng.choice(
            [L["breast"], L["skin"], L["background"], L["box:mass"]], p=[0.5, 0.2, 0.2, 0.1], size=63
        )
        labels = labels.astype(np.uint8)
        for k in (0, 1, 2):
            got = near_box(labels, grid, L["box:mass"], k)
            rr, cc = np.divmod(np.arange(63), 9)
            box = labels == L["box:mass"]
            dist = np.maximum(np.abs(rr[:, None] - rr[None, box]), np.abs(cc[:, None] - cc[None, box]))
            within = (dist <= k).any(axis=1) if box.any() else np.zeros(63, bool)
            expect = within & ~box & np.isin(labels, [L["breast"], L["skin"]])
            assert np.array_equal(got, expect)
    two = np.stack([labels, labels[::-1]])
    assert np.array_equal(
        near_box(two, grid, L["box:mass"], 1)[1], near_box(labels[::-1], grid, L["box:mass"], 1)
    )
    with pytest.raises(RegionError, match="do not fit"):
        near_box(labels[:10], grid, L["box:mass"], 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("box_overlap", 0.0),
        ("breast_fraction", 1.5),
        ("skin_fraction", -0.1),
        ("marker_fraction", "x"),
        ("near_tokens", -1),
        ("near_tokens", 1.5),
        ("box_overlap", True),
    ],
)
def test_region_settings_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(RegionError, match=field):
        RegionSettings(**{field: value})


def test_region_names_order() -> None:
    assert NAMES[: len(BASE_REGIONS)] == ("breast", "skin", "background", "border", "marker")
    assert NAMES[5:] == ("box:mass", "box:calcification")
