"""The Upload page's study: several files (the four views, or a zip of them) read in memory, placed in
their hanging slots, each view through the bundle's live models, and what the page shows of them. Nothing
of an upload is written to disk: the caches below live in memory, keyed by the files' content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import StopException, add_script_run_ctx, get_script_run_ctx

import accessors
from mammo_sae.bundle import uploaded_study as us
from mammo_sae.bundle.hanging import Overlay, PackedPixels, view_pixels
from mammo_sae.bundle.stamps import FileStamp
from mammo_sae.data.study_upload import SLOTS, UploadedStudy, UploadedView, study_from_uploads

MAX_ROWS = 2048  # rows sent per view, as Case review sends them
#: the viewer's height in px: it sits below the upload and the scores, so "the rest of the viewport" would
#: leave it a strip; the page scrolls to it instead
VIEWER_HEIGHT = 720
FROM_IMAGE = us.FROM_IMAGE


@dataclass(frozen=True)
class Upload:
    """One upload: its study, the live case of each view the models took, what was left out and why, and
    each view's packed pixels for the viewer."""

    study: UploadedStudy
    cases: dict[str, Any]  # slot -> LiveCase
    refused: tuple[
        tuple[str, str], ...
    ]  # (file name, reason): not a usable mammogram, or the models refused it
    pixels: dict[str, PackedPixels]
    key: str  # a short hash of the whole upload (widget keys)

    @property
    def slots(self) -> list[str]:
        """The slots with a case, in hanging order."""
        return [slot for slot in SLOTS if slot in self.cases]

    @property
    def missing(self) -> list[str]:
        return [slot for slot in SLOTS if slot not in self.cases]


@st.cache_resource(show_spinner=False, max_entries=2)
def _warm(bundle_path: str, stamp: FileStamp):
    """The bundle's live models, loaded and run once on a blank frame (the first run of each kernel is slow)."""
    live = accessors._live(bundle_path, stamp)
    us.warm_up(live)
    return live


def prepare(bundle: accessors.Bundle) -> None:
    """Load and warm the models in the background while the reader picks files (the upload then costs the
    views alone); a failure shows when the files arrive."""

    def work() -> None:
        # a failure shows when load() makes the same call; a run that ends while this waits on the page's
        # own load stops it (StopException), which is no failure either
        with contextlib.suppress(accessors.MammoSaeError, OSError, RuntimeError, StopException):
            _warm(*accessors._key(bundle))

    thread = threading.Thread(target=work, name="mammo-sae-warm-up", daemon=True)
    add_script_run_ctx(thread, get_script_run_ctx())
    thread.start()


@st.cache_resource(show_spinner=False, max_entries=4)
def _study(
    names_and_digests: tuple[tuple[str, str], ...], _files: tuple[tuple[str, bytes], ...]
) -> UploadedStudy:
    return study_from_uploads(list(_files))


@st.cache_resource(show_spinner=False, max_entries=32)
def _case(bundle_path: str, stamp: FileStamp, digest: str, _view: UploadedView):
    live = accessors._live(bundle_path, stamp)
    return us.run_uploaded_view(live, _view)


@st.cache_resource(show_spinner=False, max_entries=32)
def _pixels(digest: str, max_rows: int, _view: UploadedView) -> PackedPixels:
    return view_pixels(us.view_image(_view), max_rows)


def load(bundle: accessors.Bundle, files: Sequence[tuple[str, bytes]]) -> Upload:
    """The upload as a study run through the bundle's models (cached per file content); MammoSaeError when
    the files cannot be one study (too many)."""
    named = tuple((str(name), hashlib.sha256(data).hexdigest()) for name, data in files)
    study = _study(named, tuple((str(name), bytes(data)) for name, data in files))
    live = _warm(*accessors._key(bundle))
    cases, failed = us.run_study(live, study, lambda view: _case(*accessors._key(bundle), view.digest, view))
    pixels = {slot: _pixels(study.views[slot].digest, MAX_ROWS, study.views[slot]) for slot in cases}
    key = hashlib.sha256(repr(named).encode()).hexdigest()[:12]
    return Upload(study, cases, (*study.refused, *failed), pixels, key)


def overlay(kind: str, head: str, latent: int | None, colour_map: str) -> Overlay:
    if kind == "latent" and latent is not None:
        return Overlay("latent", latent=int(latent), colour_map=colour_map)
    if kind == "evidence":
        return Overlay("evidence", head=head)
    return Overlay()


def spec(bundle: accessors.Bundle, upload: Upload, chosen: Overlay, selected: int) -> dict[str, Any]:
    """The hanging viewer's spec of the upload (see ``uploaded_study.uploaded_spec``)."""
    return us.uploaded_spec(
        bundle, upload.study, upload.cases, upload.pixels, overlay=chosen, selected=selected
    )


def viewer(bundle: accessors.Bundle, upload: Upload, chosen: Overlay, selected: int, key: str) -> dict | None:
    """The same hanging viewer as Case review, on the upload; returns its last event."""
    pixels = [upload.pixels[s].data if s in upload.pixels else None for s in SLOTS]
    return accessors.viewer.hanging_viewer(
        spec(bundle, upload, chosen, selected), pixels, key=key, height=VIEWER_HEIGHT
    )


def probabilities(bundle: accessors.Bundle, upload: Upload) -> pd.DataFrame:
    """Per view, breast and exam: each head's probability (original features, and with the SAE)."""
    return us.view_probabilities(bundle, upload.cases)


def mismatch_notice(bundle: accessors.Bundle, upload: Upload) -> str | None:
    """The notice beside the probabilities when phantom-trained models score an upload that is not a phantom."""
    return us.mismatch_notice(bundle.models_synthetic, us.study_is_phantom(upload.study))


def provenance(upload: Upload) -> pd.DataFrame:
    """Per slot: the file shown there (or "missing") and where its laterality and view came from."""
    rows = []
    for slot in SLOTS:
        view = upload.study.views.get(slot)
        if view is None or slot not in upload.cases:
            rows.append({"view": slot, "file": "missing", "orientation": ""})
        else:
            rows.append({"view": slot, "file": view.name, "orientation": us.orientation_words(view)})
    return pd.DataFrame(rows)


def fires_here(bundle: accessors.Bundle, upload: Upload, slot: str, token: int) -> pd.DataFrame:
    """The latents active at a clicked token, labelled, with their share of each head's logit there."""
    table = us.fires_at(bundle, upload.cases[slot], token)
    label = accessors.latent_labeller(bundle)
    table.insert(1, "label", [label(int(t)) for t in table["latent"]])
    return table


def contributions(
    bundle: accessors.Bundle, upload: Upload, slot: str, head: str, top: int = 15
) -> pd.DataFrame:
    return accessors.live_contributions(bundle, upload.cases[slot], head, top=top)


def intervention(bundle: accessors.Bundle, upload: Upload, concept: str, k: int, mode: str) -> pd.DataFrame:
    """Per view and head: the probability with the SAE, then with ``concept``'s top-k latents kept or suppressed."""
    scale = accessors.intervention_scale(bundle, concept=concept, k=int(k), mode=mode)
    return us.intervened_probabilities(bundle, upload.cases, np.asarray(scale))


def frame(upload: Upload, slot: str, latent: int | None, colour_map: str) -> np.ndarray:
    """A view's model frame as the network saw it, with a latent's map."""
    return accessors.render_live_case(upload.cases[slot], latent, colour_map)


def metadata(upload: Upload) -> dict[str, dict[str, object]]:
    """Per DICOM view: its allow-listed metadata (a PNG has none)."""
    return {
        slot: upload.study.views[slot].dicom.metadata.as_dict()  # type: ignore[union-attr]
        for slot in upload.slots
        if upload.study.views[slot].dicom is not None
    }
