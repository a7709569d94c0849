"""CAD-style marks at an operating point: calibrated view probabilities, each head's threshold chosen on
the analysed split, and the marks drawn on views that pass it.

Calibration (Platt scaling of each head's original logit) and the operating point are both fitted on the
bundle's image table, the split the app shows: they describe that split, they are not a held-out estimate.
A mark's box is where the head's positive evidence is strongest (the evidence map thresholded at
``MARK_FRACTION`` of its peak, at most ``MAX_MARKS`` regions, largest summed evidence first); a bundle from
before evidence maps gives one mark covering the whole region the model saw (the frame's crop in original
pixels), so a view that passes still shows its score.

points = operating_points(bundle, specificity=0.9)        # {head: OperatingPoint}
marks = view_marks(bundle, position, "mass", points["mass"])
scores = exam_scores(bundle, [v.position for v in hanging_views(bundle, study)])
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.localisation import MapThreshold, predicted_boxes
from mammo_sae.analysis.operating_points import (
    Calibration,
    OperatingPointError,
    expected_calibration_error,
    fit_platt,
    rates_at,
    reliability_bins,
    sigmoid,
    threshold_at_specificity,
)
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.overlays import frame_heatmap
from mammo_sae.bundle.reader import Bundle
from mammo_sae.data.frames import transform_from_json

DEFAULT_SPECIFICITY = 0.9
MARK_FRACTION = 0.6  # evidence >= 0.6 x the view's peak positive evidence forms a mark's region
MAX_MARKS = 2  # per view and head
MIN_MARK_AREA = 16.0  # frame pixels; smaller regions are noise of the upsampling


@dataclass(frozen=True)
class OperatingPoint:
    """One head's threshold on the calibrated probability, chosen on the analysed split."""

    head: str
    threshold: float  # calibrated probability at or above which a view is marked
    target_specificity: float  # what was asked for (default 0.9)
    specificity: float  # what the threshold gives on the analysed split (images)
    sensitivity: float  # ... and its sensitivity there
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class Mark:
    """A CAD mark on one view: where the head's evidence for a finding is strongest, with the view's
    calibrated probability as its score."""

    position: int  # the view's row in the bundle's image table
    head: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in ORIGINAL image pixels (not mirrored)
    score: float  # calibrated probability of the view for this head, 0..1


@dataclass(frozen=True)
class _Calibrated:
    fits: dict[str, Calibration]
    probabilities: pd.DataFrame  # [images, heads] calibrated, indexed by position
    labelled: dict[str, np.ndarray]  # head -> bool mask of images with a 0/1 label


_CACHE: weakref.WeakKeyDictionary[Bundle, _Calibrated] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _labels(bundle: Bundle, head: str) -> pd.Series:
    images = bundle.images
    if head not in images.columns:
        raise BundleError(f"the image table has no label column {head!r}; rebuild the bundle")
    return pd.to_numeric(images[head], errors="coerce")


def _logits(bundle: Bundle, head: str) -> np.ndarray:
    column = f"logit_{head}_original"
    if column not in bundle.images.columns:
        raise BundleError(f"the image table has no column {column!r}; rebuild the bundle")
    return bundle.images[column].to_numpy(dtype=np.float64)


def _calibrated(bundle: Bundle) -> _Calibrated:
    """Each head's Platt fit on the bundle's images and every image's calibrated probability (computed
    once per opened bundle)."""
    with _LOCK:
        found = _CACHE.get(bundle)
    if found is not None:
        return found
    fits, columns, labelled = {}, {}, {}
    for head in bundle.tasks:
        logits_n = _logits(bundle, head)
        labels = _labels(bundle, head)
        known_n = labels.isin((0, 1)).to_numpy() & np.isfinite(logits_n)
        fits[head] = fit_platt(logits_n[known_n], labels.to_numpy()[known_n], one_class="identity")
        columns[head] = fits[head].apply(np.nan_to_num(logits_n))
        labelled[head] = known_n
    result = _Calibrated(fits, pd.DataFrame(columns, index=bundle.images["position"].to_numpy()), labelled)
    with _LOCK:
        _CACHE[bundle] = result
    return result


def calibrations(bundle: Bundle) -> dict[str, Calibration]:
    """Each head's calibration (``method`` "identity" with a note when its split has one class)."""
    return dict(_calibrated(bundle).fits)


def calibrated_probabilities(bundle: Bundle) -> pd.DataFrame:
    """[images, heads]: every image's calibrated probability per head, indexed by position."""
    return _calibrated(bundle).probabilities.copy()


def view_probabilities(bundle: Bundle, position: int) -> dict[str, float]:
    """One view's calibrated probability per head."""
    row = _calibrated(bundle).probabilities.loc[int(position)]
    return {head: float(row[head]) for head in bundle.tasks}


def _head(bundle: Bundle, head: str) -> str:
    if head not in bundle.tasks:
        raise BundleError(f"no head {head!r} in this bundle; its heads are {', '.join(bundle.tasks)}")
    return head


def _scores_labels(bundle: Bundle, head: str) -> tuple[np.ndarray, np.ndarray]:
    state = _calibrated(bundle)
    known_n = state.labelled[_head(bundle, head)]
    scores_n = state.probabilities[head].to_numpy()[known_n]
    return scores_n, _labels(bundle, head).to_numpy()[known_n].astype(bool)


def _point(bundle: Bundle, head: str, threshold: float, target: float) -> OperatingPoint:
    scores_n, labels_n = _scores_labels(bundle, head)
    if len(scores_n):
        sensitivity, specificity = rates_at(scores_n, labels_n, threshold)
    else:
        sensitivity = specificity = math.nan
    return OperatingPoint(
        head,
        float(threshold),
        float(target),
        specificity,
        sensitivity,
        int(labels_n.sum()),
        int((~labels_n).sum()),
    )


def operating_point(bundle: Bundle, head: str, specificity: float = DEFAULT_SPECIFICITY) -> OperatingPoint:
    """``head``'s lowest calibrated-probability threshold whose specificity on the bundle's images is >=
    ``specificity``. A head without negative images gets threshold inf (no view is marked)."""
    scores_n, labels_n = _scores_labels(bundle, head)
    try:
        threshold = threshold_at_specificity(scores_n, labels_n, specificity)
    except OperatingPointError as error:
        if (~labels_n).any():  # a bad target, not a missing class
            raise BundleError(str(error)) from error
        threshold = math.inf
    return _point(bundle, head, threshold, specificity)


def operating_points(bundle: Bundle, specificity: float = DEFAULT_SPECIFICITY) -> dict[str, OperatingPoint]:
    """Every head's operating point at the target ``specificity`` (default 90%)."""
    return {head: operating_point(bundle, head, specificity) for head in bundle.tasks}


def operating_points_at(bundle: Bundle, threshold: float | Mapping[str, float]) -> dict[str, OperatingPoint]:
    """Every head's operating point at a threshold the user chose (one for all heads, or per head); its
    ``target_specificity`` is the specificity that threshold gives, as nothing else was asked for."""
    points = {}
    for head in bundle.tasks:
        value = threshold[head] if isinstance(threshold, Mapping) else threshold
        if not isinstance(value, int | float | np.floating) or not 0.0 <= float(value) <= 1.0:
            raise BundleError(f"a threshold is a calibrated probability in [0, 1], got {value!r} for {head}")
        point = _point(bundle, head, float(value), math.nan)
        points[head] = OperatingPoint(**{**point.__dict__, "target_specificity": point.specificity})
    return points


def _image_box(transform) -> tuple[float, float, float, float] | None:
    """The part of the original image the model frame covers (its crop), clipped to the image."""
    height, width = transform.frame_size
    return _clipped(transform.boxes_to_original(np.array([[0.0, 0.0, width, height]]))[0], transform)


def _clipped(box: np.ndarray, transform) -> tuple[float, float, float, float] | None:
    rows, cols = transform.original_shape
    x0, y0, x1, y1 = np.clip(box, 0.0, [cols, rows, cols, rows])
    return (float(x0), float(y0), float(x1), float(y1)) if x1 > x0 and y1 > y0 else None


def _evidence_boxes(token_map: np.ndarray, transform) -> list[tuple[float, float, float, float]]:
    """Up to ``MAX_MARKS`` regions of strong positive evidence in original pixels, largest summed evidence
    first; none when the map has no positive token."""
    positive = np.maximum(np.asarray(token_map, dtype=np.float32), 0.0)
    if float(positive.max()) <= 0:
        return []
    heat = frame_heatmap(positive, transform.frame_size)
    frame_boxes, _ = predicted_boxes(heat, MapThreshold("fraction", MARK_FRACTION, MIN_MARK_AREA))
    mass = [float(heat[int(y0) : int(y1), int(x0) : int(x1)].sum()) for x0, y0, x1, y1 in frame_boxes]
    order = np.argsort(-np.asarray(mass), kind="stable")
    out = []
    for box in transform.boxes_to_original(frame_boxes[order]) if len(order) else []:
        clipped = _clipped(box, transform)
        if clipped is not None:
            out.append(clipped)
        if len(out) == MAX_MARKS:
            break
    return out


def view_marks(bundle: Bundle, position: int, head: str, point: OperatingPoint) -> list[Mark]:
    """The marks of one view for ``head``: none unless its calibrated probability is >= the point's
    threshold; else at most ``MAX_MARKS`` boxes where the head's positive evidence is strongest (one box
    over the whole frame region for a bundle without evidence maps), each scored with that probability."""
    if point.head != _head(bundle, head):
        raise BundleError(f"the operating point is {point.head!r}'s, not {head!r}'s")
    score = view_probabilities(bundle, position)[head]
    if not score >= point.threshold:
        return []
    transform = transform_from_json(bundle.images.iloc[int(position)]["transform"])
    evidence_hgw = bundle.evidence(int(position))
    if evidence_hgw is None:
        whole = _image_box(transform)
        boxes = [whole] if whole is not None else []
    else:
        boxes = _evidence_boxes(evidence_hgw[tuple(bundle.heads.tasks).index(head)], transform)
    return [Mark(int(position), head, box, score) for box in boxes]


def study_marks(
    bundle: Bundle, positions: Iterable[int | None], points: Mapping[str, OperatingPoint]
) -> dict[int, list[Mark]]:
    """Each present view's marks for every head with a point (views in ``positions`` order)."""
    return {
        int(p): [m for head, point in points.items() for m in view_marks(bundle, int(p), head, point)]
        for p in positions
        if p is not None
    }


def exam_scores(bundle: Bundle, positions: Iterable[int | None]) -> dict[str, float]:
    """Each head's exam-level score: the highest calibrated probability among the present views (NaN for
    a study without any)."""
    present = [int(p) for p in positions if p is not None]
    table = _calibrated(bundle).probabilities
    if not present:
        return {head: math.nan for head in bundle.tasks}
    return {head: float(table.loc[present, head].max()) for head in bundle.tasks}


def reliability(
    bundle: Bundle, head: str, bins: int = 10, *, calibrated: bool = True, strategy: str = "uniform"
) -> pd.DataFrame:
    """``head``'s reliability bins on the bundle's labelled images (calibrated probabilities, or the
    classifier's own sigmoid with ``calibrated=False``)."""
    scores_n, labels_n = _scores_labels(bundle, head)
    if not calibrated:
        scores_n = sigmoid(_logits(bundle, head)[_calibrated(bundle).labelled[head]])
    return reliability_bins(scores_n, labels_n, bins, strategy)


def calibration_summary(bundle: Bundle, bins: int = 10) -> pd.DataFrame:
    """Per head: the fit (a, b, method, note), the labelled images, and the ECE before and after."""
    rows = []
    for head, fit in calibrations(bundle).items():
        rows.append(
            {
                "head": head,
                "a": fit.a,
                "b": fit.b,
                "method": fit.method,
                "images": fit.n,
                "positives": fit.n_positive,
                "ece_before": expected_calibration_error(reliability(bundle, head, bins, calibrated=False)),
                "ece_after": expected_calibration_error(reliability(bundle, head, bins)),
                "note": fit.note,
            }
        )
    return pd.DataFrame(rows)


CALIBRATED, UNCALIBRATED = "calibrated", "classifier's own"


def reliability_table(bundle: Bundle, bins: int = 10) -> pd.DataFrame:
    """Every head's reliability bins, calibrated and the classifier's own sigmoid (column ``series``),
    ready for ``reliability_chart``."""
    parts = [
        reliability(bundle, head, bins, calibrated=calibrated).assign(head=head, series=series)
        for head in bundle.tasks
        for calibrated, series in ((True, CALIBRATED), (False, UNCALIBRATED))
    ]
    return pd.concat(parts, ignore_index=True)


def operating_point_table(points: Mapping[str, OperatingPoint]) -> pd.DataFrame:
    """One row per head: threshold, target and achieved specificity, sensitivity, positives, negatives."""
    return pd.DataFrame(
        [
            {
                "head": p.head,
                "threshold": p.threshold,
                "target specificity": p.target_specificity,
                "specificity": p.specificity,
                "sensitivity": p.sensitivity,
                "positives": p.n_positive,
                "negatives": p.n_negative,
            }
            for p in points.values()
        ]
    )
