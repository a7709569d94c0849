"""What a burned-in marker does to the heads, measured causally on counterfactual pairs (pure arrays).

Each image is seen twice, with and without its marker (pixels identical outside the marker's box; see
``mammo_sae.data.phantom.counterfactual``). From the two logits and the two mean-latent vectors:

    marker_shift(logit_with_nh, logit_without_nh, tasks)                 # per head: how far the marker moves it
    adversarial_aurocs(logit_with_nh, logit_without_nh, y_nh, tasks)     # positives unmarked vs negatives marked
    shift_carriers(zbar_with_nl, zbar_without_nl, head, task)            # per latent: who carries the shift

A latent's contribution to head h is zbar_i * effect_ih (``HeadLinear``), so the SAE part of the logit shift
is exactly sum_i (zbar_with_i - zbar_without_i) * effect_ih; the rest of the original logit's shift is the
change of the SAE's error term (the decoder bias cancels in the difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import CHUNK_ELEMENTS, HeadLinear
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import auroc_columns

#: the share of the gross (absolute) shift whose carriers are counted in ``carriers_for_share``
CARRIER_SHARE = 0.9


class CounterfactualShapeError(MammoSaeError):
    """Arrays of a counterfactual analysis disagree in shape or name another number of heads."""


def _pair(with_nh: np.ndarray, without_nh: np.ndarray, tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(with_nh, np.float64), np.asarray(without_nh, np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] != len(tasks):
        raise CounterfactualShapeError(
            f"logits with and without the marker must both be [n, heads = {len(tasks)}]; got {a.shape} and "
            f"{b.shape}"
        )
    return a, b


def marker_shift(
    logit_with_nh: np.ndarray,
    logit_without_nh: np.ndarray,
    tasks: Sequence[str],
    subsets: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per head (and per named subset of images, ``subsets``: name -> bool [n]; "all" always comes first)
    the logit shift with - without the marker: mean, its standard error, median, spread, and how often it
    is positive."""
    a, b = _pair(logit_with_nh, logit_without_nh, tasks)
    shift_nh = a - b
    groups = {"all": np.ones(len(a), bool), **{k: np.asarray(v, bool) for k, v in (subsets or {}).items()}}
    rows = []
    for subset, keep in groups.items():
        if keep.shape != (len(a),):
            raise CounterfactualShapeError(f"subset {subset!r} must be a bool [n = {len(a)}] mask")
        for h, task in enumerate(tasks):
            s = shift_nh[keep, h]
            n = len(s)
            q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95]) if n else np.full(5, np.nan)
            rows.append(
                {
                    "head": task,
                    "subset": subset,
                    "n": n,
                    "mean": float(s.mean()) if n else np.nan,
                    "sem": float(s.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
                    "std": float(s.std(ddof=1)) if n > 1 else np.nan,
                    "median": q[2],
                    "q05": q[0],
                    "q25": q[1],
                    "q75": q[3],
                    "q95": q[4],
                    "share_raised": float((s > 0).mean()) if n else np.nan,
                }
            )
    return pd.DataFrame(rows)


def adversarial_aurocs(
    logit_with_nh: np.ndarray,
    logit_without_nh: np.ndarray,
    y_nh: np.ndarray,
    tasks: Sequence[str],
    had_marker_n: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per head, the AUROC of its logits when the marker is placed against the label or for it.

    ``adversarial``: positives shown without the marker, negatives with it; ``favourable``: the reverse;
    ``no_marker`` / ``all_marker``: every image without / with it; ``as_is``: each image as its file is
    (needs ``had_marker_n``). ``gap`` = favourable - adversarial: how much ranking the marker alone can buy."""
    a, b = _pair(logit_with_nh, logit_without_nh, tasks)
    y = np.asarray(y_nh)
    if y.shape != a.shape:
        raise CounterfactualShapeError(f"labels must be [n, heads] = {a.shape}; got {y.shape}")
    pos = y.astype(bool)
    columns = {
        "adversarial": np.where(pos, b, a),
        "favourable": np.where(pos, a, b),
        "no_marker": b,
        "all_marker": a,
    }
    if had_marker_n is not None:
        marked = np.asarray(had_marker_n, bool)
        if marked.shape != (len(a),):
            raise CounterfactualShapeError(f"had_marker_n must be bool [n = {len(a)}]; got {marked.shape}")
        columns["as_is"] = np.where(marked[:, None], a, b)
    rows = []
    for h, task in enumerate(tasks):
        scores = np.stack([c[:, h] for c in columns.values()], axis=1)
        values = auroc_columns(y[:, h], scores)
        row = {"head": task, "n": len(y), "positives": int(pos[:, h].sum())}
        row |= {f"auroc_{name}": float(v) for name, v in zip(columns, values, strict=True)}
        row["gap"] = row["auroc_favourable"] - row["auroc_adversarial"]
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_changes(zbar_with_nl: np.ndarray, zbar_without_nl: np.ndarray, effect_l: np.ndarray):
    """Means of with, without and their difference per latent, counts of images where each rises / falls,
    and the per-image SAE logit shift; float64 over row blocks (the inputs may be memory maps)."""
    n, d = zbar_with_nl.shape
    sums = np.zeros((3, d))
    more = np.zeros(d, np.int64)
    less = np.zeros(d, np.int64)
    shift_n = np.zeros(n)
    step = max(1, CHUNK_ELEMENTS // max(d, 1))
    for start in range(0, n, step):
        w = np.asarray(zbar_with_nl[start : start + step], np.float64)
        wo = np.asarray(zbar_without_nl[start : start + step], np.float64)
        delta = w - wo
        sums += (w.sum(0), wo.sum(0), delta.sum(0))
        more += (delta > 0).sum(0)
        less += (delta < 0).sum(0)
        shift_n[start : start + step] = delta @ effect_l
    return sums / max(n, 1), more, less, shift_n


def shift_carriers(
    zbar_with_nl: np.ndarray,
    zbar_without_nl: np.ndarray,
    head: HeadLinear,
    task: str,
    logit_shift_n: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every latent whose mean activation the marker changes in any image, with its mean change of
    contribution to ``task``'s logit (both signs), sorted by its size; no cap.

    Columns: latent, effect (logit per unit of mean activation), activation_with / _without (means),
    activation_change, images_more / images_less (where it fires more / less with the marker),
    contribution_change (= activation_change x effect; > 0 raises the logit), share (of the SAE's mean
    logit shift, signed), gross_share (of the summed |contribution_change|), rank (1 = largest).
    ``attrs``: n_images, sae_shift (mean SAE logit shift = sum of contribution_change), latents_changed,
    raising / lowering (sums of the positive / negative changes), carriers_for_share (how many latents
    carry CARRIER_SHARE of the gross change) and, given the original logits' shift ``logit_shift_n`` [n],
    logit_shift and remainder (= logit_shift - sae_shift: the change of the SAE's error term)."""
    if zbar_with_nl.shape != zbar_without_nl.shape or zbar_with_nl.ndim != 2:
        raise CounterfactualShapeError(
            f"mean latents with and without the marker must both be [n, d_sae]; got {zbar_with_nl.shape} and "
            f"{zbar_without_nl.shape}"
        )
    if zbar_with_nl.shape[1] != head.d_sae:
        raise CounterfactualShapeError(
            f"mean latents have {zbar_with_nl.shape[1]} latents, the heads' SAE {head.d_sae}"
        )
    effect_l = head.effect_lh[:, head.index(task)]
    n = zbar_with_nl.shape[0]
    (mean_with, mean_without, change), more, less, sae_shift_n = _mean_changes(
        zbar_with_nl, zbar_without_nl, effect_l
    )
    contribution = change * effect_l
    ids = np.flatnonzero((more + less) > 0)
    ids = ids[np.argsort(-np.abs(contribution[ids]), kind="stable")]
    total = float(contribution.sum())
    gross = float(np.abs(contribution).sum())
    table = pd.DataFrame(
        {
            "latent": ids.astype(np.int64),
            "effect": effect_l[ids],
            "activation_with": mean_with[ids],
            "activation_without": mean_without[ids],
            "activation_change": change[ids],
            "images_more": more[ids],
            "images_less": less[ids],
            "contribution_change": contribution[ids],
            "share": contribution[ids] / total if total != 0 else np.nan,
            "gross_share": np.abs(contribution[ids]) / gross if gross > 0 else np.nan,
            "rank": np.arange(1, len(ids) + 1, dtype=np.int64),
        }
    )
    sae_shift = float(sae_shift_n.mean()) if n else np.nan
    assert n == 0 or abs(sae_shift - total) <= 1e-9 * max(1.0, gross), "contributions must add up"
    cumulative = np.cumsum(table["gross_share"].to_numpy()) if gross > 0 else np.zeros(0)
    table.attrs = {
        "task": task,
        "n_images": n,
        "sae_shift": sae_shift,
        "latents_changed": len(ids),
        "raising": float(contribution[contribution > 0].sum()),
        "lowering": float(contribution[contribution < 0].sum()),
        "carriers_for_share": int(np.searchsorted(cumulative, CARRIER_SHARE - 1e-12) + 1) if gross > 0 else 0,
    }
    if logit_shift_n is not None:
        logit_shift_n = np.asarray(logit_shift_n, np.float64)
        if logit_shift_n.shape != (n,):
            raise CounterfactualShapeError(f"logit_shift_n must be [n = {n}]; got {logit_shift_n.shape}")
        table.attrs["logit_shift"] = float(logit_shift_n.mean()) if n else np.nan
        table.attrs["remainder"] = table.attrs["logit_shift"] - sae_shift
    return table
