"""CAD-style marks at an operating point for Case review, and the calibration the Overview shows: calibrated
view probabilities, each head's operating point (a target specificity, or a threshold the user typed),
the marks of a study's views, exam scores, and the reliability diagram. Cached on the bundle's stamp and
the operating point's numbers (``threshold=None``: chosen at ``specificity``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import altair as alt
import pandas as pd
import streamlit as st

import accessors
from mammo_sae.analysis.reliability_chart import reliability_chart as _chart
from mammo_sae.bundle import marks as mk
from mammo_sae.bundle.marks import DEFAULT_SPECIFICITY, Mark, OperatingPoint
from mammo_sae.bundle.stamps import FileStamp

__all__ = ["DEFAULT_SPECIFICITY", "Mark", "OperatingPoint"]


def _points(
    bundle: accessors.Bundle, specificity: float, threshold: float | None
) -> dict[str, OperatingPoint]:
    if threshold is None:
        return mk.operating_points(bundle, specificity)
    return mk.operating_points_at(bundle, threshold)


@st.cache_data(show_spinner=False, max_entries=32)
def _operating_points(
    path: str, stamp: FileStamp, specificity: float, threshold: float | None
) -> dict[str, OperatingPoint]:
    return _points(accessors._bundle(path, stamp), specificity, threshold)


def operating_points(
    bundle: accessors.Bundle, specificity: float = DEFAULT_SPECIFICITY, threshold: float | None = None
) -> dict[str, OperatingPoint]:
    """Each head's operating point: the lowest calibrated-probability threshold with at least
    ``specificity`` on the analysed images, or, when ``threshold`` is given, that threshold (for every
    head) with the specificity and sensitivity it gives. BundleError for a value outside [0, 1]."""
    return _operating_points(*accessors._key(bundle), float(specificity), _maybe(threshold))


def _maybe(threshold: float | None) -> float | None:
    return None if threshold is None else float(threshold)


@st.cache_data(show_spinner=False, max_entries=8)
def _calibrated(path: str, stamp: FileStamp) -> pd.DataFrame:
    return mk.calibrated_probabilities(accessors._bundle(path, stamp))


def calibrated_table(bundle: accessors.Bundle) -> pd.DataFrame:
    """[images, heads]: every image's calibrated probability per head, indexed by position (what the
    worklist's "highest view probability" columns take)."""
    return _calibrated(*accessors._key(bundle))


def calibrated_probabilities(bundle: accessors.Bundle, position: int) -> dict[str, float]:
    """One view's calibrated probability per head."""
    row = calibrated_table(bundle).loc[int(position)]
    return {head: float(row[head]) for head in bundle.tasks}


@st.cache_data(show_spinner=False, max_entries=64)
def _study_marks(
    path: str,
    stamp: FileStamp,
    positions: tuple[int | None, ...],
    specificity: float,
    threshold: float | None,
) -> dict[int, list[Mark]]:
    bundle = accessors._bundle(path, stamp)
    return mk.study_marks(bundle, positions, _points(bundle, specificity, threshold))


def study_marks(
    bundle: accessors.Bundle,
    positions: Iterable[int | None],
    specificity: float = DEFAULT_SPECIFICITY,
    threshold: float | None = None,
) -> dict[int, list[Mark]]:
    """The marks of a study's views (missing views, None, are skipped): for each present position, every
    head's marks at the operating point (none on a view below it), largest evidence first per head."""
    return _study_marks(*accessors._key(bundle), tuple(positions), float(specificity), _maybe(threshold))


def exam_scores(bundle: accessors.Bundle, positions: Iterable[int | None]) -> dict[str, float]:
    """Each head's exam score: the highest calibrated probability among the study's present views."""
    table = calibrated_table(bundle)
    present = [int(p) for p in positions if p is not None]
    return {head: float(table.loc[present, head].max()) if present else math.nan for head in bundle.tasks}


def passes(point: OperatingPoint, probability: float) -> bool:
    return bool(probability >= point.threshold)


def probability_line(
    bundle: accessors.Bundle,
    position: int,
    specificity: float = DEFAULT_SPECIFICITY,
    threshold: float | None = None,
) -> str:
    """``**head** 87% ▲`` per head of a view, as Markdown: the calibrated probability, marked ▲ when it
    passes the head's operating point (a plain ``–`` when it does not)."""
    points = operating_points(bundle, specificity, threshold)
    parts = []
    for head, p in calibrated_probabilities(bundle, position).items():
        sign = "▲ marked" if passes(points[head], p) else "–"
        parts.append(f"**{accessors.md_text(head)}** {100 * p:.0f}% {sign}")
    return " · ".join(parts)


def exam_line(
    bundle: accessors.Bundle,
    positions: Iterable[int | None],
    specificity: float = DEFAULT_SPECIFICITY,
    threshold: float | None = None,
) -> str:
    """``Exam score: **mass** 91% ▲ · ...`` as Markdown: each head's highest view, ▲ when it passes."""
    points = operating_points(bundle, specificity, threshold)
    parts = []
    for head, p in exam_scores(bundle, positions).items():
        sign = "▲" if not math.isnan(p) and passes(points[head], p) else ""
        value = "–" if math.isnan(p) else f"{100 * p:.0f}%"
        parts.append(f"**{accessors.md_text(head)}** {value} {sign}".rstrip())
    return "Exam score: " + " · ".join(parts)


def point_caption(point: OperatingPoint) -> str:
    """One line for the sidebar, as Markdown: ``mass: threshold 0.521 · specificity 90.1% · sensitivity
    77.0%`` (the head's name escaped)."""
    head = accessors.md_text(point.head)
    if math.isinf(point.threshold):
        return f"{head}: no negative image to set a threshold on; no view is marked"
    sensitivity = "n/a" if math.isnan(point.sensitivity) else f"{100 * point.sensitivity:.1f}%"
    specificity = "n/a" if math.isnan(point.specificity) else f"{100 * point.specificity:.1f}%"
    return f"{head}: threshold {point.threshold:.3f} · specificity {specificity} · sensitivity {sensitivity}"


@st.cache_data(show_spinner=False, max_entries=16)
def _point_table(path: str, stamp: FileStamp, specificity: float, threshold: float | None) -> pd.DataFrame:
    return mk.operating_point_table(_points(accessors._bundle(path, stamp), specificity, threshold))


def operating_point_table(
    bundle: accessors.Bundle, specificity: float = DEFAULT_SPECIFICITY, threshold: float | None = None
) -> pd.DataFrame:
    """One row per head: threshold, target and achieved specificity, sensitivity, positives, negatives."""
    return _point_table(*accessors._key(bundle), float(specificity), _maybe(threshold))


@st.cache_data(show_spinner=False, max_entries=8)
def _summary(path: str, stamp: FileStamp) -> pd.DataFrame:
    return mk.calibration_summary(accessors._bundle(path, stamp))


def calibration_summary(bundle: accessors.Bundle) -> pd.DataFrame:
    """Per head: the Platt fit (a, b, method, note), labelled images, and the ECE before and after."""
    return _summary(*accessors._key(bundle))


def calibration_notes(bundle: accessors.Bundle) -> list[str]:
    """What the reader must know about a head that could not be calibrated (one class on the split)."""
    table = calibration_summary(bundle)
    return [f"{r.head}: {r.note}" for r in table.itertuples() if r.note]


def calibrated_images(bundle: accessors.Bundle) -> int:
    """How many images the calibration was fitted on (the most labelled images of any head)."""
    table = calibration_summary(bundle)
    return int(table["images"].max()) if len(table) else 0


@st.cache_data(show_spinner=False, max_entries=8)
def _reliability(path: str, stamp: FileStamp, bins: int) -> pd.DataFrame:
    return mk.reliability_table(accessors._bundle(path, stamp), bins)


def reliability_table(bundle: accessors.Bundle, bins: int = 10) -> pd.DataFrame:
    """Every head's reliability bins (calibrated and the classifier's own, column ``series``)."""
    return _reliability(*accessors._key(bundle), int(bins))


def reliability_chart(
    bundle: accessors.Bundle,
    bins: int = 10,
    specificity: float = DEFAULT_SPECIFICITY,
    threshold: float | None = None,
) -> alt.HConcatChart | None:
    """The reliability diagram, one panel per head (calibrated and the classifier's own) with its ECE and
    the operating point as a vertical rule; None when no head has a labelled image."""
    table = reliability_table(bundle, bins)
    if table.empty:
        return None
    points = operating_points(bundle, specificity, threshold)
    return _chart(table, thresholds={head: p.threshold for head, p in points.items()})
