"""Deterministic token sampling: which spatial positions of a feature map go into the store.

The choice for an image depends only on (seed, image_id), never on batch, rank or order, so a
multi-process run and a resumed run pick exactly the tokens an uninterrupted single run picks.
"""

from __future__ import annotations

import hashlib

import numpy as np


def image_rng(seed: int, image_id: str, purpose: str) -> np.random.Generator:
    """A generator keyed by (seed, image_id, purpose), independent of everything else."""
    digest = hashlib.sha256(f"{purpose}:{image_id}".encode()).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def tokens_per_image(grid: tuple[int, int], fraction: float) -> int:
    """How many of the grid's tokens a fraction keeps (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tokens-per-image must be a fraction in (0, 1], got {fraction}")
    total = grid[0] * grid[1]
    return max(1, round(total * fraction))


def sample_tokens(grid: tuple[int, int], fraction: float, seed: int, image_id: str) -> np.ndarray:
    """Flat token indices (row-major over the grid), sorted; all of them when ``fraction`` is 1."""
    total = grid[0] * grid[1]
    count = tokens_per_image(grid, fraction)
    if count == total:
        return np.arange(total)
    chosen = image_rng(seed, image_id, "tokens").choice(total, size=count, replace=False)
    return np.sort(chosen)
