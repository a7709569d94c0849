"""Where the evidence lies: region sums and shares add up exactly, token groups follow the labels and the
grid distance, split shares match hand-made numbers, and pointing grows boxes per axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.evidence_regions import (
    GROUPS,
    EvidenceRegionError,
    box_tolerances_xy,
    evidence_groups,
    evidence_pointing,
    group_sums,
    image_region_table,
    region_shares,
    region_sums,
    split_difference_shares,
)
from mammo_sae.analysis.regions import region_names

NAMES = region_names(("mass", "calcification"))  # breast skin background border marker box:mass box:calc
B, S, BG, BO, MK, BM, BC = range(7)


def test_region_sums_add_up_to_the_evidence_total_and_shares_to_one() -> None:
    rng = np.random.default_rng(0)
    evidence_t = rng.normal(size=60)
    labels_t = rng.integers(0, len(NAMES), 60).astype(np.uint8)
    sums_r = region_sums(evidence_t, labels_t, len(NAMES))
    assert sums_r.sum() == pytest.approx(evidence_t.sum(), abs=1e-12)
    for r in range(len(NAMES)):
        assert sums_r[r] == pytest.approx(evidence_t[labels_t == r].sum())
    shares_r = region_shares(evidence_t, labels_t, len(NAMES))
    assert shares_r.sum() == pytest.approx(1.0)
    positive_t = np.maximum(evidence_t, 0)
    assert shares_r[2] == pytest.approx(positive_t[labels_t == 2].sum() / positive_t.sum())
    assert (region_shares(-np.abs(evidence_t), labels_t, len(NAMES)) == 0).all()
    with pytest.raises(EvidenceRegionError, match=r"0\.\.6"):
        region_sums(evidence_t, np.full(60, 7), len(NAMES))
    with pytest.raises(EvidenceRegionError, match="NaN"):
        region_sums(np.full(60, np.nan), labels_t, len(NAMES))


def test_image_region_table_has_one_row_per_position_and_task() -> None:
    rng = np.random.default_rng(1)
    evidence_nht = rng.normal(size=(3, 2, 12))
    labels_nt = rng.integers(0, len(NAMES), (3, 12))
    table = image_region_table(evidence_nht, labels_nt, NAMES, ("mass", "calcification"))
    assert len(table) == 6 and list(table["task"]) == ["mass", "calcification"] * 3
    assert "share_box_mass" in table and "logit_box_calcification" in table
    row = table[(table["position"] == 2) & (table["task"] == "calcification")].iloc[0]
    shares = np.array([row[f"share_{n.replace(':', '_')}"] for n in NAMES])
    logits = np.array([row[f"logit_{n.replace(':', '_')}"] for n in NAMES])
    assert np.allclose(shares, region_shares(evidence_nht[2, 1], labels_nt[2], len(NAMES)))
    assert np.allclose(logits, region_sums(evidence_nht[2, 1], labels_nt[2], len(NAMES)))
    assert logits.sum() == pytest.approx(evidence_nht[2, 1].sum())
    assert row["positive_total"] == pytest.approx(np.maximum(evidence_nht[2, 1], 0).sum())
    with pytest.raises(EvidenceRegionError, match="heads = 3"):
        image_region_table(evidence_nht, labels_nt, NAMES, ("a", "b", "c"))


def test_evidence_groups_by_hand() -> None:
    # 4 x 5 grid; a mass box at (1, 1); a calcification box at (3, 4); marker at (0, 4); border column 0
    labels = np.full((4, 5), B)
    labels[:, 0] = BO
    labels[1, 1] = BM
    labels[3, 4] = BC
    labels[0, 4] = MK
    labels[2, 2] = S
    labels[3, 3] = BG
    g = evidence_groups(labels.reshape(1, -1), NAMES, (4, 5), "mass", near_tokens=1)
    g = g.reshape(4, 5)
    name = np.array(GROUPS)[g]
    expect = np.array(
        [
            ["off_breast", "near_box", "near_box", "far", "marker"],
            ["off_breast", "in_box", "near_box", "far", "far"],
            ["off_breast", "near_box", "near_box", "far", "far"],  # (2, 2) is skin, near the box
            ["off_breast", "far", "far", "off_breast", "far"],  # the calcification box counts as far
        ]
    )
    assert (name == expect).all(), name
    assert g.dtype == np.int8
    none_near = evidence_groups(labels.reshape(1, -1), NAMES, (4, 5), "mass", near_tokens=0)
    assert not (none_near == GROUPS.index("near_box")).any()
    wide = evidence_groups(labels.reshape(1, -1), NAMES, (4, 5), "mass", near_tokens=2).reshape(4, 5)
    assert np.array(GROUPS)[wide[3, 3]] == "off_breast" and np.array(GROUPS)[wide[3, 2]] == "near_box"
    assert np.array(GROUPS)[wide[1, 4]] == "far"  # Chebyshev distance 3
    with pytest.raises(EvidenceRegionError, match="box:density"):
        evidence_groups(labels.reshape(1, -1), NAMES, (4, 5), "density", near_tokens=1)


def test_split_difference_shares_on_hand_made_numbers() -> None:
    # two tokens per image: token 0 in the box, token 1 off the breast
    groups_nt = np.array([[0, 3]] * 4, dtype=np.int8)
    evidence_nt = np.array([[3.0, 1.0], [5.0, 1.0], [1.0, 0.0], [1.0, 2.0]])
    y_n = np.array([1, 1, 0, 0])
    table = split_difference_shares(evidence_nt, groups_nt, y_n).set_index("group")
    # class 1: in_box mean 4, off_breast 1; class 0: in_box 1, off_breast 1 -> differences 3 and 0
    assert table.loc["in_box", "mean_positive"] == 4 and table.loc["in_box", "mean_negative"] == 1
    assert table.loc["in_box", "difference"] == 3 and table.loc["off_breast", "difference"] == 0
    assert table.loc["in_box", "share"] == 1 and table.loc["off_breast", "share"] == 0
    assert table["share"].sum() == pytest.approx(1.0) and (table["note"] == "").all()
    assert table.attrs["total"] == pytest.approx(3.0)
    assert np.allclose(group_sums(evidence_nt, groups_nt).sum(axis=1), evidence_nt.sum(axis=1))
    # a negative share: off-breast evidence higher in class 0 than in class 1
    evidence_nt[2:, 1] = [3.0, 4.0]
    t = split_difference_shares(evidence_nt, groups_nt, y_n).set_index("group")
    assert t.loc["off_breast", "share"] == pytest.approx(-2.5 / 0.5) and t["share"].sum() == pytest.approx(1)
    flat = split_difference_shares(np.ones((4, 2)), groups_nt, y_n)
    assert flat["share"].isna().all() and (flat["note"] == "total logit difference ~0").all()
    one_class = split_difference_shares(evidence_nt, groups_nt, np.ones(4, dtype=int))
    assert one_class["share"].isna().all() and (one_class["note"] == "no negatives").all()


def test_evidence_pointing_grows_boxes_per_axis() -> None:
    grid, frame = (4, 4), (40, 80)  # footprints 20 px wide, 10 px high; centres x = 10, 30, ..; y = 5, 15, ..
    evidence_nt = np.zeros((4, 16))
    evidence_nt[:, 5] = 1.0  # peak token (1, 1): centre (30, 15)
    evidence_nt[3, [5, 9]] = 2.0  # a tie: token 5 wins, not token 9
    box = np.array([[32.0, 18.0, 50.0, 30.0]])  # misses the centre by 2 px in x and 3 px in y
    boxes = [box, box, box, np.array([[0.0, 22.0, 80.0, 40.0]])]  # image 3: only token 9's centre inside
    tolerance = [(2.0, 3.0), (2.0, 2.9), (5.0, 0.0), (0.0, 0.0)]
    hit = evidence_pointing(evidence_nt, boxes, grid, frame, tolerance)
    assert hit.tolist() == [True, False, False, False]
    assert evidence_pointing(evidence_nt[:1], [box], grid, frame, [np.array([[2.0, 3.0]])]).tolist() == [True]
    assert not evidence_pointing(evidence_nt[:1], [np.zeros((0, 4))], grid, frame, None)[0]
    assert evidence_pointing(evidence_nt[:1], [np.array([[30.0, 15.0, 30.0, 15.0]])], grid, frame)[0]
    # a box the centre hits only through the y tolerance: x already inside, y 3 px short
    y_only = [np.array([[25.0, 18.0, 50.0, 30.0]])] * 3
    tol_y = [(0.5, 3.0), (3.0, 0.5), (0.5, 0.5)]  # the last: the x tolerance used for both axes
    assert evidence_pointing(evidence_nt[:3], y_only, grid, frame, tol_y).tolist() == [True, False, False]
    with pytest.raises(EvidenceRegionError, match="entries for 4 images"):
        evidence_pointing(evidence_nt, boxes[:3], grid, frame)


def test_box_tolerances_are_per_axis() -> None:
    boxes = pd.DataFrame(
        {
            "position": [0, 0],
            "xmin": [0.0, 10.0],
            "xmax": [100.0, 10.0],
            "ymin": [0.0, 0.0],
            "ymax": [200.0, 50.0],
            "frame_x0": [0.0, 5.0],
            "frame_x1": [50.0, 5.0],
            "frame_y0": [0.0, 0.0],
            "frame_y1": [50.0, 12.5],
        }
    )
    tol = box_tolerances_xy(boxes, 10.0)
    assert np.allclose(tol, [[5.0, 2.5], [5.0, 2.5]])  # the degenerate box borrows the image's x scale
