"""A case snapshot to take into a review meeting: the four views as hung, with the overlays shown, each view's
probabilities and CAD marks, the exam score per head, the latents that drive the chosen view's logit, the
reviewer's verdict, the bundle's identity and the research-use notice, on one A4 landscape page exported as
PNG or PDF (a raster page; ``snapshot_drawing`` lays it out).

The inputs are plain values (``SnapshotCase``) that the app fills from its accessors, so the page shows
exactly what the screen showed. Nothing patient-identifying goes on it: no DICOM names, ids, dates or UIDs;
the bundle's study ids are hashes already, and only their first characters are shown."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from mammo_sae import RESEARCH_USE_NOTICE, __version__
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle.cases import HANGING_ORDER, hanging_views, view_probabilities
from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.label_notes import orientation_tag
from mammo_sae.bundle.marks import Mark, OperatingPoint
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.bundle.queries import contributions_table
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.snapshot_drawing import compose, page_layout
from mammo_sae.bundle.viewer import RenderedView, ViewOptions, render_case_view
from mammo_sae.data.dicom import MammogramDicom

STUDY_CHARS = 12  # characters of a study hash shown
DEFAULT_DPI = 150  # A4 landscape at 150 dpi: 1754 x 1240 pixels
OVERLAYS = ("evidence map", "latent", "none")


@dataclass(frozen=True)
class ViewScore:
    """One head's probability on one view and whether it reaches the head's operating point (None: no
    operating point known)."""

    head: str
    probability: float
    passes: bool | None = None


@dataclass(frozen=True)
class SnapshotSlot:
    """One hanging slot: its name, the view's row in the bundle (None: the study lacks it), its scores and
    a line under it (where the head's evidence lies)."""

    name: str
    position: int | None
    scores: tuple[ViewScore, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ExamScore:
    """A head's exam-level score (its highest view probability) against its operating point."""

    head: str
    score: float
    view: str  # the view it comes from, e.g. "R CC"
    threshold: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None

    @property
    def passes(self) -> bool | None:
        return None if self.threshold is None else self.score >= self.threshold


@dataclass(frozen=True)
class LatentRow:
    """One of the latents that drive the chosen view's logit: its label, flags (as badges read), signed
    contribution to the logit and share of all latents' absolute contributions there."""

    latent: int
    label: str
    flags: tuple[str, ...]
    contribution: float
    share: float


@dataclass(frozen=True)
class BundleIdentity:
    """What the numbers come from, as the manifest records it."""

    dataset_kind: str
    synthetic: bool
    backbone: str
    sae: str
    built: str
    run: str
    models_synthetic: bool = False  # phantom-trained models: their outputs on other images mean nothing

    @property
    def mismatched(self) -> bool:
        """Phantom-trained models scoring images that are not phantoms (the snapshot says so by the numbers)."""
        return self.models_synthetic and not self.synthetic

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> BundleIdentity:
        inputs = manifest.get("inputs") or {}
        backbone = inputs.get("backbone") or {}
        architecture = backbone.get("architecture") or (manifest.get("config") or {}).get("backbone")
        layer = backbone.get("layer")
        features = backbone.get("num_features")
        backbone_text = " · ".join(
            str(part)
            for part in (
                architecture or "unknown backbone",
                layer,
                f"{features} channels" if features else None,
            )
            if part
        )
        sae = manifest.get("sae") or {}
        hparams = sae.get("hparams") or {}
        sae_text = (
            f"{sae.get('architecture', '?')} SAE, {sae.get('d_in', '?')} -> {sae.get('d_sae', '?')} latents"
        )
        if hparams.get("k"):
            sae_text += f", k = {hparams['k']}"
        return cls(
            dataset_kind=str(
                manifest.get("dataset_kind") or (inputs.get("dataset") or {}).get("kind") or "unknown"
            ),
            synthetic=bool(manifest.get("synthetic")),
            backbone=backbone_text,
            sae=sae_text,
            built=built_text(manifest.get("created")),
            run=str(manifest.get("run_id") or "")[:STUDY_CHARS],
            models_synthetic=bool(manifest.get("models_synthetic", manifest.get("synthetic"))),
        )


@dataclass(frozen=True)
class SnapshotCase:
    """Everything one snapshot shows (plain values; ``build_case`` fills them from a bundle)."""

    study: str
    identity: BundleIdentity
    slots: tuple[SnapshotSlot, ...]  # four, in hanging order R CC, L CC, R MLO, L MLO
    overlay: str = "none"  # one of OVERLAYS
    overlay_text: str = "no overlay"  # in words: "mass evidence map", "latent #12 spiculated edge"
    options: ViewOptions = field(default_factory=ViewOptions)
    latent: int | None = None
    evidence_head: str | None = None
    vmax: float | None = None
    kinds: tuple[str, ...] | None = None  # the ground-truth box kinds drawn (None: all)
    box_kinds: tuple[str, ...] = ()  # the kinds the legend names
    marks: tuple[Mark, ...] = ()
    calibrated: bool = True  # the probabilities are calibrated ones
    exam_scores: tuple[ExamScore, ...] = ()
    contributions_title: str = ""
    contributions: tuple[LatentRow, ...] = ()
    verdicts: tuple[tuple[tuple[str, str], ...], ...] = ()  # each reviewer's verdict as verdict_items
    taken: str = field(default_factory=lambda: datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    notice: str = RESEARCH_USE_NOTICE
    version: str = __version__

    def __post_init__(self) -> None:
        names = tuple(slot.name for slot in self.slots)
        expected = tuple(f"{lat} {view}" for lat, view in HANGING_ORDER)
        if names != expected:
            raise BundleError(f"a snapshot has the four hanging slots {expected}; got {names}")
        if self.overlay not in OVERLAYS:
            raise BundleError(f"overlay must be one of {', '.join(OVERLAYS)}; got {self.overlay!r}")

    @property
    def study_short(self) -> str:
        return short_id(self.study)

    def marks_on(self, position: int | None) -> list[Mark]:
        return [mark for mark in self.marks if position is not None and mark.position == position]


def short_id(value: str, chars: int = STUDY_CHARS) -> str:
    """A hash id cut to its first ``chars`` characters (with an ellipsis when cut)."""
    value = str(value)
    return value if len(value) <= chars else value[:chars] + "…"


def built_text(created: object) -> str:
    """The manifest's ISO build time as ``2026-12-02 03:54 UTC`` (as written when it does not parse)."""
    if not created:
        return "unknown"
    try:
        when = datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    return when.strftime("%Y-%m-%d %H:%M ") + (when.tzname() or "").replace("UTC+00:00", "UTC")


VERDICT_FIELDS = {  # a case verdict's fields as the page names them, in this order
    "reviewer": "reviewer",
    "evidence": "evidence on the finding",
    "model_error": "model error",
    "note": "note",
    "updated": "saved",
}


def verdict_items(verdict: Mapping[str, object] | object) -> tuple[tuple[str, str], ...]:
    """One case verdict (a mapping or a dataclass such as ``verdicts.CaseVerdict``) as (field in words,
    value) pairs: the known fields first, in words, then any others; the study and empty values left out."""
    if is_dataclass(verdict) and not isinstance(verdict, type):
        verdict = asdict(verdict)
    assert isinstance(verdict, Mapping), (
        f"a verdict is a mapping or a dataclass, got {type(verdict).__name__}"
    )
    known = [key for key in VERDICT_FIELDS if key in verdict]
    others = [key for key in verdict if key not in VERDICT_FIELDS and key != "study"]
    items = []
    for key in known + others:
        value = verdict[key]
        if value is None or value == "":
            value = "not judged" if key == "evidence" else None
        if value is None:
            continue
        text = built_text(value) if key == "updated" else " ".join(str(value).split())
        items.append((VERDICT_FIELDS.get(key, str(key).replace("_", " ")), text))
    return tuple(items)


# --- filling a case from a bundle ----------------------------------------------------------------------------


def raw_scores(bundle: Bundle, position: int) -> tuple[ViewScore, ...]:
    """A view's uncalibrated probabilities (original features), with no operating point."""
    table = view_probabilities(bundle, position)
    return tuple(ViewScore(str(r.head), float(r.original)) for r in table.itertuples())


def scores_at(
    probabilities: Mapping[str, float], points: Mapping[str, OperatingPoint] | None = None
) -> tuple[ViewScore, ...]:
    """A view's probabilities per head, each with whether it reaches the head's operating point."""
    return tuple(
        ViewScore(
            head,
            float(p),
            None if points is None or head not in points else bool(p >= points[head].threshold),
        )
        for head, p in probabilities.items()
    )


def exam_from_slots(
    slots: Sequence[SnapshotSlot], points: Mapping[str, OperatingPoint] | None = None
) -> tuple[ExamScore, ...]:
    """Each head's exam score (its highest view probability over the slots, and that view) with its
    operating point's threshold, sensitivity and specificity when ``points`` has it."""
    best: dict[str, tuple[float, str]] = {}
    for slot in slots:
        for score in slot.scores:
            if score.head not in best or score.probability > best[score.head][0]:
                best[score.head] = (score.probability, slot.name)
    out = []
    for head, (score, view) in best.items():
        point = (points or {}).get(head)
        if point is None:
            out.append(ExamScore(head, score, view))
        else:
            out.append(ExamScore(head, score, view, point.threshold, point.sensitivity, point.specificity))
    return tuple(out)


def contribution_rows(
    bundle: Bundle, position: int, head: str, *, top: int = 10, notes: LatentNotes | None = None
) -> tuple[LatentRow, ...]:
    """The ``top`` latents by |contribution| to ``head``'s logit on one view, named, with flags and share."""
    total = float(np.abs(bundle.contributions(position, head)["contribution"].to_numpy()).sum())
    table = contributions_table(bundle, position, head, top=top, notes=notes)
    label = notes.labeller() if notes is not None else (lambda t: f"#{t}")  # without the badge suffix
    return tuple(
        LatentRow(
            latent=int(row.latent),
            label=label(int(row.latent)),
            flags=tuple(evq.flag_text(f) for f in row.flags),
            contribution=float(row.contribution),
            share=float(row.contribution) / total if total > 0 else 0.0,
        )
        for row in table.itertuples()
    )


def build_case(
    bundle: Bundle,
    study: str,
    *,
    options: ViewOptions,
    overlay: str = "none",
    head: str | None = None,
    latent: int | None = None,
    selected: int | None = None,
    probabilities: Mapping[int, Mapping[str, float]] | None = None,
    points: Mapping[str, OperatingPoint] | None = None,
    marks: Sequence[Mark] = (),
    verdicts: Sequence[Mapping[str, object] | object] = (),
    notes: LatentNotes | None = None,
    kinds: tuple[str, ...] | None = None,
    top: int = 10,
    **extra: Any,
) -> SnapshotCase:
    """A study's snapshot inputs: ``overlay`` ("evidence map" of ``head``, "latent" ``latent``, or "none");
    ``probabilities`` per view position and head (calibrated) judged against each head's operating point in
    ``points``, or, when not given, the classifier's own probabilities without operating points; the
    ``marks`` to draw (as given: the caller picks those above the operating point); the contributions of
    ``head`` on view ``selected`` (default the view where ``head`` is highest); each reviewer's verdict;
    ``extra`` goes to SnapshotCase."""
    head = head or bundle.tasks[0]
    if head not in bundle.tasks:
        raise BundleError(f"no head {head!r} in this bundle; its heads are {', '.join(bundle.tasks)}")
    views = hanging_views(bundle, study)
    positions = [v.position for v in views if v.position is not None]
    calibrated = probabilities is not None
    slots = tuple(
        SnapshotSlot(
            name=f"{v.laterality} {v.view}",
            position=v.position,
            scores=() if v.position is None else _slot_scores(bundle, v.position, probabilities, points),
            note="" if v.position is None else _slot_note(bundle, v, head),
        )
        for v in views
    )
    evidence_head = head if overlay == "evidence map" else None
    vmax = evq.evidence_vmax(bundle, positions, head) if evidence_head else None
    if overlay == "latent" and latent is None:
        raise BundleError("a latent overlay needs the latent: pass latent=<id>")
    shown_latent = int(latent) if overlay == "latent" and latent is not None else None
    if overlay == "evidence map":
        overlay_text = f"{head} evidence map"
    elif shown_latent is not None:
        overlay_text = "latent " + (notes.label(shown_latent) if notes is not None else f"#{shown_latent}")
    else:
        overlay_text = "no overlay"
    if selected is None or selected not in positions:
        images = bundle.images.iloc[positions]
        selected = positions[int(np.argmax(images[f"logit_{head}_original"].to_numpy()))]
    selected_name = next(s.name for s in slots if s.position == selected)
    box_kinds = tuple(sorted(set(bundle.boxes[bundle.boxes["position"].isin(positions)]["kind"])))
    if kinds is not None:
        box_kinds = tuple(k for k in box_kinds if k in kinds)
    return SnapshotCase(
        study=study,
        identity=BundleIdentity.from_manifest(bundle.manifest),
        slots=slots,
        overlay=overlay,
        overlay_text=overlay_text,
        options=options,
        latent=shown_latent,
        evidence_head=evidence_head,
        vmax=vmax,
        kinds=kinds,
        box_kinds=box_kinds if options.show_boxes else (),
        marks=tuple(marks),
        calibrated=calibrated,
        exam_scores=exam_from_slots(slots, points if calibrated else None),
        contributions_title=f"Top latents: {head} logit on {selected_name}",
        contributions=contribution_rows(bundle, selected, head, top=top, notes=notes),
        verdicts=tuple(items for items in map(verdict_items, verdicts) if items),
        **extra,
    )


def _slot_note(bundle: Bundle, view: Any, head: str) -> str:
    """The line under a view: where its orientation came from when not its tags ("inferred from the
    image"), then its evidence line."""
    tag = orientation_tag(bundle.orientation_of(view.image_id)) if view.image_id else None
    return " · ".join(part for part in (tag, evq.evidence_line(bundle, view.position, head)) if part)


def _slot_scores(
    bundle: Bundle,
    position: int,
    probabilities: Mapping[int, Mapping[str, float]] | None,
    points: Mapping[str, OperatingPoint] | None,
) -> tuple[ViewScore, ...]:
    if probabilities is None:
        return raw_scores(bundle, position)
    if position not in probabilities:
        raise BundleError(f"no calibrated probabilities were given for view {position}")
    return scores_at(probabilities[position], points)


# --- rendering -------------------------------------------------------------------------------------------------


def snapshot_options(case: SnapshotCase, dpi: int = DEFAULT_DPI) -> ViewOptions:
    """The view options a snapshot renders with: the case's, at the height of a slot on the page, hung."""
    return replace(case.options, max_height=page_layout(case, dpi).image_height, hang=True)


def render_views(
    bundle: Bundle, images: Sequence[MammogramDicom | None], case: SnapshotCase, dpi: int = DEFAULT_DPI
) -> list[RenderedView | None]:
    """The four slots' views (``images`` in hanging order, None where absent) with the case's overlay and
    ground-truth boxes, sized for the page (marks are drawn by the page)."""
    positions = [slot.position for slot in case.slots]
    return render_slot_views(
        bundle,
        positions,
        images,
        snapshot_options(case, dpi),
        case.latent,
        case.kinds,
        case.evidence_head,
        case.vmax,
    )


def render_slot_views(
    bundle: Bundle,
    positions: Sequence[int | None],
    images: Sequence[MammogramDicom | None],
    options: ViewOptions,
    latent: int | None,
    kinds: tuple[str, ...] | None,
    evidence_head: str | None,
    vmax: float | None,
) -> list[RenderedView | None]:
    """``render_case_view`` of each hanging slot (None where the position or the image is missing)."""
    assert len(positions) == len(images) == 4, "four hanging slots"
    return [
        None
        if position is None or image is None
        else render_case_view(
            bundle, position, image, options, latent, kinds, evidence_head=evidence_head, vmax=vmax
        )
        for position, image in zip(positions, images, strict=True)
    ]


def snapshot_png(case: SnapshotCase, views: Sequence[RenderedView | None], dpi: int = DEFAULT_DPI) -> bytes:
    """The snapshot page as PNG bytes (A4 landscape at ``dpi``)."""
    buffer = io.BytesIO()
    compose(case, views, dpi).image.save(buffer, "PNG", dpi=(dpi, dpi), compress_level=3)
    return buffer.getvalue()


def snapshot_pdf(case: SnapshotCase, views: Sequence[RenderedView | None], dpi: int = DEFAULT_DPI) -> bytes:
    """The snapshot page as a one-page PDF (the raster page on A4 landscape, JPEG without chroma
    subsampling so its text stays sharp)."""
    buffer = io.BytesIO()
    compose(case, views, dpi).image.save(
        buffer,
        "PDF",
        resolution=float(dpi),
        quality=92,
        subsampling=0,
        title=f"mammo-sae case snapshot {case.study_short}",
        author="mammo-sae",
        producer=f"mammo-sae {case.version}",
    )
    return buffer.getvalue()
