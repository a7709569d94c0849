"""The hanging viewer component (``app/components/hanging_viewer``, plain JavaScript, no build step) and
the cached spec and pixels it shows for a bundle's study. Zoom, pan, window/level, invert and overlay
visibility live in the browser; the page hears back only next / prev / select / point events."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

import accessors
from mammo_sae.bundle.hanging import NO_OVERLAY, Overlay, PackedPixels, hanging_spec, view_pixels
from mammo_sae.bundle.marks import Mark
from mammo_sae.bundle.stamps import FileStamp, file_stamp

COMPONENT_DIR = Path(__file__).resolve().parents[1] / "components" / "hanging_viewer"
#: rows sent per view: the full resolution of the demo's phantoms; a real 3000-row mammogram is sent at
#: 2048 rows (about 2 x a 1000-px-high screen's slot at device pixel ratio 2)
DEFAULT_MAX_ROWS = 2048
EVENTS = ("next", "prev", "select", "point")

_component = components.declare_component("hanging_viewer", path=str(COMPONENT_DIR))


def hanging_viewer(
    spec: dict[str, Any], pixels: Sequence[bytes | None], key: str, height: int | None = None
) -> dict[str, Any] | None:
    """Draw the viewer; returns its last event ``{"event", "slot", "token", "x", "y", "nonce"}`` (act on
    each nonce once) or None. ``pixels[i]`` are slot i's zlib uint16 samples (None where absent);
    ``height`` fixes the frame's height in px (default: the rest of the viewport)."""
    assert len(pixels) == 4, "one pixel buffer per hanging slot"
    arrays = {f"px{i}": (bytes(p) if p is not None else None) for i, p in enumerate(pixels)}
    return _component(spec=spec, height=height, key=key, default=None, **arrays)


def overlay(
    kind: str = "none",
    *,
    head: str | None = None,
    latent: int | None = None,
    colour_map: str = "inferno",
    opacity: float = 0.45,
    threshold: float = 0.3,
    vmax: float | None = None,
) -> Overlay:
    """What the views' heatmap shows: ``"evidence"`` (``head``'s signed evidence), ``"latent"`` or ``"none"``."""
    return Overlay(kind, head, latent, colour_map, opacity, threshold, vmax)


@st.cache_resource(show_spinner=False, max_entries=32)
def _view_pixels(path: str, stamp: FileStamp, max_rows: int) -> PackedPixels:
    return view_pixels(accessors.mammogram(path), max_rows)


def _paths(bundle: accessors.Bundle, root: str | Path, study: str) -> list[str | None]:
    views = accessors.hanging_views(bundle, study)
    return [accessors.image_path(root, v.image_id) if v.position is not None else None for v in views]


def study_pixels(
    bundle: accessors.Bundle, root: str | Path, study: str, max_rows: int = DEFAULT_MAX_ROWS
) -> list[PackedPixels | None]:
    """The study's four views packed for the viewer (cached per image file), None where a view is absent."""
    return [
        _view_pixels(path, file_stamp(path), max_rows) if path is not None else None
        for path in _paths(bundle, root, study)
    ]


_PREFETCHING = threading.Lock()  # one prefetch at a time per server, however many readers step


def prefetch(
    bundle: accessors.Bundle, root: str | Path, study: str, max_rows: int = DEFAULT_MAX_ROWS
) -> None:
    """Decode and pack ``study``'s views in the background (the study the reader opens next, as a PACS
    prefetches), so that stepping to it costs the page alone; skipped while another prefetch runs."""
    paths = [p for p in _paths(bundle, root, study) if p is not None]

    def work() -> None:
        if not _PREFETCHING.acquire(blocking=False):
            return
        try:
            for path in paths:
                _view_pixels(path, file_stamp(path), max_rows)
        except (OSError, accessors.MammoSaeError):
            pass  # a missing or damaged file says so when its study is opened
        finally:
            _PREFETCHING.release()

    thread = threading.Thread(target=work, name="mammo-sae-prefetch", daemon=True)
    add_script_run_ctx(thread, get_script_run_ctx())  # the caches' own context, no warning per call
    thread.start()


@st.cache_data(show_spinner=False, max_entries=32)
def _study_spec(
    bundle_path: str,
    bundle_stamp: FileStamp,
    study: str,
    paths: tuple[str | None, ...],
    stamps: tuple[FileStamp | None, ...],
    max_rows: int,
    overlay_: Overlay,
    kinds: tuple[str, ...] | None,
    marks: tuple[Mark, ...],
    nonce: int,
    selected: int,
    captions: tuple[tuple[int, str], ...],
    notes: tuple[tuple[int, tuple[str, ...]], ...],
) -> dict[str, Any]:
    bundle = accessors._bundle(bundle_path, bundle_stamp)
    views = accessors.hanging_views(bundle, study)
    images = [accessors.mammogram(p) if p is not None else None for p in paths]
    pixels = [
        _view_pixels(p, s, max_rows) if p is not None else None for p, s in zip(paths, stamps, strict=True)
    ]
    return hanging_spec(
        bundle, study, views, images, pixels, overlay=overlay_, kinds=kinds, marks=marks, nonce=nonce,
        selected=selected, captions=dict(captions), notes={k: list(v) for k, v in notes},
    )  # fmt: skip


def study_spec(
    bundle: accessors.Bundle,
    root: str | Path,
    study: str,
    *,
    overlay: Overlay = NO_OVERLAY,
    kinds: tuple[str, ...] | None = None,
    marks: Sequence[Mark] = (),
    nonce: int = 0,
    selected: int = 0,
    captions: dict[int, str] | None = None,
    notes: dict[int, list[str]] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, Any]:
    """The viewer's spec for a study (cached per bundle, image files and choices): ``captions`` / ``notes``
    per image position (default caption: each head's probability); the ``marks`` on its views."""
    paths = tuple(_paths(bundle, root, study))
    stamps = tuple(file_stamp(p) if p is not None else None for p in paths)
    return _study_spec(
        *accessors._key(bundle), study, paths, stamps, max_rows, overlay, kinds, tuple(marks), int(nonce),
        int(selected), tuple(sorted((captions or {}).items())),
        tuple(sorted((k, tuple(v)) for k, v in (notes or {}).items())),
    )  # fmt: skip


def study_viewer(
    bundle: accessors.Bundle,
    root: str | Path,
    study: str,
    key: str,
    *,
    height: int | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    **choices: Any,
) -> dict[str, Any] | None:
    """``hanging_viewer`` of a bundle's study in one call (``choices``: those of ``study_spec``)."""
    spec = study_spec(bundle, root, study, max_rows=max_rows, **choices)
    pixels = [p.data if p is not None else None for p in study_pixels(bundle, root, study, max_rows)]
    return hanging_viewer(spec, pixels, key, height)


def new_event(value: dict[str, Any] | None, seen_key: str) -> dict[str, Any] | None:
    """The viewer's event if its nonce is new this session (remembered in session state under
    ``seen_key``), else None: each next / prev / select / point acts once."""
    if not value or value.get("event") not in EVENTS:
        return None
    nonce = value.get("nonce")
    if nonce is None or st.session_state.get(seen_key) == nonce:
        return None
    st.session_state[seen_key] = nonce
    return value
