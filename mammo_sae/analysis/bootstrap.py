"""Study-level bootstrap intervals: the images of a mammography study share a patient, so they are not
independent draws, and an interval over images would be too narrow. Each resample draws the studies with
replacement and recomputes the statistic on the images of the drawn studies (a study drawn twice counts
twice); the interval is the percentile interval of the resampled statistics.

A resample is a vector of image weights (how often each image's study was drawn), so statistics that can
take weights (``WeightedStatistic``: ``auroc_statistic``, ``rate_statistic``) run all resamples at once; any
other callable is evaluated once per resample on the repeated images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mammo_sae.core.errors import MammoSaeError


class BootstrapError(MammoSaeError):
    """A bootstrap argument (groups, arrays, resample count, level) is invalid."""


@dataclass(frozen=True)
class WeightedStatistic:
    """A statistic given as ``weighted(weights_bn, *arrays) -> [b]``: its value under each row of integer
    image weights; called plainly it is the value with every weight 1."""

    weighted: Callable[..., np.ndarray]
    name: str = ""

    def __call__(self, *arrays: np.ndarray) -> float:
        n = len(arrays[0])
        return float(self.weighted(np.ones((1, n)), *arrays)[0])


def _weighted_auroc(
    weights_bn: np.ndarray, labels_n: np.ndarray, scores_n: np.ndarray, mask_n: np.ndarray | None = None
) -> np.ndarray:
    """[b] AUROC of ``scores_n`` for 0/1 ``labels_n`` over the images in ``mask_n`` (all by default), each
    counted ``weights_bn[b, i]`` times; ties count 1/2; NaN where a class has no weight (the Mann-Whitney
    statistic over tie groups)."""
    labels_n = np.asarray(labels_n).astype(bool)
    scores_n = np.asarray(scores_n, dtype=np.float64)
    w = np.asarray(weights_bn, dtype=np.float64)
    if mask_n is not None:
        w = w * np.asarray(mask_n, dtype=bool)
    order = np.argsort(scores_n, kind="stable")
    sorted_scores = scores_n[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # tie groups, ascending
    w = w[:, order]
    pos_bg = np.add.reduceat(w * labels_n[order], starts, axis=1)
    neg_bg = np.add.reduceat(w * ~labels_n[order], starts, axis=1)
    below_bg = np.cumsum(neg_bg, axis=1) - neg_bg  # negative weight strictly below each tie group
    n_pos, n_neg = pos_bg.sum(axis=1), neg_bg.sum(axis=1)
    wins = (pos_bg * (below_bg + 0.5 * neg_bg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def _weighted_rate(
    weights_bn: np.ndarray, values_n: np.ndarray, mask_n: np.ndarray | None = None
) -> np.ndarray:
    """[b] weighted mean of ``values_n`` over the images in ``mask_n`` (all by default); NaN where none of
    them is drawn."""
    w = np.asarray(weights_bn, dtype=np.float64)
    if mask_n is not None:
        w = w * np.asarray(mask_n, dtype=bool)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w @ np.asarray(values_n, dtype=np.float64) / total, np.nan)


auroc_statistic = WeightedStatistic(_weighted_auroc, "auroc")  # (labels_n, scores_n[, mask_n])
rate_statistic = WeightedStatistic(_weighted_rate, "rate")  # (values_n[, mask_n]): e.g. a pointing hit rate


@dataclass(frozen=True)
class Interval:
    """A statistic and its study-bootstrap percentile interval; unpacks as ``estimate, low, high``.

    ``undefined_share``: the share of resamples on which the statistic was undefined (NaN; left out of the
    interval), ``values``: the defined resampled statistics."""

    estimate: float
    low: float
    high: float
    undefined_share: float
    n_boot: int
    n_groups: int
    level: float
    values: np.ndarray = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[float]:
        return iter((self.estimate, self.low, self.high))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""

        def clean(x: float) -> float | None:
            return None if x is None or math.isnan(x) else float(x)

        return {
            "value": clean(self.estimate),
            "low": clean(self.low),
            "high": clean(self.high),
            "level": self.level,
            "studies": self.n_groups,
            "n_boot": self.n_boot,
            "undefined_share": round(self.undefined_share, 4),
        }


def study_weights(groups_n: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] int64 image weights: each row draws the studies of ``groups_n`` with replacement (as many
    draws as studies) and gives every image the number of times its study was drawn."""
    _, inverse = np.unique(np.asarray(groups_n), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    draws_bg = rng.integers(0, n_groups, size=(n_boot, n_groups))
    flat = (draws_bg + n_groups * np.arange(n_boot)[:, None]).ravel()
    counts_bg = np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    assert (counts_bg.sum(axis=1) == n_groups).all()
    return counts_bg[:, inverse.reshape(-1)]


def study_bootstrap(
    statistic: Callable[..., float],
    groups_n: np.ndarray,
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """``statistic(*arrays)`` (each array [n, ...], one row per image) and its ``level`` percentile interval
    over ``n_boot`` resamples of the studies ``groups_n`` [n]; the same seed gives the same interval. Resamples
    on which the statistic is undefined (NaN) are counted in ``undefined_share`` and left out; with none
    defined the interval is NaN."""
    groups_n = np.asarray(groups_n)
    n = len(groups_n)
    if groups_n.ndim != 1 or n == 0:
        raise BootstrapError(
            f"groups must be a non-empty 1-D array (one study per image), got {groups_n.shape}"
        )
    arrays = tuple(np.asarray(a) for a in arrays)
    if not arrays or any(len(a) != n for a in arrays):
        raise BootstrapError(
            f"pass at least one array with one row per image ({n}), got lengths {[len(a) for a in arrays]}"
        )
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise BootstrapError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise BootstrapError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    estimate = float(statistic(*arrays))
    weights_bn = study_weights(groups_n, int(n_boot), seed)
    if isinstance(statistic, WeightedStatistic):
        values_b = np.asarray(statistic.weighted(weights_bn, *arrays), dtype=np.float64)
    else:
        index = np.arange(n)
        values_b = np.array(
            [float(statistic(*(a[np.repeat(index, w)] for a in arrays))) for w in weights_bn],
            dtype=np.float64,
        )
    assert values_b.shape == (n_boot,)
    defined = values_b[~np.isnan(values_b)]
    if len(defined):
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = (float(v) for v in np.percentile(defined, [tail, 100.0 - tail]))
    else:
        low = high = math.nan
    return Interval(
        estimate=estimate,
        low=low,
        high=high,
        undefined_share=1.0 - len(defined) / n_boot,
        n_boot=int(n_boot),
        n_groups=len(np.unique(groups_n)),
        level=level,
        values=defined,
    )
