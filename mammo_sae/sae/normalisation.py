"""Input normalisation ``center-scale``: train on ``(x - mean) * scale`` with ``scale = sqrt(d) /
E||x - mean||`` over the training tokens, and fold it back into the saved weights (FACTS 7: post-SiLU CNN
features are far from zero mean, which kills latents).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mammo_sae.core.errors import TrainError
from mammo_sae.store import StoreReader, streaming_stats


def normalisation_stats(
    reader: StoreReader, shards: Sequence[int], batch_size: int, tokens: np.ndarray | None = None
) -> dict[str, Any]:
    """Mean of the training tokens and the scale that gives the centred tokens a mean norm of sqrt(d)
    (two sequential passes over ``shards``, narrowed to ``tokens`` if given)."""
    stats = streaming_stats(reader, batch_size=batch_size, shards=shards, tokens=tokens)
    total, count = 0.0, 0
    for x_bd in reader.iter_batches(batch_size, shards=shards, tokens=tokens, dtype=np.float64):
        total += float(np.linalg.norm(x_bd - stats.mean, axis=1).sum())
        count += len(x_bd)
    mean_norm_centred = total / count
    if not mean_norm_centred > 0 or not math.isfinite(mean_norm_centred):
        raise TrainError(
            f"the training tokens of {reader.path} have a mean centred norm of {mean_norm_centred}: "
            "--normalize center-scale needs tokens that are finite and not all equal"
        )
    return {
        "kind": "center-scale",
        "mean": torch.from_numpy(stats.mean),
        "scale": math.sqrt(reader.d) / mean_norm_centred,
        "mean_norm_centred": mean_norm_centred,
        "mean_norm_raw": stats.mean_norm,
        "n_tokens": stats.n,
    }
