"""Where a head's evidence lies: per image, the share of its positive evidence in each region; per split, the
share of the class-1 minus class-0 logit difference carried by each group of tokens (in the box, near it,
on a marker, off the breast, elsewhere); and whether the evidence peak points at a finding.

Inputs are per-token evidence (``analysis.evidence``: token t's share ``(w_h . f_t) / N`` of head h's logit
minus its bias, so an image's tokens add up to ``logit - bias``) and per-token region labels
(``analysis.regions``: an index into the region names, one label per token).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mammo_sae.analysis.peaks import pointing_tolerances
from mammo_sae.analysis.profiles import region_column
from mammo_sae.analysis.regions import BACKGROUND, BASE_REGIONS, BORDER, BOX_PREFIX, MARKER, near_box
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import undefined_reason

#: token groups of the split-level decomposition, in label order of ``evidence_groups``
IN_BOX, NEAR_BOX, MARKER_GROUP, OFF_BREAST_GROUP, FAR = "in_box", "near_box", "marker", "off_breast", "far"
GROUPS: tuple[str, ...] = (IN_BOX, NEAR_BOX, MARKER_GROUP, OFF_BREAST_GROUP, FAR)
#: the split's total logit difference counts as zero (shares undefined) below this fraction of the summed
#: absolute group differences
ZERO_TOTAL_RTOL = 1e-9


class EvidenceRegionError(MammoSaeError):
    """Evidence, region labels, groups or boxes were given with shapes or values that do not fit together."""


def _region_suffix(name: str) -> str:
    """A region name as a column suffix: ``box:mass`` -> ``box_mass``."""
    return name.replace(":", "_")


def _logit_column(name: str) -> str:
    return "logit_" + _region_suffix(name)


def _check_labels(labels: np.ndarray, n_regions: int, shape: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape or not np.issubdtype(labels.dtype, np.integer):
        raise EvidenceRegionError(
            f"region labels must be integers of shape {shape} (one per token), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_regions):
        raise EvidenceRegionError(
            f"region labels must lie in 0..{n_regions - 1} (indices into the region names); found "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return labels.astype(np.int64)


def _finite(evidence: np.ndarray, what: str) -> np.ndarray:
    evidence = np.asarray(evidence, dtype=np.float64)
    if not np.isfinite(evidence).all():
        raise EvidenceRegionError(f"{what} holds NaN or infinite values; recompute the evidence maps")
    return evidence


def region_sums(evidence_t: np.ndarray, labels_t: np.ndarray, n_regions: int) -> np.ndarray:
    """[R] float64 signed evidence sum per region; they add up to the image's ``logit - bias``."""
    evidence_t = _finite(evidence_t, "evidence").reshape(-1)
    labels_t = _check_labels(np.asarray(labels_t).reshape(-1), n_regions, evidence_t.shape)
    return np.bincount(labels_t, weights=evidence_t, minlength=n_regions)


def region_shares(evidence_t: np.ndarray, labels_t: np.ndarray, n_regions: int) -> np.ndarray:
    """[R] float64 share of the image's positive evidence (sum of ``max(e_t, 0)``) in each region; they add
    up to 1, or are all zero when no token has positive evidence."""
    positive_t = np.maximum(_finite(evidence_t, "evidence").reshape(-1), 0.0)
    sums_r = region_sums(positive_t, labels_t, n_regions)
    total = sums_r.sum()
    return sums_r / total if total > 0 else np.zeros(n_regions)


def image_region_table(
    evidence_nht: np.ndarray, labels_nt: np.ndarray, names: Sequence[str], tasks: Sequence[str]
) -> pd.DataFrame:
    """One row per (position, task): ``share_<region>`` (share of positive evidence, as ``region_shares``),
    ``logit_<region>`` (signed sum, as ``region_sums``) and ``positive_total`` (the summed positive evidence).
    Rows are ordered by position, then task in the given order."""
    evidence_nht = _finite(evidence_nht, "evidence")
    names, tasks = tuple(names), tuple(tasks)
    if evidence_nht.ndim != 3 or evidence_nht.shape[1] != len(tasks):
        raise EvidenceRegionError(
            f"evidence must be [images, heads = {len(tasks)}, tokens], got shape {evidence_nht.shape}"
        )
    n, n_heads, n_tokens = evidence_nht.shape
    labels_nt = _check_labels(labels_nt, len(names), (n, n_tokens))
    n_regions = len(names)
    key_nt = np.arange(n)[:, None] * n_regions + labels_nt  # one bin per (image, region)
    columns: dict[str, np.ndarray] = {
        "position": np.repeat(np.arange(n, dtype=np.int64), n_heads),
        "task": np.tile(np.asarray(tasks, dtype=object), n),
    }
    signed_nhr = np.empty((n, n_heads, n_regions))
    positive_nhr = np.empty((n, n_heads, n_regions))
    for h in range(n_heads):
        e_nt = evidence_nht[:, h]
        signed_nhr[:, h] = np.bincount(key_nt.ravel(), e_nt.ravel(), n * n_regions).reshape(n, n_regions)
        positive_nhr[:, h] = np.bincount(
            key_nt.ravel(), np.maximum(e_nt, 0.0).ravel(), n * n_regions
        ).reshape(n, n_regions)
    total_nh = positive_nhr.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_nhr = np.where(total_nh[..., None] > 0, positive_nhr / total_nh[..., None], 0.0)
    for r, name in enumerate(names):
        columns[region_column(name)] = share_nhr[:, :, r].ravel()
    for r, name in enumerate(names):
        columns[_logit_column(name)] = signed_nhr[:, :, r].ravel()
    columns["positive_total"] = total_nh.ravel()
    return pd.DataFrame(columns)


def _name_index(names: tuple[str, ...], name: str) -> int:
    if name not in names:
        raise EvidenceRegionError(f"region {name!r} is not among the region names {list(names)}")
    return names.index(name)


def evidence_groups(
    labels_nt: np.ndarray,
    names: Sequence[str],
    grid: tuple[int, int],
    category: str,
    near_tokens: int,
) -> np.ndarray:
    """[n, T] int8 group of each token, an index into ``GROUPS``: ``in_box`` (labelled ``box:<category>``),
    ``near_box`` (breast or skin within ``near_tokens`` tokens, Chebyshev distance on the grid, of an in-box
    token), ``marker``, ``off_breast`` (background and border) and ``far`` (everything else, including other
    categories' boxes). ``near_tokens = 0`` leaves ``near_box`` empty."""
    names = tuple(names)
    gh, gw = grid
    labels_nt = _check_labels(labels_nt, len(names), (np.asarray(labels_nt).shape[0], gh * gw))
    if isinstance(near_tokens, bool) or not isinstance(near_tokens, int | np.integer) or near_tokens < 0:
        raise EvidenceRegionError(f"near_tokens must be a non-negative integer, got {near_tokens!r}")
    if names[: len(BASE_REGIONS)] != BASE_REGIONS:
        raise EvidenceRegionError(
            f"region names must start with the base regions {list(BASE_REGIONS)} (analysis.regions.region_names)"
            f", got {list(names)}"
        )
    box = _name_index(names, BOX_PREFIX + category)
    in_box_nt = labels_nt == box
    near_nt = near_box(labels_nt, grid, box, int(near_tokens))  # breast / skin near the box, not in it
    groups_nt = np.full(labels_nt.shape, GROUPS.index(FAR), dtype=np.int8)
    groups_nt[np.isin(labels_nt, [_name_index(names, BACKGROUND), _name_index(names, BORDER)])] = (
        GROUPS.index(OFF_BREAST_GROUP)
    )
    groups_nt[labels_nt == _name_index(names, MARKER)] = GROUPS.index(MARKER_GROUP)
    groups_nt[near_nt] = GROUPS.index(NEAR_BOX)
    groups_nt[in_box_nt] = GROUPS.index(IN_BOX)
    return groups_nt


def group_sums(evidence_nt: np.ndarray, groups_nt: np.ndarray) -> np.ndarray:
    """[n, len(GROUPS)] float64 evidence sum of each group in each image (rows add up to logit - bias);
    the per-image table a study-level bootstrap resamples."""
    evidence_nt = _finite(evidence_nt, "evidence")
    if evidence_nt.ndim != 2:
        raise EvidenceRegionError(f"evidence must be one head's [images, tokens], got {evidence_nt.shape}")
    n, n_groups = evidence_nt.shape[0], len(GROUPS)
    groups_nt = _check_labels(groups_nt, n_groups, evidence_nt.shape)
    key_nt = np.arange(n)[:, None] * n_groups + groups_nt
    return np.bincount(key_nt.ravel(), evidence_nt.ravel(), n * n_groups).reshape(n, n_groups)


def split_difference_shares(evidence_nt: np.ndarray, groups_nt: np.ndarray, y_n: np.ndarray) -> pd.DataFrame:
    """One row per group (``GROUPS`` order): ``mean_positive`` / ``mean_negative`` (mean over the class-1 /
    class-0 images of the group's evidence sum), ``difference`` and ``share`` (its part of the total class-1 minus class-0 mean logit difference;
    the shares add up to 1). ``note`` is "" when the shares are defined, otherwise why not (a class is
    missing, or the total difference is ~0); then ``share`` is NaN. ``attrs["total"]``: the total difference."""
    sums_ng = group_sums(evidence_nt, groups_nt)
    y_n = np.asarray(y_n)
    values = np.unique(y_n)
    if y_n.shape != (sums_ng.shape[0],) or not np.isin(values, (0, 1)).all():
        raise EvidenceRegionError(
            f"y must be 0/1 labels, one per image ({sums_ng.shape[0]}); got shape {y_n.shape}, "
            f"values {values[:10].tolist()}"
        )
    positive = y_n.astype(bool)
    reason = undefined_reason(len(y_n), int(positive.sum()))
    with np.errstate(invalid="ignore"):
        mean1_g = sums_ng[positive].mean(axis=0) if positive.any() else np.full(len(GROUPS), np.nan)
        mean0_g = sums_ng[~positive].mean(axis=0) if (~positive).any() else np.full(len(GROUPS), np.nan)
    difference_g = mean1_g - mean0_g
    total = float(difference_g.sum())
    if reason is None and not abs(total) > ZERO_TOTAL_RTOL * np.abs(difference_g).sum():
        reason = "total logit difference ~0"
    share_g = np.full(len(GROUPS), np.nan) if reason else difference_g / total
    table = pd.DataFrame(
        {
            "group": list(GROUPS),
            "mean_positive": mean1_g,
            "mean_negative": mean0_g,
            "difference": difference_g,
            "share": share_g,
            "note": reason or "",
        }
    )
    table.attrs["total"] = total
    return table


def token_centres(tokens: np.ndarray, grid: tuple[int, int], frame_size: tuple[int, int]) -> np.ndarray:
    """[k, 2] float64 (x, y) frame-pixel centres of the tokens' footprints."""
    gh, gw = grid
    height, width = frame_size
    rows, cols = np.divmod(np.asarray(tokens, dtype=np.int64), gw)
    return np.stack([(cols + 0.5) * width / gw, (rows + 0.5) * height / gh], axis=-1)


def _boxes(boxes: np.ndarray, i: int) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvidenceRegionError(f"image {i}: boxes must be [m, 4] (x0, y0, x1, y1), got {boxes.shape}")
    return boxes


def _tolerance(tolerance: object, i: int, m: int) -> np.ndarray:
    """[m, 2] (x, y) tolerance for an image's m boxes from None, one (x, y) pair or one pair per box."""
    if tolerance is None:
        return np.zeros((m, 2))
    tol = np.asarray(tolerance, dtype=np.float64)
    if tol.shape == (2,):
        return np.broadcast_to(tol, (m, 2))
    if tol.shape == (m, 2):
        return tol
    raise EvidenceRegionError(
        f"image {i}: tolerance must be one (x, y) pair or one per box [{m}, 2], got shape {tol.shape}"
    )


def evidence_pointing(
    evidence_nt: np.ndarray,
    boxes_per_image: Sequence[np.ndarray],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
    tolerance_xy_per_image: Sequence[object] | np.ndarray | None = None,
) -> np.ndarray:
    """[n] bool: does each image's evidence peak (the max token, ties to the lowest token) have its footprint
    centre inside one of the image's boxes (frame px, x0 y0 x1 y1, edges included), each box grown by
    ``tolerance_xy_per_image[i]`` frame pixels: one (x, y) pair for the image or one pair per box [m, 2]?
    An image without boxes counts as a miss (restrict to positive images before scoring)."""
    evidence_nt = _finite(evidence_nt, "evidence")
    gh, gw = grid
    if evidence_nt.ndim != 2 or evidence_nt.shape[1] != gh * gw:
        raise EvidenceRegionError(f"evidence must be [images, {gh} x {gw} tokens], got {evidence_nt.shape}")
    n = evidence_nt.shape[0]
    if len(boxes_per_image) != n:
        raise EvidenceRegionError(f"boxes_per_image has {len(boxes_per_image)} entries for {n} images")
    tolerances = [None] * n if tolerance_xy_per_image is None else tolerance_xy_per_image
    if len(tolerances) != n:
        raise EvidenceRegionError(f"tolerance_xy_per_image has {len(tolerances)} entries for {n} images")
    xy_n2 = token_centres(np.argmax(evidence_nt, axis=1), grid, frame_size) if n else np.zeros((0, 2))
    hit_n = np.zeros(n, dtype=bool)
    for i in range(n):
        b_m4 = _boxes(boxes_per_image[i], i)
        if not len(b_m4):
            continue
        tol_m2 = _tolerance(tolerances[i], i, len(b_m4))
        if (tol_m2 < 0).any():
            raise EvidenceRegionError(f"image {i}: tolerances must be >= 0 frame pixels")
        x, y = xy_n2[i]
        inside_m = (
            (x >= b_m4[:, 0] - tol_m2[:, 0])
            & (x <= b_m4[:, 2] + tol_m2[:, 0])
            & (y >= b_m4[:, 1] - tol_m2[:, 1])
            & (y <= b_m4[:, 3] + tol_m2[:, 1])
        )
        hit_n[i] = bool(inside_m.any())
    return hit_n


def box_tolerances_xy(boxes: pd.DataFrame, original_px: float) -> np.ndarray:
    """[m, 2] ``original_px`` original-image pixels in frame pixels per axis for each ``truth_boxes`` row
    (``analysis.peaks.pointing_tolerances`` as an array)."""
    return pointing_tolerances(boxes, original_px)[["tolerance_x", "tolerance_y"]].to_numpy(dtype=np.float64)
