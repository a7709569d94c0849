"""An uploaded study (``data.study_upload``) through the bundle's live models, and answered as a bundle's
study is: the hanging viewer's spec of its four views with each view's probabilities and where its
orientation came from, the evidence or a latent's map from the live codes, the latents that drive each
head, what fires at a clicked token, an intervention's effect, and the notice beside the probabilities
when phantom-trained models score an image that is not a phantom.

    study = study_from_uploads(files)
    cases = run_study(LiveModels(bundle), study)        # slot -> LiveCase (the refused views named apart)
    spec = uploaded_spec(bundle, study, cases, pixels, overlay=Overlay("evidence", head="mass"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import shortcut_logits
from mammo_sae.bundle.cases import HANGING_ORDER, sigmoid
from mammo_sae.bundle.hanging import (
    NO_OVERLAY,
    Overlay,
    PackedPixels,
    assemble_spec,
    empty_slot,
    slot_spec,
    view_pixels,
)
from mammo_sae.bundle.label_notes import FROM_IMAGE, FROM_TEXT, MISMATCH_NOTICE, mismatch_notice
from mammo_sae.bundle.reader import Bundle
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.conditioning import ROBUST
from mammo_sae.data.dicom import MammogramDicom
from mammo_sae.data.dicom.metadata import SafeMetadata
from mammo_sae.data.frame_policy import png_transform
from mammo_sae.data.study_upload import SLOTS, UploadedStudy, UploadedView

if TYPE_CHECKING:
    from mammo_sae.bundle.live import LiveCase, LiveModels

__all__ = [
    "FROM_IMAGE",
    "FROM_TAGS",
    "FROM_TEXT",
    "MISMATCH_NOTICE",
    "UPLOAD_STUDY",
    "fires_at",
    "intervened_probabilities",
    "is_phantom_image",
    "live_evidence",
    "mismatch_notice",
    "orientation_words",
    "run_study",
    "run_uploaded_view",
    "study_is_phantom",
    "study_pixels",
    "uploaded_spec",
    "view_image",
    "view_probabilities",
    "warm_up",
]

FROM_TAGS = (
    "from the tags"  # beside a view whose laterality and view are its tags' own (label_notes: the others)
)
UPLOAD_STUDY = "upload"  # the study name the viewer's spec carries
_TAG_SOURCES = ("ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence")


# --- what the page says beside the probabilities and the views -----------------------------------------------


def is_phantom_image(view: UploadedView) -> bool:
    """Whether an uploaded view is a mammo-sae phantom: a DICOM whose Manufacturer is the generator's. A PNG
    carries no such record, so it is never taken for one (its pixels prove nothing)."""
    return view.dicom is not None and view.phantom


def study_is_phantom(study: UploadedStudy) -> bool:
    """Whether every view of the upload is a phantom (an empty upload is not)."""
    return bool(study.views) and all(is_phantom_image(v) for v in study.views.values())


def orientation_words(view: UploadedView) -> str:
    """Where a view's laterality and view came from: "inferred from the image" when either was read from the
    pixels, else "from the series text" when either came from a description, else "from the tags"."""
    sources = (view.orientation.laterality.source, view.orientation.view.source)
    if view.inferred_from_image:
        return FROM_IMAGE
    return FROM_TAGS if all(s in _TAG_SOURCES for s in sources) else FROM_TEXT


# --- the models on the views -----------------------------------------------------------------------------------


def view_image(view: UploadedView) -> MammogramDicom:
    """The view as the viewer shows it: its DICOM, or a PNG wrapped as a MONOCHROME2 image of its own grey
    levels (no presets but the full range, no metadata)."""
    if view.dicom is not None:
        return view.dicom
    assert view.png is not None, "an uploaded view is a DICOM or a PNG"
    rows, cols = view.png.shape
    bits = 8 * view.png.dtype.itemsize
    metadata = SafeMetadata(
        key=None, modality=None, laterality=view.orientation.laterality.value, view=view.orientation.view.value,
        rows=rows, columns=cols, number_of_frames=1, samples_per_pixel=1, bits_allocated=bits,
        bits_stored=bits, photometric="MONOCHROME2", transfer_syntax="PNG", presentation_intent=None,
        window_presets=(), pixel_spacing_mm=None, manufacturer_model_name=None,
    )  # fmt: skip
    return MammogramDicom(view.png, "MONOCHROME2", metadata, [], bits)


def run_uploaded_view(live: LiveModels, view: UploadedView) -> LiveCase:
    """One uploaded view through the live models: a DICOM with the robust conditioning (a file of any
    origin: padding, FOR PROCESSING, labels, borders and tape left out; ``data.conditioning``), a PNG taken
    as a Mammo-CLIP frame."""
    return live.run_dicom(view.dicom, ROBUST) if view.dicom is not None else live.run_png(view.png)


def run_study(
    live: LiveModels,
    study: UploadedStudy,
    run_view: Callable[[UploadedView], LiveCase] | None = None,
) -> tuple[dict[str, LiveCase], tuple[tuple[str, str], ...]]:
    """Each view through the live models: (slot -> case, the views the models could not take, as (name,
    reason)). ``run_view`` replaces the plain run of one view (the app passes a cached one)."""
    run = run_view or (lambda v: run_uploaded_view(live, v))
    cases: dict[str, LiveCase] = {}
    failed: list[tuple[str, str]] = []
    for slot, view in study.views.items():
        try:
            cases[slot] = run(view)
        except MammoSaeError as error:  # e.g. no breast for the recipe's extraction to keep
            failed.append((view.name, str(error)))
    return cases, tuple(failed)


def warm_up(live: LiveModels) -> None:
    """One blank frame through the models, so that the first upload does not pay for the kernels' first
    run (about a second per view on this CPU): call it once when the models are loaded."""
    size = live.bundle.frame_size
    live.run_frame(np.zeros(size, np.uint8), png_transform(size, size))


def study_pixels(study: UploadedStudy, max_rows: int) -> dict[str, PackedPixels]:
    """Slot -> the view's packed pixels for the viewer (``hanging.view_pixels``)."""
    return {slot: view_pixels(view_image(view), max_rows) for slot, view in study.views.items()}


# --- maps ------------------------------------------------------------------------------------------------------


def live_evidence(bundle: Bundle, case: LiveCase, head: str) -> np.ndarray:
    """[gh, gw] float64: each token's share of ``head``'s logit with the SAE in place, ``z_t . effect / N``
    (the constant, the same at every token, left out): warm raises the logit, cool lowers it."""
    heads = bundle.heads
    effect_l = np.asarray(heads.effect_lh[:, heads.index(head)], dtype=np.float64)
    codes = case.codes
    share_t = np.zeros(codes.tokens_per_image)
    np.add.at(
        share_t, codes.entry_rows(), codes.value.astype(np.float64) * effect_l[codes.latent.astype(np.int64)]
    )
    return (share_t / codes.tokens_per_image).reshape(codes.grid)


def _token_map(bundle: Bundle, case: LiveCase, overlay: Overlay) -> np.ndarray | None:
    if overlay.kind == "evidence":
        return live_evidence(bundle, case, str(overlay.head))
    if overlay.kind == "latent":
        return case.codes.latent_map(0, int(overlay.latent))  # type: ignore[arg-type]
    return None


# --- tables ----------------------------------------------------------------------------------------------------


def view_probabilities(bundle: Bundle, cases: Mapping[str, LiveCase]) -> pd.DataFrame:
    """One row per present view, in hanging order, then one per breast (its views' highest) and the exam
    (the highest view): columns ``where`` and, per head, ``<head>`` (original features) and
    ``<head> (SAE)`` (the SAE reconstruction in their place)."""
    rows = []
    for slot in SLOTS:
        if slot in cases:
            case = cases[slot]
            row: dict[str, Any] = {"where": slot}
            for head in bundle.tasks:
                row[head] = float(sigmoid(case.logits_original[head]))
                row[f"{head} (SAE)"] = float(sigmoid(case.logits_sae[head]))
            rows.append(row)
    table = pd.DataFrame(rows, columns=["where", *[c for h in bundle.tasks for c in (h, f"{h} (SAE)")]])
    summaries = []
    for side, words in (("R", "right breast"), ("L", "left breast")):
        part = table[table["where"].str.startswith(f"{side} ")]
        if len(part):
            summaries.append({"where": words, **part.drop(columns="where").max().to_dict()})
    if len(table):
        summaries.append({"where": "exam", **table.drop(columns="where").max().to_dict()})
    return pd.concat([table, pd.DataFrame(summaries)], ignore_index=True) if summaries else table


def fires_at(bundle: Bundle, case: LiveCase, token: int, top: int = 10) -> pd.DataFrame:
    """The latents active at one token of a view, by activation: columns latent, activation and, per head,
    ``<head>`` = the latent's share of that head's logit from this token (``z . effect / N``)."""
    codes = case.codes
    if not 0 <= int(token) < codes.tokens_per_image:
        raise MammoSaeError(f"token {token} lies outside the {codes.grid[0]} x {codes.grid[1]} model grid")
    start, stop = int(codes.indptr[token]), int(codes.indptr[token + 1])
    latent_k = codes.latent[start:stop].astype(np.int64)
    value_k = codes.value[start:stop].astype(np.float64)
    order = np.lexsort((latent_k, -value_k))[:top]
    heads = bundle.heads
    table = pd.DataFrame({"latent": latent_k[order], "activation": value_k[order]})
    for head in bundle.tasks:
        effect_l = heads.effect_lh[:, heads.index(head)]
        table[head] = value_k[order] * effect_l[latent_k[order]] / codes.tokens_per_image
    return table


def intervened_probabilities(
    bundle: Bundle, cases: Mapping[str, LiveCase], scale_l: np.ndarray
) -> pd.DataFrame:
    """Per present view and head: the probability with the SAE in place, then with the latents scaled by
    ``scale_l`` (``queries.intervention_scale``), and the change."""
    rows = []
    for slot in SLOTS:
        if slot not in cases:
            continue
        zbar_1l = cases[slot].zbar[None].astype(np.float64)
        before = shortcut_logits(zbar_1l, bundle.heads)[0]
        after = shortcut_logits(zbar_1l, bundle.heads, scale_l)[0]
        for h, head in enumerate(bundle.heads.tasks):
            p0, p1 = float(sigmoid(before[h])), float(sigmoid(after[h]))
            rows.append({"view": slot, "head": head, "before": p0, "after": p1, "change": p1 - p0})
    return pd.DataFrame(rows, columns=["view", "head", "before", "after", "change"])


# --- the spec --------------------------------------------------------------------------------------------------


def _caption(bundle: Bundle, case: LiveCase) -> str:
    return " · ".join(f"{head} {float(sigmoid(case.logits_original[head])):.2f}" for head in bundle.tasks)


def uploaded_spec(
    bundle: Bundle,
    study: UploadedStudy,
    cases: Mapping[str, LiveCase],
    pixels: Mapping[str, PackedPixels],
    *,
    overlay: Overlay = NO_OVERLAY,
    selected: int = 0,
    nonce: int = 0,
    notes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The hanging viewer's spec (``hanging.assemble_spec``) of an uploaded study: each view with a case
    hangs captioned with where its orientation came from, then its probabilities (the words first: a narrow
    slot cuts the caption's end), with ``notes[slot]``, and the ``overlay`` (one colour scale for the study)
    on the model grid; a slot without a view, or whose view the models could not take, is drawn empty."""
    maps = {slot: _token_map(bundle, case, overlay) for slot, case in cases.items()}
    vmax = overlay.vmax
    if overlay.kind != "none" and vmax is None:
        vmax = max((float(np.abs(m).max()) for m in maps.values() if m is not None), default=0.0)
    slots = []
    for laterality, view_name in HANGING_ORDER:
        slot = f"{laterality} {view_name}"
        view, case = study.views.get(slot), cases.get(slot)
        if view is None or case is None or slot not in pixels:
            slots.append(empty_slot(laterality, view_name))
            continue
        slots.append(
            slot_spec(
                laterality, view_name, view_image(view), pixels[slot], transform=case.transform,
                grid=case.codes.grid, token_map=maps[slot], overlay=overlay, vmax=vmax,
                caption=f"{orientation_words(view)} · {_caption(bundle, case)}",
                notes=list((notes or {}).get(slot, ())),
            )
        )  # fmt: skip
    return assemble_spec(UPLOAD_STUDY, slots, overlay=overlay, vmax=vmax, nonce=nonce, selected=selected)
