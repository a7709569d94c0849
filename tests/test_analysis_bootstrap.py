"""Study-level bootstrap: a case small enough to enumerate every resample by hand, the vectorised statistics
against brute force on the repeated images, undefined resamples, determinism, and the interval's shape."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mammo_sae.analysis.bootstrap import (
    BootstrapError,
    auroc_statistic,
    rate_statistic,
    study_bootstrap,
    study_weights,
)
from mammo_sae.core.metrics import auroc


def test_two_studies_give_the_three_resamples_worked_out_by_hand() -> None:
    """Study A holds two images of value 1, study B one of value 3. Drawing two studies with replacement:
    AA (p 1/4) -> mean 1, AB or BA (p 1/2) -> (1 + 1 + 3) / 3 = 5/3, BB (p 1/4) -> 3."""
    groups = np.array(["A", "A", "B"])
    values = np.array([1.0, 1.0, 3.0])
    result = study_bootstrap(rate_statistic, groups, values, n_boot=4000, seed=1)
    assert result.estimate == pytest.approx(5 / 3)
    assert (result.low, result.high) == (pytest.approx(1.0), pytest.approx(3.0))
    outcomes, counts = np.unique(np.round(result.values, 9), return_counts=True)
    assert outcomes.tolist() == pytest.approx([1.0, 5 / 3, 3.0])
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert result.undefined_share == 0.0 and result.n_groups == 2


def test_a_statistic_undefined_on_some_resamples_reports_their_share() -> None:
    """AUROC over study A (only positives) and B (only negatives): AA and BB lack a class (p 1/2 together)."""
    groups = np.array([0, 0, 1, 1])
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.2])
    result = study_bootstrap(auroc_statistic, groups, labels, scores, n_boot=2000, seed=0)
    assert result.estimate == 1.0
    assert result.undefined_share == pytest.approx(0.5, abs=0.04)
    assert (result.low, result.high) == (1.0, 1.0)
    assert len(result.values) == round(2000 * (1 - result.undefined_share))
    never = study_bootstrap(auroc_statistic, groups, np.ones(4), scores, n_boot=10)  # no negatives at all
    assert never.undefined_share == 1.0 and np.isnan(never.low) and np.isnan(never.high)


def test_study_weights_count_each_draw_of_a_study_for_all_its_images() -> None:
    groups = np.array([5, 5, 7, 9, 9, 9])
    weights = study_weights(groups, 50, seed=3)
    assert weights.shape == (50, 6)
    # per resample: 3 draws in all, and the images of a study share its count
    per_study = weights[:, [0, 2, 3]]
    assert (per_study.sum(axis=1) == 3).all()
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()


def random_cohort(rng: np.random.Generator, studies: int, per_study: int = 4):
    """Images clustered by study: a study-level offset plus image noise, labels from the score."""
    groups = np.repeat(np.arange(studies), per_study)
    offset = rng.normal(size=studies)[groups]
    scores = offset + rng.normal(size=len(groups))
    labels = (offset + 0.7 * rng.normal(size=len(groups)) > 0).astype(int)
    return groups, labels, scores


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_statistics_equal_the_brute_force_on_the_drawn_images(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups, labels, scores = random_cohort(rng, 12)
    scores[::5] = scores[1::5][: len(scores[::5])]  # some ties
    hits = rng.random(len(groups)) < 0.6
    mask = rng.random(len(groups)) < 0.7

    def plain_auroc(y, s):
        return auroc(y, s)

    def plain_rate(v, m):
        return float(v[m].mean()) if m.any() else float("nan")

    fast = study_bootstrap(auroc_statistic, groups, labels, scores, n_boot=200, seed=seed)
    slow = study_bootstrap(plain_auroc, groups, labels, scores, n_boot=200, seed=seed)
    assert fast.estimate == pytest.approx(auroc(labels, scores))
    np.testing.assert_allclose(fast.values, slow.values, rtol=1e-12)
    assert (fast.low, fast.high, fast.undefined_share) == (
        pytest.approx(slow.low),
        pytest.approx(slow.high),
        slow.undefined_share,
    )
    fast = study_bootstrap(auroc_statistic, groups, labels, scores, mask, n_boot=200, seed=seed)
    slow = study_bootstrap(
        lambda y, s, m: auroc(y[m], s[m]), groups, labels, scores, mask, n_boot=200, seed=seed
    )
    np.testing.assert_allclose(fast.values, slow.values, rtol=1e-12)
    assert fast.estimate == pytest.approx(auroc(labels[mask], scores[mask]))
    fast = study_bootstrap(rate_statistic, groups, hits, mask, n_boot=200, seed=seed)
    slow = study_bootstrap(plain_rate, groups, hits, mask, n_boot=200, seed=seed)
    np.testing.assert_allclose(fast.values, slow.values, rtol=1e-12)
    assert fast.estimate == pytest.approx(hits[mask].mean())


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    groups, labels, scores = random_cohort(np.random.default_rng(0), 40)
    a = study_bootstrap(auroc_statistic, groups, labels, scores, seed=7)
    b = study_bootstrap(auroc_statistic, groups, labels, scores, seed=7)
    c = study_bootstrap(auroc_statistic, groups, labels, scores, seed=8)
    assert tuple(a) == tuple(b) and np.array_equal(a.values, b.values)
    assert tuple(a) != tuple(c)
    estimate, low, high = a  # unpacks as a triple
    assert low <= estimate <= high


@pytest.mark.parametrize("seed", range(5))
def test_the_interval_holds_the_estimate_and_widens_with_fewer_studies(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    groups, labels, scores = random_cohort(rng, 160)
    full = study_bootstrap(auroc_statistic, groups, labels, scores, seed=seed)
    few = groups < 20
    part = study_bootstrap(auroc_statistic, groups[few], labels[few], scores[few], seed=seed)
    for interval in (full, part):
        assert interval.low <= interval.estimate <= interval.high
    assert part.high - part.low > 1.5 * (full.high - full.low)
    # the same images counted as independent studies give a narrower (overconfident) interval
    images = study_bootstrap(auroc_statistic, np.arange(len(groups)), labels, scores, seed=seed)
    assert images.high - images.low < full.high - full.low


def test_a_thousand_auroc_resamples_of_320_images_are_fast() -> None:
    groups, labels, scores = random_cohort(np.random.default_rng(0), 80)
    assert len(groups) == 320
    start = time.perf_counter()
    study_bootstrap(auroc_statistic, groups, labels, scores, n_boot=1000)
    assert time.perf_counter() - start < 1.0


def test_bad_arguments_are_refused() -> None:
    groups = np.array([0, 1])
    with pytest.raises(BootstrapError, match="one row per image"):
        study_bootstrap(rate_statistic, groups, np.ones(3))
    with pytest.raises(BootstrapError, match="n_boot"):
        study_bootstrap(rate_statistic, groups, np.ones(2), n_boot=0)
    with pytest.raises(BootstrapError, match="level"):
        study_bootstrap(rate_statistic, groups, np.ones(2), level=95)
    with pytest.raises(BootstrapError, match="non-empty"):
        study_bootstrap(rate_statistic, np.array([]), np.array([]))
