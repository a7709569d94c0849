"""The shortcut audit: how much of each head's class separation rests on latents flagged as artefacts.

With the heads folded through the SAE decoder (``interventions.HeadLinear``), an image's SAE-reconstruction
logit is ``zbar_n @ effect_h + const_h``; the class-1 minus class-0 difference of its mean therefore splits
exactly over latents, ``(mean_1 zbar_i - mean_0 zbar_i) * effect_ih`` (the constant cancels). The audit
ranks the flagged latents by that share and measures the head's AUROC with every ``off_breast`` and
``marker`` latent suppressed (zeroed), as SAEBench's spurious-correlation removal does.

audit = shortcut_audit(zbar_nl, heads, {"calcification": y_n}, latents["flags"], error_nh)
audit.flagged  # task, latent, flags, difference, share, rank, suppressed, mean_positive, mean_negative
audit.summary  # task, n, n_pos, logit, auroc, auroc_suppressed, auroc_drop, n_suppressed, share_suppressed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import HeadLinear, scale_vector, shortcut_logits
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import auroc_columns, undefined_reason
from mammo_sae.core.page_release import release_pages

#: flags suppressed by default: latents that fire mostly off the breast or on burned-in markers
SUPPRESS_DEFAULT: tuple[str, ...] = ("off_breast", "marker")
# rows of zbar converted to float64 at a time (exact sums, bounded memory)
CHUNK_ELEMENTS = 1 << 20


class ShortcutError(MammoSaeError):
    """Labels, flags or latent ids given to the shortcut audit do not fit the heads."""


def _labels(y: Mapping[str, np.ndarray] | np.ndarray, head: HeadLinear, n: int) -> dict[str, np.ndarray]:
    """task -> bool [n] labels, from a dict of 0/1 arrays or an [n, heads] array in head order."""
    if not isinstance(y, Mapping):
        y_nh = np.asarray(y)
        if y_nh.shape != (n, head.n_heads):
            raise ShortcutError(
                f"labels must be a dict task -> [n] or an [n = {n}, heads = {head.n_heads}] array, "
                f"got shape {y_nh.shape}"
            )
        y = {task: y_nh[:, h] for h, task in enumerate(head.tasks)}
    out = {}
    for task, y_n in y.items():
        head.index(task)  # raises on an unknown head
        y_n = np.asarray(y_n)
        values = np.unique(y_n)
        if y_n.shape != (n,) or not np.isin(values, (0, 1)).all():
            raise ShortcutError(
                f"labels of {task!r} must be 0/1, one per image ({n}); got shape {y_n.shape}, "
                f"values {values[:10].tolist()}"
            )
        out[task] = y_n.astype(bool)
    return out


def _class_means(
    zbar_nl: np.ndarray, labels: Mapping[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (mean over class 1, mean over class 0) of zbar [d_sae] float64 (NaN when the class is empty);
    one chunked float64 pass over zbar for every task at once."""
    n, d = zbar_nl.shape
    tasks = list(labels)
    weight_nc = np.zeros((n, 2 * len(tasks)))
    for j, task in enumerate(tasks):
        y_n = labels[task]
        n1, n0 = int(y_n.sum()), int((~y_n).sum())
        weight_nc[:, 2 * j] = np.where(y_n, 1.0 / n1, 0.0) if n1 else np.nan
        weight_nc[:, 2 * j + 1] = np.where(~y_n, 1.0 / n0, 0.0) if n0 else np.nan
    means_cl = np.zeros((weight_nc.shape[1], d))
    rows = max(1, CHUNK_ELEMENTS // max(d, 1))
    for start in range(0, n, rows):
        chunk = np.asarray(zbar_nl[start : start + rows], dtype=np.float64)
        means_cl += weight_nc[start : start + rows].T @ chunk
        release_pages(zbar_nl)
    return {task: (means_cl[2 * j], means_cl[2 * j + 1]) for j, task in enumerate(tasks)}


def _check_zbar(zbar_nl: np.ndarray, head: HeadLinear) -> np.ndarray:
    zbar_nl = np.asarray(zbar_nl)
    if zbar_nl.ndim != 2 or zbar_nl.shape[1] != head.d_sae or not np.issubdtype(zbar_nl.dtype, np.floating):
        raise ShortcutError(
            f"zbar must be floating [n images, d_sae = {head.d_sae}] (per-image mean latents), got "
            f"{zbar_nl.dtype} {zbar_nl.shape}"
        )
    return zbar_nl


def _latent_ids(latents: Sequence[int] | np.ndarray, d_sae: int) -> np.ndarray:
    ids = np.asarray(latents)
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= d_sae:
        raise ShortcutError(f"latent ids must be integers in 0..{d_sae - 1}, got {ids[:10].tolist()}")
    return ids.astype(np.int64)


def logit_difference_shares(
    zbar_nl: np.ndarray,
    head: HeadLinear,
    y_nh_or_dict: Mapping[str, np.ndarray] | np.ndarray,
    latents: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Per (task, latent): ``mean_positive`` / ``mean_negative`` (mean contribution ``zbar_i * effect_ih`` over
    each class's images), ``difference`` and ``share`` of the head's total class-1 minus class-0 difference
    of the mean SAE-reconstruction logit (``zbar @ effect + const``, no error term; over every latent the
    shares add up to 1). ``latents`` restricts the rows (shares stay relative to the full total); rows go by
    task, then latent id. NaN where a class is missing or the total is 0. ``attrs["total"]``: task -> total."""
    zbar_nl = _check_zbar(zbar_nl, head)
    labels = _labels(y_nh_or_dict, head, zbar_nl.shape[0])
    ids = np.arange(head.d_sae) if latents is None else _latent_ids(latents, head.d_sae)
    means = _class_means(zbar_nl, labels)
    parts, totals = [], {}
    for task, (mean1_l, mean0_l) in means.items():
        effect_l = head.effect_lh[:, head.index(task)]
        difference_l = (mean1_l - mean0_l) * effect_l
        total = float(difference_l.sum())
        totals[task] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            share_k = difference_l[ids] / total if total != 0 else np.full(len(ids), np.nan)
        parts.append(
            pd.DataFrame(
                {
                    "task": task,
                    "latent": ids,
                    "mean_positive": mean1_l[ids] * effect_l[ids],
                    "mean_negative": mean0_l[ids] * effect_l[ids],
                    "difference": difference_l[ids],
                    "share": share_k,
                }
            )
        )
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["task", "latent", "mean_positive", "mean_negative", "difference", "share"])
    )
    table.attrs["total"] = totals
    return table


def _flag_sets(flags: pd.Series, d_sae: int) -> pd.Series:
    """latent id -> frozenset of flag names, only latents with at least one flag."""
    if not isinstance(flags, pd.Series):
        raise ShortcutError("flags must be a pandas Series indexed by latent id (latents.parquet's 'flags')")
    index = np.asarray(flags.index)
    if len(index) and (not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= d_sae):
        raise ShortcutError(f"flags must be indexed by latent ids in 0..{d_sae - 1}")
    sets = flags.fillna("").astype(str).map(lambda s: frozenset(f.strip() for f in s.split(",") if f.strip()))
    return sets[sets.map(len) > 0]


def _matches(flag_set: frozenset[str], kinds: Sequence[str]) -> bool:
    """A flag matches a kind when equal to it or when its part before ':' is (``lesion`` matches ``lesion:mass``)."""
    return any(f == k or f.split(":", 1)[0] == k for f in flag_set for k in kinds)


def suppression_set(flags: pd.Series, kinds: Sequence[str] = SUPPRESS_DEFAULT) -> np.ndarray:
    """Sorted int64 ids of the latents carrying any flag of ``kinds`` (``lesion`` matches ``lesion:<c>``)."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    sets = _flag_sets(flags, np.iinfo(np.int64).max)
    chosen = [int(latent) for latent, s in sets.items() if _matches(s, kinds)]
    return np.unique(np.asarray(chosen, dtype=np.int64))


@dataclass(frozen=True)
class ShortcutAudit:
    """``flagged``: every flagged latent per head, ranked by share descending (no cap); ``summary``: per head,
    the AUROC with and without the suppressed latents."""

    flagged: pd.DataFrame
    summary: pd.DataFrame
    suppress: tuple[str, ...]


FLAGGED_COLUMNS = (
    "task",
    "latent",
    "flags",
    "difference",
    "share",
    "rank",
    "suppressed",
    "mean_positive",
    "mean_negative",
)
SUMMARY_COLUMNS = (
    "task",
    "n",
    "n_pos",
    "logit",
    "auroc",
    "auroc_suppressed",
    "auroc_drop",
    "n_suppressed",
    "share_suppressed",
    "note",
)


def shortcut_audit(
    zbar_nl: np.ndarray,
    head: HeadLinear,
    labels: Mapping[str, np.ndarray],
    flags: pd.Series,
    error_nh: np.ndarray | None = None,
    suppress: Sequence[str] = SUPPRESS_DEFAULT,
) -> ShortcutAudit:
    """Audit each head in ``labels`` (task -> 0/1 [n]) against ``flags`` (latent id -> "off_breast,marker,...").

    ``summary.auroc`` scores the original-equivalent logit: the SAE reconstruction plus ``error_nh`` when given
    (``logit`` says "sae+error" or "sae"); ``auroc_suppressed`` zeroes every latent flagged with a kind in
    ``suppress`` (the error term kept); ``share_suppressed`` is those latents' summed share of the SAE logit
    difference. An AUROC is NaN, with ``note`` saying why, when a class is missing."""
    suppress = (suppress,) if isinstance(suppress, str) else tuple(suppress)
    zbar_nl = _check_zbar(zbar_nl, head)
    label_sets = _labels(labels, head, zbar_nl.shape[0])
    sets = _flag_sets(flags, head.d_sae)
    flagged_ids = np.asarray(sets.index, dtype=np.int64)
    text = {int(k): ",".join(sorted(s)) for k, s in sets.items()}
    suppressed_ids = suppression_set(flags, suppress)
    shares = logit_difference_shares(zbar_nl, head, label_sets)
    scale_l = scale_vector(head.d_sae, suppress=suppressed_ids)
    base_nh = shortcut_logits(zbar_nl, head, error_nh=error_nh)
    cut_nh = shortcut_logits(zbar_nl, head, scale_l, error_nh=error_nh)
    flagged_parts, rows = [], []
    for task, y_n in label_sets.items():
        h = head.index(task)
        task_shares = shares[shares["task"] == task].set_index("latent")
        part = task_shares.loc[flagged_ids].reset_index()
        part["flags"] = part["latent"].map(text)
        part["suppressed"] = np.isin(part["latent"].to_numpy(), suppressed_ids)
        part = part.iloc[np.lexsort((part["latent"].to_numpy(), -part["share"].fillna(-np.inf).to_numpy()))]
        part["rank"] = np.arange(1, len(part) + 1)
        flagged_parts.append(part.reset_index(drop=True))
        auroc_base, auroc_cut = auroc_columns(y_n, np.stack([base_nh[:, h], cut_nh[:, h]], axis=1))
        rows.append(
            {
                "task": task,
                "n": len(y_n),
                "n_pos": int(y_n.sum()),
                "logit": "sae" if error_nh is None else "sae+error",
                "auroc": float(auroc_base),
                "auroc_suppressed": float(auroc_cut),
                "auroc_drop": float(auroc_base - auroc_cut),
                "n_suppressed": len(suppressed_ids),
                "share_suppressed": float(task_shares.loc[suppressed_ids, "share"].sum(min_count=1))
                if len(suppressed_ids)
                else 0.0,
                "note": undefined_reason(len(y_n), int(y_n.sum())) or "",
            }
        )
    flagged = (
        pd.concat(flagged_parts, ignore_index=True)[list(FLAGGED_COLUMNS)]
        if flagged_parts
        else pd.DataFrame(columns=list(FLAGGED_COLUMNS))
    )
    return ShortcutAudit(flagged, pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), suppress)
