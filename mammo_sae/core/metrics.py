"""Ranking metrics for binary labels: AUROC and average precision (AUPRC), one column or many at once.

auroc(labels, scores)              # Mann-Whitney: P(score_pos > score_neg) + 1/2 P(tie); NaN if a class is absent
auprc(labels, scores)              # sum_i (R_i - R_{i-1}) P_i over distinct thresholds; NaN if no positives
auroc_columns(labels, scores_nm)   # [m]: every column of scores_nm [n, m] against the same labels [n]

The column versions sort every column once (argsort over axis 0) and share one pass of tie-group bookkeeping,
so an intervention curve (2 modes x 12 k x heads columns) costs one sort instead of dozens of Python loops.
Tied scores form one threshold (one tie group), as in scikit-learn's roc_auc_score and
average_precision_score, which these functions reproduce without depending on scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mammo_sae.core.errors import MammoSaeError


class MetricError(MammoSaeError):
    """Labels or scores given to a metric have the wrong shape or values."""


class _Sorted(NamedTuple):
    """Every column sorted by descending score, with the tie groups numbered across all columns."""

    labels_nm: np.ndarray  # [n, m] float64 0/1 labels in each column's descending-score order
    group_nm: np.ndarray  # [n, m] int64 global tie-group id (groups never span columns)
    is_end_nm: np.ndarray  # [n, m] bool: last position of its tie group
    n_groups: int


def _check(labels: np.ndarray, scores_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as float64 0/1 [n] and scores as a 2-D [n, m] array; errors say what to fix."""
    labels = np.asarray(labels)
    scores_nm = np.asarray(scores_nm)
    if labels.ndim != 1:
        raise MetricError(f"labels must be 1-D [n]; got shape {labels.shape}")
    if scores_nm.ndim != 2 or scores_nm.shape[0] != labels.shape[0]:
        raise MetricError(
            f"scores must be [n] or [n, m] with n = len(labels) = {labels.shape[0]}; got shape {scores_nm.shape}"
        )
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        raise MetricError(f"labels must be 0/1 (or bool); found values {values[:10].tolist()}")
    if np.issubdtype(scores_nm.dtype, np.floating) and np.isnan(scores_nm).any():
        raise MetricError("scores contain NaN; drop or fill those rows before computing ranking metrics")
    return labels.astype(np.float64), scores_nm


def _sort_columns(labels: np.ndarray, scores_nm: np.ndarray) -> _Sorted:
    """Sort each column by descending score and number its tie groups (one argsort over axis 0)."""
    n, m = scores_nm.shape
    order_nm = np.argsort(scores_nm, axis=0)[::-1]
    sorted_nm = np.take_along_axis(scores_nm, order_nm, axis=0)
    starts_nm = np.ones((n, m), dtype=bool)
    starts_nm[1:] = sorted_nm[1:] != sorted_nm[:-1]
    is_end_nm = np.ones((n, m), dtype=bool)
    is_end_nm[:-1] = starts_nm[1:]
    # Column-major cumulative count numbers the groups of column 0 first, then column 1, ...
    group_nm = np.cumsum(starts_nm.T.ravel()).reshape(m, n).T - 1
    return _Sorted(labels[order_nm], group_nm, is_end_nm, int(group_nm[-1, -1]) + 1 if n and m else 0)


def auroc_columns(labels: np.ndarray, scores_nm: np.ndarray) -> np.ndarray:
    """[m] AUROC of each column of scores_nm [n, m] for labels [n]; ties count 1/2; NaN if a class is absent.

    Computed from average ranks (Mann-Whitney U): AUROC = (sum of the positives' ranks - P (P + 1) / 2) / (P N).
    """
    labels, scores_nm = _check(labels, scores_nm)
    n, m = scores_nm.shape
    n_pos = labels.sum()
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0 or m == 0:
        return np.full(m, np.nan)
    s = _sort_columns(labels, scores_nm)
    # Ascending 1-based rank of descending position p is n - p; a tie group shares its mean rank.
    rank_nm = (n - np.arange(n, dtype=np.float64))[:, None] * np.ones((1, m))
    group_rank = np.bincount(s.group_nm.ravel(), rank_nm.ravel(), s.n_groups)
    group_size = np.bincount(s.group_nm.ravel(), minlength=s.n_groups)
    mean_rank_nm = (group_rank / group_size)[s.group_nm]
    pos_rank_sum_m = (mean_rank_nm * s.labels_nm).sum(axis=0)
    return (pos_rank_sum_m - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auprc_columns(labels: np.ndarray, scores_nm: np.ndarray) -> np.ndarray:
    """[m] average precision of each column of scores_nm [n, m]; NaN if there are no positives.

    AP = sum over distinct thresholds of (R_i - R_{i-1}) P_i, which equals the mean, over the positives, of the
    precision at the end of each positive's tie group (scikit-learn's average_precision_score).
    """
    labels, scores_nm = _check(labels, scores_nm)
    n, m = scores_nm.shape
    n_pos = labels.sum()
    if n_pos == 0 or m == 0:
        return np.full(m, np.nan)
    s = _sort_columns(labels, scores_nm)
    precision_nm = np.cumsum(s.labels_nm, axis=0) / np.arange(1, n + 1, dtype=np.float64)[:, None]
    group_precision = np.empty(s.n_groups)
    group_precision[s.group_nm[s.is_end_nm]] = precision_nm[s.is_end_nm]
    return (group_precision[s.group_nm] * s.labels_nm).sum(axis=0) / n_pos


def _column(scores: np.ndarray) -> np.ndarray:
    """Scores [n] as one column [n, 1]."""
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise MetricError(
            f"scores must be 1-D [n] (use the *_columns functions for [n, m]); got {scores.shape}"
        )
    return scores[:, None]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of scores [n] for 0/1 labels [n]; ties count 1/2; NaN if one class is absent."""
    return float(auroc_columns(labels, _column(scores))[0])


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of scores [n] for 0/1 labels [n]; NaN if there are no positives."""
    return float(auprc_columns(labels, _column(scores))[0])


def undefined_reason(n: int, positives: int) -> str | None:
    """Why AUROC is undefined for ``n`` 0/1 labels of which ``positives`` are 1 ("no positives" / "no
    negatives"), or None when both classes are present."""
    if positives == 0:
        return "no positives"
    if positives == n:
        return "no negatives"
    return None
