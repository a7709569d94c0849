"""Operating points and calibration on hand-checkable arrays: the threshold at a target specificity is the
lowest that really gives it (ties included), rates at a threshold count scores >= it as positive, Platt
scaling recovers a known slope and offset, stays finite on separable data and says so on one class, and a
perfectly calibrated simulation lies on the diagonal of its reliability bins."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mammo_sae.analysis.operating_points import (
    OperatingPointError,
    expected_calibration_error,
    fit_platt,
    rates_at,
    reliability_bins,
    sigmoid,
    threshold_at_specificity,
)
from mammo_sae.analysis.reliability_chart import reliability_chart, series_ece

SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
LABELS = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1])  # negatives 0.1..0.5 and 0.7


def test_the_threshold_at_a_specificity_is_the_lowest_that_gives_it() -> None:
    # 6 negatives; 5/6 = 83% must score below: above 0.5, the lowest observed score is 0.6
    assert threshold_at_specificity(SCORES, LABELS, 0.8) == 0.6
    assert rates_at(SCORES, LABELS, 0.6) == pytest.approx((1.0, 5 / 6))
    # 100%: above the highest negative (0.7) -> 0.8; sensitivity loses the positive at 0.6
    assert threshold_at_specificity(SCORES, LABELS, 1.0) == 0.8
    assert rates_at(SCORES, LABELS, 0.8) == (0.75, 1.0)
    # 50%: 3 negatives below -> above 0.3 -> 0.4
    assert threshold_at_specificity(SCORES, LABELS, 0.5) == 0.4
    assert threshold_at_specificity(SCORES, LABELS, 0.0) == 0.1  # everything passes


def test_tied_scores_fall_on_one_side_so_the_stated_specificity_is_real() -> None:
    scores = np.array([0.2, 0.5, 0.5, 0.5, 0.9, 0.5])
    labels = np.array([0, 0, 0, 0, 1, 1])
    threshold = threshold_at_specificity(scores, labels, 0.5)  # 2 of 4 negatives below: above 0.5
    assert threshold == 0.9
    sensitivity, specificity = rates_at(scores, labels, threshold)
    assert specificity == 1.0 and sensitivity == 0.5  # the tie pushed it past the target, never under


def test_a_threshold_above_every_score_is_just_above_the_highest_negative() -> None:
    scores, labels = np.array([0.1, 0.9]), np.array([1, 0])
    threshold = threshold_at_specificity(scores, labels, 1.0)
    assert 0.9 < threshold < 0.9 + 1e-12
    assert rates_at(scores, labels, threshold) == (0.0, 1.0)


@pytest.mark.parametrize("target", [-0.1, 1.5, "0.9", float("nan")])
def test_a_bad_target_is_refused(target) -> None:
    with pytest.raises(OperatingPointError, match="target specificity"):
        threshold_at_specificity(SCORES, LABELS, target)


def test_no_negatives_or_bad_labels_are_refused_with_a_reason() -> None:
    with pytest.raises(OperatingPointError, match="no negative"):
        threshold_at_specificity(SCORES, np.ones(10), 0.9)
    with pytest.raises(OperatingPointError, match="0 or 1"):
        threshold_at_specificity(SCORES, np.full(10, 2), 0.9)
    with pytest.raises(OperatingPointError, match="same length"):
        rates_at(SCORES, LABELS[:3], 0.5)
    sensitivity, specificity = rates_at(SCORES, np.zeros(10), 0.5)
    assert math.isnan(sensitivity) and specificity == pytest.approx(0.4)


def test_platt_scaling_recovers_a_known_slope_and_offset() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 2.0, 40_000)
    labels = rng.random(40_000) < sigmoid(1.7 * logits - 0.6)
    fit = fit_platt(logits, labels)
    assert fit.method == "platt" and fit.n == 40_000
    assert fit.a == pytest.approx(1.7, abs=0.05) and fit.b == pytest.approx(-0.6, abs=0.05)
    assert np.allclose(fit.apply(logits), sigmoid(fit.a * logits + fit.b))


def test_platt_scaling_is_finite_on_separable_data_and_keeps_the_order() -> None:
    logits, labels = np.array([-3.0, -1.0, 1.0, 3.0]), np.array([0, 0, 1, 1])
    fit = fit_platt(logits, labels)
    assert math.isfinite(fit.a) and 0 < fit.a < 10 and abs(fit.b) < 1e-9  # symmetric data: no offset
    probabilities = fit.apply(logits)
    assert (np.diff(probabilities) > 0).all() and probabilities.min() > 0 and probabilities.max() < 1
    constant = fit_platt(np.ones(5), np.array([0, 1, 0, 1, 1]))  # no spread in the logits: a base rate
    assert constant.apply(np.ones(1))[0] == pytest.approx((3 + 1) / (3 + 2) * 3 / 5 + 1 / 4 * 2 / 5, abs=1e-6)


def test_one_class_is_an_error_or_an_identity_that_says_so() -> None:
    with pytest.raises(OperatingPointError, match="positive and negative"):
        fit_platt(np.array([0.1, 0.2]), np.array([1, 1]))
    fit = fit_platt(np.array([0.1, 0.2]), np.array([0, 0]), one_class="identity")
    assert (fit.a, fit.b, fit.method) == (1.0, 0.0, "identity") and "only negative" in fit.note
    assert fit.apply(np.array([0.0]))[0] == 0.5


def test_a_calibrated_simulation_lies_on_the_diagonal() -> None:
    rng = np.random.default_rng(3)
    probabilities = rng.random(50_000)
    labels = rng.random(50_000) < probabilities
    for strategy in ("uniform", "quantile"):
        table = reliability_bins(probabilities, labels, bins=10, strategy=strategy)
        assert len(table) == 10 and table["count"].sum() == 50_000
        assert np.allclose(table["observed"], table["mean_predicted"], atol=0.03)
        assert expected_calibration_error(table) < 0.01
    miscalibrated = reliability_bins(probabilities**3, labels, bins=10)
    assert expected_calibration_error(miscalibrated) > 0.1


def test_reliability_bins_by_hand() -> None:
    table = reliability_bins(np.array([0.05, 0.15, 0.15, 1.0]), np.array([0, 1, 0, 1]), bins=10)
    assert table["bin"].tolist() == [0, 1, 9]  # empty bins are left out; 1.0 falls in the last
    assert table["count"].tolist() == [1, 2, 1]
    assert np.allclose(table["observed"], [0.0, 0.5, 1.0])
    assert np.allclose(table["mean_predicted"], [0.05, 0.15, 1.0])
    assert expected_calibration_error(table) == pytest.approx((0.05 + 2 * 0.35 + 0) / 4)
    quantile = reliability_bins(np.full(4, 0.3), np.array([0, 1, 0, 1]), bins=4, strategy="quantile")
    assert quantile["count"].tolist() == [4]  # ties share one bin
    with pytest.raises(OperatingPointError, match="in \\[0, 1\\]"):
        reliability_bins(np.array([2.0]), np.array([1]))
    with pytest.raises(OperatingPointError, match="bin strategy"):
        reliability_bins(np.array([0.2]), np.array([1]), strategy="equal")


def test_the_reliability_chart_has_a_panel_per_head_with_its_ece() -> None:
    rng = np.random.default_rng(0)
    parts = []
    for head in ("mass", "calcification"):
        p = rng.random(500)
        y = rng.random(500) < p
        parts += [
            reliability_bins(p, y).assign(head=head, series="calibrated"),
            reliability_bins(p**2, y).assign(head=head, series="classifier's own"),
        ]
    table = pd.concat(parts, ignore_index=True)
    spec = reliability_chart(table).to_dict()
    assert len(spec["hconcat"]) == 2
    eces = series_ece(table)
    first = eces[eces["head"] == "mass"]
    subtitle = spec["hconcat"][0]["title"]["subtitle"]
    assert (
        subtitle.startswith(f"ECE {first['ece'].iloc[0]:.3f} calibrated") and "classifier's own" in subtitle
    )
    with pytest.raises(OperatingPointError, match="lacks columns"):
        reliability_chart(table.drop(columns="count"))
