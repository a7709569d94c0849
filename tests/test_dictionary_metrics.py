"""Moran's I on hand-made maps and the best-match cosine on planted dictionaries."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_sae.analysis.dictionary_metrics import (
    DictionaryMetricError,
    best_match_cosine,
    mean_best_match,
    morans_i,
)


def test_morans_i_of_hand_made_maps() -> None:
    rows, cols = np.indices((48, 29))
    assert morans_i((rows + cols) % 2) == pytest.approx(-1.0), "a checkerboard: every neighbour differs"
    ramp = morans_i(rows.astype(float))
    assert 0.95 < ramp < 1.0, ramp
    blob = np.exp(-((rows - 20) ** 2 + (cols - 12) ** 2) / 30.0)
    assert morans_i(blob) > 0.8
    noise = np.random.default_rng(0).normal(size=(48, 29))
    assert abs(morans_i(noise)) < 0.1, "no spatial structure: near 0 (its expectation is -1/(N-1))"
    assert np.isnan(morans_i(np.ones((4, 4))))
    with pytest.raises(DictionaryMetricError, match="2-D map"):
        morans_i(np.ones(5))


def test_best_match_cosine_of_planted_dictionaries() -> None:
    rng = np.random.default_rng(1)
    dec = rng.normal(size=(512, 64))
    permuted = -3.0 * dec[rng.permutation(512)]  # same directions: order, sign and norm do not matter
    assert mean_best_match(dec, permuted) == pytest.approx(1.0)
    other = rng.normal(size=(512, 64))
    chance = mean_best_match(dec, other)
    assert 0.3 < chance < 0.6, chance  # the best of 512 random |cosines| in 64 dimensions
    half = np.concatenate([dec[:256], other[:256]])
    matched = best_match_cosine(dec, half, chunk=100)
    assert np.all(matched[:256] == pytest.approx(1.0)) and matched[256:].max() < 0.9
    with pytest.raises(DictionaryMetricError, match="all-zero"):
        best_match_cosine(np.zeros((2, 3)), dec[:, :3])
    with pytest.raises(DictionaryMetricError, match="not comparable"):
        best_match_cosine(dec, dec[:, :10])


def test_coherence_of_latents_on_planted_codes_and_seed_matches() -> None:
    from mammo_sae.analysis.codes import TokenCodes
    from mammo_sae.analysis.dictionary_metrics import latent_coherence, matched_latents

    grid = (12, 8)
    rows, cols = np.indices(grid)
    z_ntl = np.zeros((3, grid[0] * grid[1], 4), np.float32)
    blob = np.exp(-((rows - 6) ** 2 + (cols - 4) ** 2) / 6.0) * ((rows - 6) ** 2 + (cols - 4) ** 2 < 12)
    for i in range(3):
        z_ntl[i, :, 0] = blob.reshape(-1)  # latent 0: one region
        z_ntl[i, :, 1] = ((rows + cols + i) % 2).reshape(-1)  # latent 1: a checkerboard
        z_ntl[i, 5, 2] = 1.0  # latent 2: one token only (no map to judge)
    codes = TokenCodes.from_dense(z_ntl.reshape(-1, 4), grid)
    coherence = latent_coherence(codes, [0, 1, 2, 3], [0, 1, 2])
    assert coherence[0] > 0.5 and coherence[1] == pytest.approx(-1.0) and np.isnan(coherence[2:]).all()
    rng = np.random.default_rng(2)
    dec = rng.normal(size=(50, 32))
    other = np.concatenate([dec[:7] * 2, rng.normal(size=(43, 32))])
    assert matched_latents(dec, other, range(10)) == 7
