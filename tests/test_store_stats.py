"""Streaming feature statistics equal numpy's on the whole array, however the stream is cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_fixtures import write_synthetic_store

from mammo_sae.store import StoreError, streaming_stats
from mammo_sae.store.stats import RunningStats


def test_streaming_stats_match_numpy_on_the_full_array(tmp_path: Path) -> None:
    reader = write_synthetic_store(tmp_path, n_images=23, d=48, tokens_per_image=10, images_per_shard=5)
    x = reader.features(dtype=np.float64)
    for batch_size in (7, 64, 10_000):
        stats = streaming_stats(reader, batch_size=batch_size)
        assert stats.n == len(x) == 230
        np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats.var, x.var(axis=0), rtol=1e-10)
        assert stats.mean_norm == pytest.approx(np.linalg.norm(x, axis=1).mean(), rel=1e-12)
    part = streaming_stats(reader, shards=[1, 2])
    np.testing.assert_allclose(part.mean, x[50:150].mean(axis=0), rtol=1e-12)


def test_merging_batches_is_stable_far_from_zero() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 8)) * 1e-3 + 1e4  # tiny variance on a huge mean
    whole = RunningStats(8)
    for chunk in np.array_split(x, 37):
        whole.update(chunk)
    result = whole.result()
    np.testing.assert_allclose(result.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(result.var, x.var(axis=0), rtol=1e-6)
    with pytest.raises(StoreError, match="empty"):
        RunningStats(8).result()
    with pytest.raises(StoreError, match=r"shape \(tokens, 8\)"):
        whole.update(np.zeros((2, 3)))
