"""Sparse probing for the SAE evaluation (issue 21): can k features of an image tell a label? The SAE's
latents against two plain baselines on the same splits (Kantamneni & Engels 2025: an SAE probe means
little without them): the feature map's own channels and its principal components.

    result = sparse_probe(train_nf, y_train, test_nf, y_test, k=5)   # features chosen and fit on train
    result.auroc, result.features

The k features are those whose class means differ most in pooled standard deviations on the training
split; a logistic regression with an L2 penalty is fit on them by Newton's method (k is small, so the
Hessian is k+1 square) and scored by its AUROC on the held-out split. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import auroc

L2 = 1e-2  # the penalty on the standardised weights (not on the intercept)
NEWTON_STEPS = 50
TOLERANCE = 1e-10


class ProbeError(MammoSaeError):
    """A probe was asked for what its data cannot give (one class, too few features, mismatched shapes)."""


@dataclass(frozen=True)
class ProbeResult:
    auroc: float  # on the held-out split
    features: np.ndarray  # the k chosen feature indices, best first
    weights: np.ndarray  # [k] on the standardised features
    bias: float


def _labels(y: np.ndarray, n: int, split: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ProbeError(f"{split}: {y.shape[0] if y.ndim else 0} labels for {n} images")
    if not np.isin(y, (0, 1)).all() or len(np.unique(y)) < 2:
        raise ProbeError(f"{split}: a probe needs 0/1 labels with both classes, got {np.unique(y).tolist()}")
    return y.astype(np.float64)


def separation(x_nf: np.ndarray, y_n: np.ndarray) -> np.ndarray:
    """Per feature: |mean of class 1 - mean of class 0| / pooled standard deviation (0 for a constant one)."""
    x, y = np.asarray(x_nf, dtype=np.float64), np.asarray(y_n).astype(bool)
    ones, zeros = x[y], x[~y]
    pooled = np.sqrt((ones.var(axis=0) * len(ones) + zeros.var(axis=0) * len(zeros)) / len(x))
    gap = np.abs(ones.mean(axis=0) - zeros.mean(axis=0))
    return np.divide(gap, pooled, out=np.zeros_like(gap), where=pooled > 0)


def top_features(x_nf: np.ndarray, y_n: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most separating features, best first (ties by index)."""
    if not 1 <= k <= x_nf.shape[1]:
        raise ProbeError(f"k={k} features asked of {x_nf.shape[1]}")
    score = separation(x_nf, y_n)
    return np.lexsort((np.arange(len(score)), -score))[:k]


def fit_logistic(x_nk: np.ndarray, y_n: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """Minimise mean log-loss + l2/2 * |w|^2 (intercept free) by Newton's method; returns (w, b)."""
    x = np.asarray(x_nk, dtype=np.float64)
    n, k = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    penalty = np.diag([*([l2] * k), 0.0])
    theta = np.zeros(k + 1)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (p - y_n) / n + penalty @ theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design / n + penalty
        step = np.linalg.solve(hessian + 1e-12 * np.eye(k + 1), gradient)
        theta -= step
        if float(np.abs(step).max()) < TOLERANCE:
            break
    return theta[:k], float(theta[k])


def sparse_probe(
    train_nf: np.ndarray, y_train: np.ndarray, test_nf: np.ndarray, y_test: np.ndarray, k: int, l2: float = L2
) -> ProbeResult:
    """Choose k features and fit the probe on the training split; its AUROC on the held-out split."""
    train, test = np.asarray(train_nf, dtype=np.float64), np.asarray(test_nf, dtype=np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ProbeError(f"train {train.shape} and test {test.shape} must be [images, the same features]")
    y_tr, y_te = _labels(y_train, len(train), "training split"), _labels(y_test, len(test), "held-out split")
    chosen = top_features(train, y_tr, k)
    mean, std = train[:, chosen].mean(axis=0), train[:, chosen].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w, b = fit_logistic((train[:, chosen] - mean) / std, y_tr, l2)
    scores = ((test[:, chosen] - mean) / std) @ w + b
    return ProbeResult(auroc=auroc(y_te, scores), features=chosen, weights=w, bias=b)


def pca_projection(train_nf: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """The training split's mean and its top principal directions [n_components, features] (by SVD)."""
    train = np.asarray(train_nf, dtype=np.float64)
    n_components = min(n_components, *train.shape)
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    return mean, vt[:n_components]


SOURCES = ("sae", "channels", "pca")  # the SAE's latents, then the two baselines
PROBE_KS = (1, 5, 20)
PROBE_COLUMNS = ("target", "source", "k", "auroc", "n_train", "n_test", "positives_test", "features")


def probe_table(
    latents_nf: np.ndarray,
    channels_nc: np.ndarray,
    targets: dict[str, np.ndarray],
    train_n: np.ndarray,
    ks: tuple[int, ...] = PROBE_KS,
    l2: float = L2,
) -> pd.DataFrame:
    """Per target (0/1 per image, NaN = unknown) and k: the held-out AUROC of a k-feature probe on the SAE's
    per-image latents, on the feature map's own channels and on its top principal components (fit on the
    training images). A target without both classes on each side is left out; k above a source's features
    is capped."""
    latents, channels = np.asarray(latents_nf, dtype=np.float64), np.asarray(channels_nc, dtype=np.float64)
    train = np.asarray(train_n, dtype=bool)
    assert latents.shape[0] == channels.shape[0] == train.shape[0], (
        latents.shape,
        channels.shape,
        train.shape,
    )
    mean, components = pca_projection(channels[train], max(ks))
    sources = {"sae": latents, "channels": channels, "pca": (channels - mean) @ components.T}
    rows = []
    for target, y in targets.items():
        y = np.asarray(y, dtype=np.float64)
        known = ~np.isnan(y)
        tr, te = train & known, ~train & known
        if min(len(np.unique(y[tr])), len(np.unique(y[te]))) < 2:
            continue
        for source in SOURCES:
            x = sources[source]
            for k in ks:
                kk = min(k, x.shape[1])
                result = sparse_probe(x[tr], y[tr].astype(int), x[te], y[te].astype(int), kk, l2)
                rows.append(
                    {
                        "target": target, "source": source, "k": k, "auroc": result.auroc,
                        "n_train": int(tr.sum()), "n_test": int(te.sum()), "positives_test": int(y[te].sum()),
                        "features": result.features.tolist(),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))
