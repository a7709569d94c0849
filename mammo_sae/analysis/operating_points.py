"""Operating points and calibration of a classifier's scores (pure numpy): the threshold at a target
specificity, sensitivity and specificity at a threshold, Platt scaling of logits, and reliability bins with
the expected calibration error.

A case is called positive when its score is >= the threshold, so specificity is the share of negatives
scoring strictly below it and sensitivity the share of positives at or above it.

t = threshold_at_specificity(scores_n, labels_n, 0.9)      # lowest threshold with specificity >= 0.9
sens, spec = rates_at(scores_n, labels_n, t)
fit = fit_platt(logits_n, labels_n)                        # sigmoid(a * logit + b)
table = reliability_bins(fit.apply(logits_n), labels_n, bins=10)
ece = expected_calibration_error(table)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.core.errors import MammoSaeError

BIN_STRATEGIES = ("uniform", "quantile")
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "mean_predicted", "observed", "count")


class OperatingPointError(MammoSaeError):
    """Scores, labels or a target cannot give an operating point or a calibration."""


def _scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 [n] and labels as bool [n]; labels must be 0/1 (or bool), both finite."""
    scores_n = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels_n = np.asarray(labels).reshape(-1)
    if scores_n.shape != labels_n.shape:
        raise OperatingPointError(
            f"scores and labels must have the same length, got {scores_n.shape[0]} and {labels_n.shape[0]}"
        )
    if not np.isfinite(scores_n).all():
        raise OperatingPointError("scores hold NaN/inf; drop the cases without a score first")
    values = labels_n.astype(np.float64)
    if not np.isin(values, (0.0, 1.0)).all():
        raise OperatingPointError("labels must be 0 or 1; drop unlabelled cases (NaN) first")
    return scores_n, values.astype(bool)


def _check_target(target: float) -> float:
    if not (isinstance(target, int | float | np.floating) and 0.0 <= float(target) <= 1.0):
        raise OperatingPointError(f"a target specificity must be a number in [0, 1], got {target!r}")
    return float(target)


def threshold_at_specificity(scores: np.ndarray, labels: np.ndarray, target: float = 0.9) -> float:
    """The lowest threshold, among the observed scores (and one just above the highest), whose specificity
    on the negatives is >= ``target``. Tied scores fall on the same side, so the specificity the threshold
    really gives (``rates_at``) may exceed the target but never falls short of it."""
    scores_n, labels_n = _scores_labels(scores, labels)
    target = _check_target(target)
    negatives = np.sort(scores_n[~labels_n])
    if not len(negatives):
        raise OperatingPointError("no negative case: specificity is undefined; the split needs negatives")
    needed = math.ceil(target * len(negatives) - 1e-9)  # negatives that must score below the threshold
    if needed == 0:
        return float(scores_n.min())  # every case passes; specificity 0 meets a target of 0
    # a threshold t passes a score s when s >= t: t must lie above the needed-th lowest negative, and the
    # lowest observed score above it is the lowest such t (any t in between gives the same rates)
    below = negatives[needed - 1]
    above = scores_n[scores_n > below]
    return float(above.min()) if len(above) else float(np.nextafter(below, np.inf))


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) when scores >= ``threshold`` are called positive; a class without cases
    gives NaN for its rate."""
    scores_n, labels_n = _scores_labels(scores, labels)
    if not isinstance(threshold, int | float | np.floating) or math.isnan(threshold):
        raise OperatingPointError(f"a threshold must be a number, got {threshold!r}")
    called = scores_n >= float(threshold)
    positives, negatives = called[labels_n], called[~labels_n]
    sensitivity = float(positives.mean()) if len(positives) else math.nan
    specificity = float(1.0 - negatives.mean()) if len(negatives) else math.nan
    return sensitivity, specificity


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass(frozen=True)
class Calibration:
    """``sigmoid(a * logit + b)``; ``method`` "platt" (fitted) or "identity" (a = 1, b = 0: not fitted,
    ``note`` says why)."""

    a: float
    b: float
    method: str = "platt"
    n: int = 0
    n_positive: int = 0
    note: str = ""

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [n] of ``logits`` [n]."""
        return sigmoid(self.a * np.asarray(logits, dtype=np.float64) + self.b)


def fit_platt(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    one_class: str = "error",
    ridge: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Calibration:
    """Platt scaling by Newton's method with a backtracking line search on the log loss.

    The targets are Platt's smoothed labels ((n+ + 1) / (n+ + 2) for positives, 1 / (n- + 2) for
    negatives), so perfectly separated data still give a finite fit; ``ridge`` (times n, on ``a`` only)
    keeps the step defined when every logit is the same. A split with one class cannot be calibrated:
    ``one_class="error"`` raises, ``"identity"`` returns a = 1, b = 0 with a note saying so."""
    logits_n, labels_n = _scores_labels(logits, labels)
    if one_class not in ("error", "identity"):
        raise OperatingPointError(f"one_class must be 'error' or 'identity', got {one_class!r}")
    n, n_pos = len(labels_n), int(labels_n.sum())
    if n_pos in (0, n):
        what = "no case" if n == 0 else f"only {'positive' if n_pos else 'negative'} cases ({n})"
        message = f"calibration needs positive and negative cases, got {what}"
        if one_class == "error":
            raise OperatingPointError(f"{message}; analyse a split with both classes")
        return Calibration(1.0, 0.0, "identity", n, n_pos, f"{message}: the probabilities are uncalibrated")
    n_neg = n - n_pos
    target_n = np.where(labels_n, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    lam = ridge * n

    def loss(a: float, b: float) -> float:
        z = a * logits_n + b  # log loss: log(1 + e^z) - t z, stable for any z
        return float(np.sum(np.logaddexp(0.0, z) - target_n * z) + 0.5 * lam * a * a)

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(max_iter):
        p_n = sigmoid(a * logits_n + b)
        r_n = p_n - target_n
        w_n = p_n * (1.0 - p_n)
        grad = np.array([r_n @ logits_n + lam * a, r_n.sum()])
        hess = np.array(
            [[w_n @ (logits_n * logits_n) + lam, w_n @ logits_n], [w_n @ logits_n, w_n.sum() + 1e-12]]
        )
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while True:  # backtracking: Newton from a far start can overshoot where the loss is flat
            a_new, b_new = a - scale * step[0], b - scale * step[1]
            new = loss(a_new, b_new)
            if new <= current + 1e-4 * scale * float(grad @ -step) or scale < 1e-8:
                break
            scale *= 0.5
        a, b, previous, current = a_new, b_new, current, new
        if (
            abs(previous - current) <= tol * max(1.0, abs(current))
            and float(np.abs(scale * step).max()) < 1e-7
        ):
            break
    assert math.isfinite(a) and math.isfinite(b), "Platt's smoothed targets keep the fit finite"
    return Calibration(float(a), float(b), "platt", n, n_pos)


def _bin_edges(probabilities_n: np.ndarray, bins: int, strategy: str) -> np.ndarray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, bins + 1)
    edges = np.unique(np.quantile(probabilities_n, np.linspace(0.0, 1.0, bins + 1)))
    return edges if len(edges) > 1 else np.array([edges[0], edges[0]])


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10, strategy: str = "uniform"
) -> pd.DataFrame:
    """One row per non-empty bin: bin, lower, upper, mean_predicted, observed (the positive rate), count.
    ``"uniform"``: equal-width bins over [0, 1]; ``"quantile"``: about equally filled bins (tied
    probabilities share a bin, so there may be fewer). Bins are [lower, upper), the last one closed."""
    probabilities_n, labels_n = _scores_labels(probabilities, labels)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise OperatingPointError(f"bins must be a positive integer, got {bins!r}")
    if strategy not in BIN_STRATEGIES:
        raise OperatingPointError(
            f"unknown bin strategy {strategy!r}; use one of {', '.join(BIN_STRATEGIES)}"
        )
    if ((probabilities_n < 0) | (probabilities_n > 1)).any():
        raise OperatingPointError("probabilities must lie in [0, 1]; pass sigmoid(logits), not logits")
    if not len(probabilities_n):
        return pd.DataFrame({c: pd.Series(dtype=float) for c in RELIABILITY_COLUMNS})
    edges = _bin_edges(probabilities_n, bins, strategy)
    index_n = np.clip(np.searchsorted(edges, probabilities_n, side="right") - 1, 0, len(edges) - 2)
    count_b = np.bincount(index_n, minlength=len(edges) - 1)
    predicted_b = np.bincount(index_n, weights=probabilities_n, minlength=len(edges) - 1)
    observed_b = np.bincount(index_n, weights=labels_n.astype(np.float64), minlength=len(edges) - 1)
    keep = count_b > 0
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(keep),
            "lower": edges[:-1][keep],
            "upper": edges[1:][keep],
            "mean_predicted": predicted_b[keep] / count_b[keep],
            "observed": observed_b[keep] / count_b[keep],
            "count": count_b[keep],
        }
    )


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE of a ``reliability_bins`` table: the count-weighted mean |observed - mean predicted| (NaN for an
    empty table)."""
    count = table["count"].to_numpy(dtype=np.float64)
    if count.sum() == 0:
        return math.nan
    gap = np.abs(table["observed"].to_numpy() - table["mean_predicted"].to_numpy())
    return float(np.sum(count * gap) / count.sum())
