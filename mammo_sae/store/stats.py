"""Per-feature mean and variance and the mean token norm of a store, in one streaming pass.

Batches are reduced in float64 and merged with Chan et al.'s pairwise update, so the result does not
drift with store size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mammo_sae.store.format import StoreError

if TYPE_CHECKING:
    from mammo_sae.store.reader import StoreReader


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """``mean`` and ``var`` (population variance, ddof=0) per feature, shape (d,), float64; ``mean_norm`` is
    the mean L2 norm of a token; ``n`` the number of tokens."""

    mean: np.ndarray
    var: np.ndarray
    mean_norm: float
    n: int


class RunningStats:
    """Accumulates FeatureStats over batches (``update``), merging each batch with Chan's pairwise update."""

    def __init__(self, d: int) -> None:
        self.d = int(d)
        self.n = 0
        self.mean = np.zeros(self.d, dtype=np.float64)
        self.m2 = np.zeros(self.d, dtype=np.float64)  # sum of squared deviations from the mean
        self.norm_mean = 0.0

    def update(self, batch: Any) -> None:
        """Add a [tokens, d] batch (numpy or torch)."""
        if hasattr(batch, "detach"):
            batch = batch.detach().cpu().numpy()
        x_bd = np.asarray(batch, dtype=np.float64)
        if x_bd.ndim != 2 or x_bd.shape[1] != self.d:
            raise StoreError(f"stats expect batches of shape (tokens, {self.d}), got {x_bd.shape}")
        if not len(x_bd):
            return
        mean_d = x_bd.mean(axis=0)
        centred_bd = x_bd - mean_d
        m2_d = np.einsum("nd,nd->d", centred_bd, centred_bd)
        norm_mean = float(np.sqrt(np.einsum("nd,nd->n", x_bd, x_bd)).mean())
        self._combine(len(x_bd), mean_d, m2_d, norm_mean)

    def _combine(self, n_b: int, mean_b_d: np.ndarray, m2_b_d: np.ndarray, norm_mean_b: float) -> None:
        """Chan et al.'s merge of partial result b (n_b tokens) into this one (a)."""
        assert mean_b_d.shape == m2_b_d.shape == (self.d,), (mean_b_d.shape, m2_b_d.shape)
        n_a = self.n
        n = n_a + n_b
        delta_d = mean_b_d - self.mean
        self.mean = self.mean + delta_d * (n_b / n)
        self.m2 = self.m2 + m2_b_d + delta_d**2 * (n_a * n_b / n)
        self.norm_mean += (norm_mean_b - self.norm_mean) * (n_b / n)
        self.n = n

    def result(self) -> FeatureStats:
        if not self.n:
            raise StoreError("no tokens were seen: statistics of an empty store are undefined")
        return FeatureStats(mean=self.mean.copy(), var=self.m2 / self.n, mean_norm=self.norm_mean, n=self.n)


def streaming_stats(
    reader: StoreReader,
    *,
    batch_size: int = 4096,
    shards: Sequence[int] | None = None,
    tokens: np.ndarray | None = None,
) -> FeatureStats:
    """One sequential pass over ``shards`` (default all; only ``tokens`` of them if given); memory
    ~ 3 x batch_size x d x 8 bytes."""
    running = RunningStats(reader.d)
    for x_bd in reader.iter_batches(batch_size, shards=shards, tokens=tokens, dtype=np.float64):
        running.update(x_bd)
    return running.result()
