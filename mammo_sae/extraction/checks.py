"""Checks on what an extraction wrote, where a degenerate encoder is first visible: features that are (nearly)
the same for every image (a broken or random-weight checkpoint). The warnings go into the store's metadata
and the command's output; the store is still written, so the numbers can be looked at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mammo_sae.store.format import shard_features_name, shard_index_name

#: across-image spread at fixed token positions below this fraction of the features' scale: the same image
SPREAD_FLOOR = 1e-4
SAMPLE_IMAGES = 64  # images read back (from the first shards) for the check


def cross_image_spread(features_td: np.ndarray, index: pd.DataFrame) -> tuple[float, float] | None:
    """(root-mean-square deviation of each token from the mean over images of its grid cell, root-mean-square of
    the features), over the cells sampled on at least two images; None when no cell is. A feature map that does
    not depend on the image has spread 0 whatever its spatial pattern."""
    assert len(features_td) == len(index), "one index row per token"
    x_td = np.asarray(features_td, dtype=np.float64)
    cell_t = (index["row"].to_numpy(np.int64) << 20) + index["col"].to_numpy(np.int64)
    cells, inverse, counts = np.unique(cell_t, return_inverse=True, return_counts=True)
    shared_t = counts[inverse] >= 2
    if not shared_t.any():
        return None
    sums_cd = np.zeros((len(cells), x_td.shape[1]))
    np.add.at(sums_cd, inverse, x_td)
    deviation_td = x_td - sums_cd[inverse] / counts[inverse][:, None]
    spread = float(np.sqrt(np.mean(deviation_td[shared_t] ** 2)))
    return spread, float(np.sqrt(np.mean(x_td**2)))


def sample_shards(
    store: Path, shards: list[int], images: int = SAMPLE_IMAGES
) -> tuple[np.ndarray, pd.DataFrame]:
    """Features and index rows of the first ``shards`` until ``images`` images are covered."""
    features, rows, seen = [], [], 0
    for k in shards:
        index = pd.read_parquet(store / shard_index_name(k), columns=["image_id", "row", "col"])
        features.append(np.load(store / shard_features_name(k), mmap_mode="r")[: len(index)])
        rows.append(index)
        seen += index["image_id"].nunique()
        if seen >= images:
            break
    if not rows:
        return np.zeros((0, 0), np.float32), pd.DataFrame(columns=["image_id", "row", "col"])
    return np.concatenate(features), pd.concat(rows, ignore_index=True)


def feature_warnings(store: Path, shards: list[int]) -> list[str]:
    """A warning when the stored features barely vary across images (checked on the first shards)."""
    try:
        features_td, index = sample_shards(store, shards)
    except (OSError, ValueError):
        return []  # a damaged shard: finalize reports it with its repair
    if index["image_id"].nunique() < 2:
        return []
    measured = cross_image_spread(features_td, index)
    if measured is None:
        return []
    spread, scale = measured
    if scale == 0:
        return ["every stored feature is zero: the encoder's weights are broken or its layer is dead"]
    if spread <= SPREAD_FLOOR * scale:
        return [
            f"the features are (nearly) the same for every image: at the same token position they differ across "
            f"images by {spread:.2e} (rms) against a feature scale of {scale:.3g}; the encoder's weights are "
            "likely broken or random, and an SAE or an analysis of these features will measure noise"
        ]
    return []
