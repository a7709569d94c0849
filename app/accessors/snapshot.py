"""Case snapshots for Case review's download buttons: the current study as one A4 landscape page (PNG or
PDF) with the overlay, boxes and marks on screen, the calibrated probabilities at the operating point, the
top latents, the reviewers' verdicts, the bundle's identity and the research-use notice.

The rendered views are cached on the bundle's and the images' stamps and the display choices; the page
itself is composed on every call (its "taken" time is now). Calibrated probabilities, operating points and
marks come from ``accessors.marks``, verdicts from ``accessors.verdicts``; without them (or when they fail)
the snapshot shows the classifier's own probabilities, no marks and no verdict, and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

import accessors
from mammo_sae.bundle import snapshot as sn
from mammo_sae.bundle.marks import DEFAULT_SPECIFICITY
from mammo_sae.bundle.stamps import FileStamp, file_stamp
from mammo_sae.bundle.viewer import RenderedView, ViewOptions

try:  # written beside this module in the same issue; the snapshot works without them
    from accessors import marks as _marks
except ImportError:  # pragma: no cover - only while the marks accessors are missing
    _marks = None
try:
    from accessors import verdicts as _verdicts
except ImportError:  # pragma: no cover
    _verdicts = None


@st.cache_data(show_spinner=False, max_entries=4)
def _views(
    bundle_path: str,
    bundle_stamp_: FileStamp,
    files: tuple[tuple[str, FileStamp] | None, ...],
    positions: tuple[int | None, ...],
    options: ViewOptions,
    latent: int | None,
    kinds: tuple[str, ...] | None,
    evidence_head: str | None,
    vmax: float | None,
) -> list[RenderedView | None]:
    bundle = accessors._bundle(bundle_path, bundle_stamp_)
    images = [None if f is None else accessors._mammogram(*f) for f in files]
    return sn.render_slot_views(bundle, positions, images, options, latent, kinds, evidence_head, vmax)


def _calibration(
    bundle: accessors.Bundle, positions: list[int], specificity: float, threshold: float | None, marks: bool
) -> dict[str, Any]:
    """build_case's probabilities, points and marks from the marks accessors (empty when unavailable)."""
    if _marks is None:
        return {}
    try:
        points = _marks.operating_points(bundle, specificity, threshold)
        probabilities = {p: _marks.calibrated_probabilities(bundle, p) for p in positions}
        found = _marks.study_marks(bundle, positions, specificity, threshold) if marks else {}
    except accessors.MammoSaeError:
        return {}
    return {
        "probabilities": probabilities,
        "points": points,
        "marks": [m for p in positions for m in found.get(p, [])],
    }


def _case_verdicts(bundle: accessors.Bundle, study: str) -> list[Any]:
    if _verdicts is None:
        return []
    try:
        return list(_verdicts.case_verdicts(bundle, study))
    except accessors.MammoSaeError:
        return []


def case_snapshot(
    bundle: accessors.Bundle,
    root: str | Path,
    study: str,
    *,
    options: ViewOptions,
    overlay: str,
    head: str,
    latent: int | None = None,
    selected: int | None = None,
    specificity: float = DEFAULT_SPECIFICITY,
    threshold: float | None = None,
    marks: bool = True,
    kinds: tuple[str, ...] | None = None,
) -> tuple[sn.SnapshotCase, list[RenderedView | None]]:
    """The snapshot's inputs and its four rendered views: ``overlay`` "evidence map" (of ``head``),
    "latent" (``latent``) or "none"; the contributions of ``head`` on the view at bundle position
    ``selected`` (default the head's strongest view); the operating point at ``specificity`` or the typed
    ``threshold``; ``marks`` False leaves the CAD marks off (as when hidden on screen); ``kinds`` the box
    kinds drawn (None: all). BundleError for a study, head or overlay the bundle does not have."""
    positions = [v.position for v in accessors.present_views(bundle, study)]
    case = sn.build_case(
        bundle,
        study,
        options=options,
        overlay=overlay,
        head=head,
        latent=latent,
        selected=selected,
        verdicts=_case_verdicts(bundle, study),
        notes=accessors.latent_notes(bundle),
        kinds=kinds,
        **_calibration(bundle, positions, float(specificity), threshold, marks),
    )
    files: list[tuple[str, FileStamp] | None] = []
    for slot in case.slots:
        if slot.position is None:
            files.append(None)
            continue
        path = accessors.image_path(root, bundle.images.iloc[slot.position]["image_id"])
        files.append((path, file_stamp(path)))
    views = _views(
        *accessors._key(bundle),
        tuple(files),
        tuple(slot.position for slot in case.slots),
        sn.snapshot_options(case),
        case.latent,
        case.kinds,
        case.evidence_head,
        case.vmax,
    )
    return case, views


def snapshot_png(bundle: accessors.Bundle, root: str | Path, study: str, **choices: Any) -> bytes:
    """The snapshot as PNG bytes for ``st.download_button`` (``choices`` as ``case_snapshot``'s)."""
    return sn.snapshot_png(*case_snapshot(bundle, root, study, **choices))


def snapshot_pdf(bundle: accessors.Bundle, root: str | Path, study: str, **choices: Any) -> bytes:
    """The snapshot as a one-page PDF for ``st.download_button`` (``choices`` as ``case_snapshot``'s)."""
    return sn.snapshot_pdf(*case_snapshot(bundle, root, study, **choices))


def file_name(study: str, extension: str) -> str:
    """``snapshot-<study hash start>.<extension>``: no patient data in the name either."""
    stem = "".join(ch for ch in sn.short_id(study).rstrip("…") if ch.isalnum() or ch in "-_") or "case"
    return f"snapshot-{stem}.{extension.lstrip('.')}"
