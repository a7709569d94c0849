"""AUROC and average precision: brute-force agreement with ties, hand cases, NaN rules, column versions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mammo_sae.core.metrics import MetricError, auprc, auprc_columns, auroc, auroc_columns


def brute_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Every positive-negative pair: 1 if the positive scores higher, 1/2 on a tie."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def brute_auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold by threshold (distinct scores, descending): sum of (R_i - R_{i-1}) P_i."""
    total, recall_prev = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        predicted = scores >= threshold
        true_pos = (labels[predicted] == 1).sum()
        recall = true_pos / labels.sum()
        total += (recall - recall_prev) * true_pos / predicted.sum()
        recall_prev = recall
    return total


def tied_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and integer-valued scores with many ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = rng.integers(0, 8, n).astype(np.float64) + 0.5 * labels * rng.integers(0, 2, n)
    return labels, scores


@pytest.mark.parametrize("seed", range(6))
def test_scalar_metrics_match_brute_force_with_ties(seed: int) -> None:
    labels, scores = tied_data(seed, 60 + 13 * seed)
    assert auroc(labels, scores) == pytest.approx(brute_auroc(labels, scores), abs=1e-12)
    assert auprc(labels, scores) == pytest.approx(brute_auprc(labels, scores), abs=1e-12)


def test_hand_cases() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auroc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auprc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(labels, np.zeros(4)) == 0.5
    assert auprc(labels, np.zeros(4)) == 0.5  # one threshold: precision = prevalence
    # scikit-learn's documented example: AP 0.8333, AUROC 0.75.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert auprc(labels, scores) == pytest.approx(5 / 6)
    assert auroc(labels, scores) == pytest.approx(0.75)
    # A tie group is one threshold: thresholds 3 (P 1, R 1/2) and 2 (P 2/3, R 1).
    assert auprc(np.array([1, 1, 0, 0]), np.array([3.0, 2.0, 2.0, 1.0])) == pytest.approx(5 / 6)
    assert auroc(np.array([True, False]), np.array([1, 0])) == 1.0  # bool labels, integer scores


def test_nan_when_a_class_is_absent() -> None:
    scores = np.array([0.3, 0.1, 0.2])
    assert math.isnan(auroc(np.ones(3), scores))
    assert math.isnan(auroc(np.zeros(3), scores))
    assert math.isnan(auprc(np.zeros(3), scores))
    assert auprc(np.ones(3), scores) == 1.0  # no negatives: every threshold has precision 1
    assert np.isnan(auroc_columns(np.zeros(3), np.ones((3, 2)))).all()


def test_column_versions_equal_the_scalar_ones() -> None:
    rng = np.random.default_rng(7)
    labels = (rng.random(80) < 0.4).astype(np.int64)
    scores_nm = rng.integers(0, 5, (80, 9)).astype(np.float32)
    scores_nm[:, 0] = labels  # perfect column
    scores_nm[:, 1] = 1.0  # all tied
    scores_nm[:, 2] = rng.standard_normal(80)  # no ties
    auroc_m, auprc_m = auroc_columns(labels, scores_nm), auprc_columns(labels, scores_nm)
    assert auroc_m.shape == auprc_m.shape == (9,)
    for j in range(9):
        assert auroc_m[j] == pytest.approx(auroc(labels, scores_nm[:, j]), abs=1e-12)
        assert auprc_m[j] == pytest.approx(brute_auprc(labels, scores_nm[:, j]), abs=1e-12)
    assert auroc_m[0] == 1.0 and auroc_m[1] == 0.5


def test_bad_inputs_say_what_to_fix() -> None:
    with pytest.raises(MetricError, match="0/1"):
        auroc(np.array([0, 2, 1]), np.zeros(3))
    with pytest.raises(MetricError, match="NaN"):
        auprc(np.array([0, 1]), np.array([0.0, np.nan]))
    with pytest.raises(MetricError, match=r"n = len\(labels\) = 3"):
        auroc_columns(np.array([0, 1, 1]), np.zeros((4, 2)))
    with pytest.raises(MetricError, match="_columns"):
        auroc(np.array([0, 1]), np.zeros((2, 2)))
