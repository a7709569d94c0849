"""Small synthetic activation stores for the tests: deterministic, any size, no model needed.

Each image's tokens and features are a pure function of (seed, image id), so two runs (or a run that was
killed and resumed) produce byte-identical shards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae import __version__
from mammo_sae.store.format import image_list_digest
from mammo_sae.store.reader import StoreReader
from mammo_sae.store.writer import StoreWriter

LABEL_COLUMNS = ("mass", "calcification")


def synthetic_image_ids(n: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def synthetic_identity(
    image_ids: Sequence[str],
    *,
    d: int = 16,
    grid: tuple[int, int] = (6, 4),
    fraction: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """An identity shaped like the extraction command's, for a synthetic backbone."""
    return {
        "backbone": {"name": "synthetic", "weights_sha256": None},
        "layer": "synthetic",
        "d": d,
        "grid": list(grid),
        "preprocessing": {"kind": "synthetic"},
        "dtype": "float16",
        "token_sampling": {"fraction": fraction, "seed": seed, "augment": False},
        "split": "training",
        "image_list_sha256": image_list_digest(image_ids),
        "package_version": __version__,
    }


def synthetic_image(
    image_id: str, *, d: int, grid: tuple[int, int], tokens: int, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """One image's sampled tokens: features (tokens, d) float16 with a non-zero mean, and index rows."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{image_id}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(key)
    cells = np.sort(rng.choice(grid[0] * grid[1], size=min(tokens, grid[0] * grid[1]), replace=False))
    offset = np.random.default_rng(seed).uniform(0.0, 2.0, size=d)  # shared per-feature means
    features = (rng.standard_normal((len(cells), d)) + offset).astype(np.float16)
    index = pd.DataFrame(
        {
            "image_id": [image_id] * len(cells),
            "row": (cells // grid[1]).astype(np.int32),
            "col": (cells % grid[1]).astype(np.int32),
            "mass": np.full(len(cells), key & 1, dtype=np.int8),
            "calcification": np.full(len(cells), (key >> 1) & 1, dtype=np.int8),
        }
    )
    return features, index


def synthetic_shard(
    image_ids: Sequence[str],
    *,
    d: int,
    grid: tuple[int, int],
    tokens_per_image: int | Sequence[int],
    seed: int = 0,
    skip: Collection[str] = (),
) -> tuple[np.ndarray, pd.DataFrame, dict[str, str]]:
    """``(features, index, skipped)`` for a shard's images, ready for ``StoreWriter.write_shard``."""
    counts = (
        [tokens_per_image] * len(image_ids) if isinstance(tokens_per_image, int) else list(tokens_per_image)
    )
    parts, tables, skipped = [], [], {}
    for image_id, count in zip(image_ids, counts, strict=True):
        if image_id in skip or count == 0:
            skipped[image_id] = "synthetic skip" if image_id in skip else "no tokens sampled"
            continue
        features, index = synthetic_image(image_id, d=d, grid=grid, tokens=count, seed=seed)
        parts.append(features)
        tables.append(index)
    features = np.concatenate(parts) if parts else np.empty((0, d), dtype=np.float16)
    index = (
        pd.concat(tables, ignore_index=True) if tables else synthetic_image("x", d=d, grid=grid, tokens=0)[1]
    )
    return features, index, skipped


def write_synthetic_store(
    parent_dir: str | os.PathLike[str],
    *,
    n_images: int = 12,
    d: int = 16,
    grid: tuple[int, int] = (6, 4),
    tokens_per_image: int = 8,
    images_per_shard: int = 4,
    seed: int = 0,
    skip: Collection[str] = (),
) -> StoreReader:
    """Write and finalize a complete synthetic store; returns its reader."""
    image_ids = synthetic_image_ids(n_images)
    writer = StoreWriter.create_or_resume(
        parent_dir,
        synthetic_identity(image_ids, d=d, grid=grid, seed=seed),
        image_ids,
        images_per_shard=images_per_shard,
        label_columns=list(LABEL_COLUMNS),
    )
    for k in writer.pending_shards():
        writer.write_shard(
            k,
            *synthetic_shard(
                writer.shard_images(k),
                d=d,
                grid=grid,
                tokens_per_image=tokens_per_image,
                seed=seed,
                skip=skip,
            ),
        )
    return writer.finalize()
