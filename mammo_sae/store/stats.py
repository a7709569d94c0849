"""Per-feature mean and variance and the mean token norm of a store, in one streaming pass.

Batches are reduced in float64 and merged with Chan et al.'s pairwise update, so the result does not
drift with store size; partial results from several processes merge the same way.
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

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def mean_sq_norm(self) -> float:
        """Mean squared L2 norm of a token: sum over features of (var + mean^2)."""
        return float(np.sum(self.var + self.mean**2))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean_norm": self.mean_norm,
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> FeatureStats:
        return cls(
            mean=np.asarray(value["mean"], dtype=np.float64),
            var=np.asarray(value["var"], dtype=np.float64),
            mean_norm=float(value["mean_norm"]),
            n=int(value["n"]),
        )


class RunningStats:
    """Accumulates FeatureStats over batches (``update``) or partial results (``merge``)."""

    def __init__(self, d: int) -> None:
        self.d = int(d)
        self.n = 0
        self.mean = np.zeros(self.d, dtype=np.float64)
        self.m2 = np.zeros(self.d, dtype=np.float64)  # sum of squared deviations from the mean
        self.norm_mean = 0.0

    def update(self, batch: Any) -> None:
        """Add a (tokens, d) batch (numpy or torch)."""
        if hasattr(batch, "detach"):
            batch = batch.detach().cpu().numpy()
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise StoreError(f"stats expect batches of shape (tokens, {self.d}), got {x.shape}")
        if not len(x):
            return
        mean = x.mean(axis=0)
        centred = x - mean
        m2 = np.einsum("nd,nd->d", centred, centred)
        norm_mean = float(np.sqrt(np.einsum("nd,nd->n", x, x)).mean())
        self._combine(len(x), mean, m2, norm_mean)

    def merge(self, other: RunningStats) -> None:
        if other.d != self.d:
            raise StoreError(f"cannot merge stats of dimension {other.d} into {self.d}")
        if other.n:
            self._combine(other.n, other.mean, other.m2, other.norm_mean)

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray, norm_mean_b: float) -> None:
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (n_a * n_b / n)
        self.norm_mean += (norm_mean_b - self.norm_mean) * (n_b / n)
        self.n = n

    def result(self) -> FeatureStats:
        if not self.n:
            raise StoreError("no tokens were seen: statistics of an empty store are undefined")
        return FeatureStats(mean=self.mean.copy(), var=self.m2 / self.n, mean_norm=self.norm_mean, n=self.n)


def streaming_stats(
    reader: StoreReader, *, batch_size: int = 4096, shards: Sequence[int] | None = None
) -> FeatureStats:
    """One sequential pass over ``shards`` (default all); memory ~ 3 x batch_size x d x 8 bytes."""
    running = RunningStats(reader.d)
    for batch in reader.iter_batches(batch_size, shards=shards, dtype=np.float64):
        running.update(batch)
    return running.result()
