"""Sparse probes against brute force on tiny problems: the chosen features, the fitted logistic
regression and its held-out AUROC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mammo_sae.analysis.probing import (
    ProbeError,
    fit_logistic,
    pca_projection,
    separation,
    sparse_probe,
    top_features,
)
from mammo_sae.core.metrics import auroc


def _problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    x = rng.normal(size=(n, 8))
    x[:, 2] += 1.5 * y  # the informative features
    x[:, 5] -= 0.8 * y
    return x, y


def test_the_chosen_features_are_the_brute_force_best() -> None:
    x, y = _problem(300, 0)
    brute = [abs(x[y == 1, j].mean() - x[y == 0, j].mean()) / np.sqrt(
        (x[y == 1, j].var() * (y == 1).sum() + x[y == 0, j].var() * (y == 0).sum()) / len(y)) for j in range(8)]  # fmt: skip
    np.testing.assert_allclose(separation(x, y), brute)
    assert top_features(x, y, 2).tolist() == [2, 5]


def test_newton_reaches_the_minimum_a_brute_force_search_finds() -> None:
    x, y = _problem(120, 1)
    x = x[:, [2, 5]]
    w, b = fit_logistic(x, y, l2=0.05)

    def objective(w_: np.ndarray, b_: float) -> float:
        z = x @ w_ + b_
        return float(np.mean(np.logaddexp(0, z) - y * z) + 0.025 * w_ @ w_)

    grid = np.linspace(-3, 3, 61)
    best = min(itertools.product(grid, grid, grid), key=lambda t: objective(np.array(t[:2]), t[2]))
    assert objective(w, b) <= objective(np.array(best[:2]), best[2]) + 1e-9
    np.testing.assert_allclose([*w, b], best, atol=0.1)


def test_the_probe_scores_held_out_images_and_beats_chance_only_with_signal() -> None:
    x, y = _problem(400, 2)
    result = sparse_probe(x[:300], y[:300], x[300:], y[300:], k=2)
    assert result.features.tolist() == [2, 5] and result.auroc > 0.8  # ideal: Phi(1.7 / sqrt 2) = 0.885
    scores = (
        (x[300:, [2, 5]] - x[:300, [2, 5]].mean(0)) / x[:300, [2, 5]].std(0)
    ) @ result.weights + result.bias
    assert result.auroc == pytest.approx(auroc(y[300:], scores))
    noise = np.random.default_rng(3).normal(size=(400, 8))
    assert abs(sparse_probe(noise[:300], y[:300], noise[300:], y[300:], k=2).auroc - 0.5) < 0.15
    with pytest.raises(ProbeError, match="both classes"):
        sparse_probe(x[:10], np.zeros(10, int), x[10:20], y[10:20], k=1)
    with pytest.raises(ProbeError, match="features asked"):
        sparse_probe(x[:300], y[:300], x[300:], y[300:], k=9)


def test_pca_directions_are_the_largest_variance_ones() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3)) * np.array([5.0, 1.0, 0.2])
    mean, components = pca_projection(x, 2)
    np.testing.assert_allclose(np.abs(components), [[1, 0, 0], [0, 1, 0]], atol=0.05)
    np.testing.assert_allclose(mean, x.mean(axis=0))


def test_the_probe_table_scores_the_sae_beside_both_baselines_on_the_same_split() -> None:
    from mammo_sae.analysis.probing import probe_table

    rng = np.random.default_rng(5)
    n = 300
    y = (rng.random(n) < 0.5).astype(float)
    channels = rng.normal(size=(n, 12))
    latents = np.abs(rng.normal(size=(n, 40)))
    latents[:, 7] += 2.0 * y  # one latent carries the target; the channels only weakly
    channels[:, 3] += 0.5 * y
    unknown = y.copy()
    unknown[:20] = np.nan  # unknown labels are left out, not negatives
    train = np.arange(n) < 200
    table = probe_table(latents, channels, {"finding": unknown, "one class": np.zeros(n)}, train, ks=(1, 5))
    assert set(table["target"]) == {"finding"}, "a target with one class is left out"
    assert len(table) == 6 and set(table["source"]) == {"sae", "channels", "pca"}
    best = table.set_index(["source", "k"])["auroc"]
    assert best["sae", 1] > 0.9 and best["sae", 1] > best["channels", 1] > 0.5
    assert table.iloc[0]["features"] == [7] and (table["n_train"] == 180).all()
