"""The app's only door into the library: loaders and questions, cached on stamps that change with the data.

Streamlit leaves every argument whose name starts with ``_`` out of a cache key, so no key here starts
with one: a bundle is keyed on its manifest's stamp, a dataset on its tables' stamps, an image on its
file's stamp (``mammo_sae.bundle.stamps``), so a new analysis into the same folder, regenerated phantoms
or a replaced image are seen on the next rerun. Views lay out what these return; they compute nothing.
Every message or untrusted string a view shows as Markdown goes through ``md_text``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from mammo_sae.analysis import charts, paper
from mammo_sae.bundle import Bundle, BundleError, BundleStaleError, browse, cases, queries
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle import label_notes
from mammo_sae.bundle.format import read_manifest
from mammo_sae.bundle.notes import CATEGORIES, NOTES_ENV, LatentNotes
from mammo_sae.bundle.notes import EMPTY_ENTRY as EMPTY_NOTE
from mammo_sae.bundle.overlays import COLOUR_MAPS, image_data_url, patch_crop, zoom_region
from mammo_sae.bundle.roots import BundlePathError, bundle_roots, resolve_bundle_path
from mammo_sae.bundle.stamps import FileStamp, bundle_stamp, dataset_stamp, file_stamp
from mammo_sae.bundle.viewer import (
    RenderedView,
    ViewOptions,
    render_case_view,
    render_live,
    render_view,
    token_rects,
)
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.user_data import user_data_dir
from mammo_sae.data.dicom import MammogramDicom, display_image, read_mammogram
from mammo_sae.data.folder_import import is_imported_root
from mammo_sae.data.frames import transform_from_json
from mammo_sae.data.phantom import is_phantom_dataset
from mammo_sae.data.png import decode_png
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.demo import (
    DEMO_DIR,
    DemoError,
    demo_bundle_dir,
    demo_dataset_ready,
    demo_dataset_root,
    ensure_demo_dataset,
)

__all__ = [
    "CATEGORIES",
    "EMPTY_NOTE",
    "SYNTHETIC_NOTICE",
    "Bundle",
    "BundleError",
    "BundlePathError",
    "BundleStaleError",
    "LatentNotes",
    "MammoSaeError",
    "ViewOptions",
    "md_table",
    "md_text",
]

SYNTHETIC_NOTICE = "**Synthetic phantoms:** generated images with planted lesions, not patient data."
AUTHOR_KEY = "note_author"  # the sidebar's "your name" field, kept in session state
NOTES_FLAG = "--notes"  # streamlit run app/Home.py -- --notes DIR


# --- text ------------------------------------------------------------------------------------------------

_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=")


def md_text(text: object) -> str:
    """``text`` escaped for Streamlit's Markdown (st.error / warning / info / caption / markdown / table,
    headers): shown literally, never as links, images, HTML, colours or maths. Error messages quote
    typed paths and file names, and latent names and notes are user text: all of it goes through here."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text)).replace("\n", " ")


def md_table(values: dict[str, object]) -> pd.Series:
    """``values`` (e.g. DICOM metadata) as a one-column table for ``st.table``, each cell escaped: st.table
    renders Markdown in its cells, and DICOM strings and file names are untrusted."""
    return pd.Series({key: md_text(value) for key, value in values.items()}, name="value", dtype=object)


# --- where things are --------------------------------------------------------------------------------------


def default_data_root() -> str:
    """The dataset root the Dataset page opens first: ``MAMMO_SAE_DATA`` or the README's phantom folder."""
    return os.environ.get("MAMMO_SAE_DATA", "data/phantoms")


def default_bundle_path() -> str:
    """``MAMMO_SAE_BUNDLE`` or the shipped demo bundle."""
    return os.environ.get("MAMMO_SAE_BUNDLE") or str(demo_bundle_dir())


def allowed_bundle_roots() -> tuple[Path, ...]:
    """The folders bundles may be opened from: the repository's weights/, the user cache, every
    MAMMO_SAE_BUNDLE_ROOTS entry and MAMMO_SAE_BUNDLE."""
    return bundle_roots((DEMO_DIR.parent, user_data_dir()))


def notes_location() -> Path:
    """Where latent notes are kept (one folder per bundle identity): ``--notes DIR`` after ``--`` on the
    streamlit command line, else ``MAMMO_SAE_NOTES``, else ``notes/`` in the user cache; never the bundle."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == NOTES_FLAG and i + 1 < len(args):
            return Path(args[i + 1]).expanduser()
        if arg.startswith(NOTES_FLAG + "="):
            return Path(arg.split("=", 1)[1]).expanduser()
    return Path(os.environ.get(NOTES_ENV) or user_data_dir() / "notes").expanduser()


# --- the bundle ---------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Opening the bundle…", max_entries=4)
def _bundle(path: str, stamp: FileStamp) -> Bundle:
    return Bundle.open(path)


def open_bundle(path: str) -> Bundle:
    """The bundle at ``path``, re-opened when its manifest is rewritten; BundlePathError when ``path`` is
    outside the allowed roots, BundleError / BundleStaleError."""
    folder = resolve_bundle_path(path, allowed_bundle_roots())
    return _bundle(str(folder), bundle_stamp(folder))


def _key(bundle: Bundle) -> tuple[str, FileStamp]:
    return str(bundle.path), bundle_stamp(bundle.path)


@st.cache_data(show_spinner=False, max_entries=8)
def _synthetic(path: str, stamp: FileStamp) -> bool:
    return bool(read_manifest(Path(path)).get("synthetic"))


def frame_notice() -> str | None:
    """The notice every page shows when the picked bundle was built on phantoms (None otherwise, or when
    the bundle cannot be read: the page itself then says why)."""
    path = st.session_state.get("bundle_path") or default_bundle_path()
    try:
        folder = resolve_bundle_path(path, allowed_bundle_roots())
        return SYNTHETIC_NOTICE if _synthetic(str(folder), bundle_stamp(folder)) else None
    except (MammoSaeError, OSError, ValueError, KeyError):
        return None


def is_demo(bundle: Bundle) -> bool:
    return bundle.path.resolve() == demo_bundle_dir().resolve()


def bundle_warnings(bundle: Bundle) -> list[str]:
    """The warnings the analysis recorded in the manifest (none when the key is absent)."""
    return [str(w) for w in bundle.manifest.get("warnings") or []]


def require_bundle() -> Bundle:
    """The bundle picked in the sidebar, or a message with the command that builds it (then the page stops)."""
    path = st.session_state.get("bundle_path") or default_bundle_path()
    try:
        return open_bundle(path)
    except BundlePathError as error:
        st.error(md_text(error))
    except BundleStaleError as error:
        st.error(
            "This bundle's inputs changed since it was built, so its numbers may no longer hold. "
            + md_text(error)
        )
    except MammoSaeError as error:
        st.error(md_text(error))
        if Path(path).resolve() == demo_bundle_dir().resolve():
            st.code("python -m mammo_sae.demo --out weights/demo", language="bash")
        else:
            st.code(
                f"python -m mammo_sae.analyze --data ROOT --classifier FILE --sae DIR --out {path}",
                language="bash",
            )
    st.stop()
    raise AssertionError("unreachable")


# --- the bundle's images ----------------------------------------------------------------------------------


class _Generation:
    """The demo phantoms being generated in a background thread of this server, shared by every session:
    a session that reruns (a click) or closes leaves the work going, and the next run shows its progress."""

    def __init__(self, root: Path) -> None:
        self.done, self.total, self.error, self.finished = 0, 0, None, False
        self.thread = threading.Thread(target=self._work, args=(root,), name="demo-phantoms", daemon=True)
        self.thread.start()

    def _advance(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _work(self, root: Path) -> None:
        try:
            ensure_demo_dataset(cache=root.parent, progress=self._advance)
        except Exception as error:  # shown by the session that waits for it
            self.error = error
        finally:
            self.finished = True


_GENERATIONS: dict[str, _Generation] = {}
_GENERATIONS_LOCK = threading.Lock()


def _generation(root: Path) -> _Generation:
    """The running (or finished) generation of ``root``; a new one when none ran or the last one failed."""
    with _GENERATIONS_LOCK:
        job = _GENERATIONS.get(str(root))
        if job is None or (job.finished and job.error is not None):
            job = _GENERATIONS[str(root)] = _Generation(root)
        return job


@st.cache_data(show_spinner=False, max_entries=4)
def _demo_ready(root: str, stamp: tuple[FileStamp, ...], demo_stamp: FileStamp) -> bool:
    return demo_dataset_ready(cache=Path(root).parent)


def demo_data_root() -> Path:
    """The regenerated demo phantoms. When they are not in the cache yet, they are generated now with a
    progress bar (images done / total) that is removed when done; a run that finds them draws nothing."""
    root = demo_dataset_root()
    if _demo_ready(str(root), dataset_stamp(root), file_stamp(DEMO_DIR / "demo.json")):
        return root
    job = _generation(root)
    bar = st.progress(0.0, text="First start: generating the demo's synthetic phantoms…")
    try:
        while not job.finished:
            if job.total:
                text = f"First start: generating the demo's synthetic phantoms, {job.done:,} of {job.total:,} images"
                bar.progress(job.done / job.total, text=text)
            time.sleep(0.25)
    finally:
        bar.empty()
    if job.error is not None:
        if isinstance(job.error, MammoSaeError):
            raise job.error
        raise DemoError(f"the demo phantoms could not be generated: {job.error}") from job.error
    return root


def bundle_data_root(bundle: Bundle) -> Path | None:
    """Where the bundle's images are: the regenerated demo phantoms, or the recorded dataset root."""
    if is_demo(bundle):
        return demo_data_root()
    return bundle.find_data_root()


def require_data_root(bundle: Bundle) -> Path:
    """The bundle's image folder, or a message saying where it was expected (then the page stops)."""
    try:
        root = bundle_data_root(bundle)
    except MammoSaeError as error:
        st.error(md_text(error))
        st.stop()
    if root is None:
        st.warning(
            md_text(f"The images of this bundle are not on this machine: {bundle.missing_dataset_message()}.")
        )
        st.stop()
    return root


# --- datasets and images ------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Indexing the dataset…", max_entries=4)
def _index(root: str, stamp: tuple[FileStamp, ...]) -> VindrIndex:
    return VindrIndex.load(root)


def dataset_index(root: str | Path) -> VindrIndex:
    """The index of a dataset root, rebuilt when its tables change."""
    folder = Path(root).resolve()
    return _index(str(folder), dataset_stamp(folder))


@st.cache_resource(show_spinner=False, max_entries=4)
def _paths(root: str, stamp: tuple[FileStamp, ...]) -> pd.Series:
    return _index(root, stamp).images.set_index("image_id")["path"]


def image_path(root: str | Path, image_id: str) -> str:
    """The file of ``image_id`` in the dataset at ``root``."""
    folder = Path(root).resolve()
    return str(_paths(str(folder), dataset_stamp(folder))[image_id])


@st.cache_data(show_spinner=False, max_entries=8)
def _dataset_summary(root: str, stamp: tuple[FileStamp, ...]) -> dict[str, Any]:
    return _index(root, stamp).summary()


def dataset_summary(root: str | Path) -> dict[str, Any]:
    """The index's JSON summary (cached: it is shown on every rerun of the Dataset page)."""
    folder = Path(root).resolve()
    return _dataset_summary(str(folder), dataset_stamp(folder))


@st.cache_data(show_spinner=False, max_entries=8)
def _dataset_counts(root: str, stamp: tuple[FileStamp, ...]) -> dict[str, int]:
    return browse.dataset_counts(_index(root, stamp))


def dataset_counts(root: str | Path) -> dict[str, int] | None:
    """Images, studies, finding-positive images and missing files of a dataset root (None when ``root``
    is not a folder); DataError when its tables are broken."""
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        return None
    return _dataset_counts(str(folder), dataset_stamp(folder))


def dataset_kind(root: str | Path) -> str:
    if is_imported_root(Path(root)):
        return "an imported DICOM folder (no labels)"
    return "synthetic phantoms" if is_phantom_dataset(root) else "VinDr-Mammo layout"


def browse_splits(root: str | Path) -> list[str]:
    return ["all", *dataset_index(root).splits]


def finding_filters() -> tuple[str, ...]:
    return browse.FINDING_FILTERS


def browse_studies(root: str | Path, split: str, finding: str) -> list[str]:
    return browse.browse_studies(dataset_index(root).images, split, finding)


def dataset_views(root: str | Path, study: str) -> list[browse.DatasetView]:
    return browse.dataset_views(dataset_index(root).images, study)


def view_box_coords(root: str | Path, image_id: str, show: bool) -> tuple[tuple, tuple[str, ...]]:
    """An image's ground-truth boxes as hashable (coords, kinds) for ``rendered_view`` (none unless ``show``)."""
    boxes = dataset_index(root).boxes(image_id)
    if not show:
        boxes = boxes.iloc[:0]
    coords = tuple(tuple(b) for b in boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy().tolist())
    return coords, tuple(boxes["kind"])


@st.cache_resource(show_spinner=False, max_entries=16)
def _mammogram(path: str, stamp: FileStamp) -> MammogramDicom:
    return read_mammogram(path)


def mammogram(path: str | Path) -> MammogramDicom:
    """The DICOM at ``path``, re-read when the file is rewritten."""
    return _mammogram(str(path), file_stamp(path))


def window_choices(image: MammogramDicom) -> list[str]:
    """The window names a view offers: full range, then the file's own presets."""
    return ["full range", *[w.name for w in image.window_presets]]


def metadata_table(image: MammogramDicom) -> pd.Series:
    return md_table(image.metadata.as_dict())


@st.cache_data(show_spinner=False, max_entries=64)
def _rendered_view(
    path: str,
    stamp: FileStamp,
    preset: str | None,
    invert: bool,
    boxes: tuple[tuple[float, float, float, float], ...],
    kinds: tuple[str, ...],
    max_height: int,
) -> np.ndarray:
    options = ViewOptions(preset=preset, invert=invert, max_height=max_height, hang=False)
    coords = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return render_view(_mammogram(path, stamp), "L", options, boxes=coords, box_kinds=list(kinds)).pixels


def rendered_view(
    path: str,
    preset: str | None,
    invert: bool,
    boxes: tuple[tuple[float, float, float, float], ...],
    kinds: tuple[str, ...],
    max_height: int,
) -> np.ndarray:
    """A dataset view ready to show: windowed, optionally inverted, fitted to ``max_height``, boxes drawn
    (re-rendered when the file is rewritten)."""
    return _rendered_view(str(path), file_stamp(path), preset, invert, boxes, kinds, max_height)


# --- cases ----------------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _studies(path: str, stamp: FileStamp) -> pd.DataFrame:
    return cases.study_table(_bundle(path, stamp))


def studies(bundle: Bundle) -> pd.DataFrame:
    """One row per study of the bundle (split, findings, BI-RADS, density)."""
    return _studies(*_key(bundle))


def study_ids(bundle: Bundle) -> list[str]:
    return studies(bundle)["study_id"].tolist()


def filter_studies(bundle: Bundle, **filters: Any) -> list[str]:
    """Study ids matching Case review's filters (``split="any"`` for every split)."""
    if filters.get("split") == "any":
        filters["split"] = None
    return cases.filter_studies(studies(bundle), **filters)["study_id"].tolist()


def hanging_views(bundle: Bundle, study: str) -> list[cases.HangingView]:
    return cases.hanging_views(bundle, study)


def present_views(bundle: Bundle, study: str) -> list[cases.HangingView]:
    """The study's analysed views, in hanging order."""
    return [v for v in cases.hanging_views(bundle, study) if v.position is not None]


def view_name(view: cases.HangingView) -> str:
    return f"{view.laterality} {view.view}"


def view_probabilities(bundle: Bundle, position: int) -> pd.DataFrame:
    return cases.view_probabilities(bundle, position)


def colour_maps() -> list[str]:
    return list(COLOUR_MAPS)


def picked_latent(state: Any, selection: str = "bar") -> int | None:
    """The latent of the bar a click on a contributions chart selected (None when none is)."""
    chosen = (state or {}).get("selection", {}).get(selection) or []
    return int(chosen[0]["latent"]) if chosen and "latent" in chosen[0] else None


def strongest_view(bundle: Bundle, views: list[cases.HangingView], head: str) -> int:
    return queries.strongest_view(bundle, [v.position for v in views if v.position is not None], head)


def contributions(bundle: Bundle, position: int, head: str, top: int = 15) -> pd.DataFrame:
    """A case's largest latent contributions to ``head``, labelled with the latents' names."""
    return queries.contributions_table(bundle, position, head, top=top, notes=latent_notes(bundle))


def contributions_chart(table: pd.DataFrame, head: str, selection: str | None = None) -> alt.Chart:
    """The ranked contribution bars (one builder for Case review and Upload); ``selection`` makes a bar
    clickable."""
    return charts.contributions_chart(table, head, selection=selection)


@st.cache_data(show_spinner=False, max_entries=64)
def _contributions_spec(
    path: str, stamp: FileStamp, position: int, head: str, top: int, notes_dir: str, notes_stamp: FileStamp
) -> tuple[dict[str, Any], float]:
    bundle = _bundle(path, stamp)
    notes = LatentNotes(notes_dir, bundle.d_sae)
    table = queries.contributions_table(bundle, position, head, top=top, notes=notes)
    return charts.contributions_chart(table, head, selection="bar").to_dict(), float(table.attrs["const"])


def contributions_spec(
    bundle: Bundle, position: int, head: str, top: int = 15
) -> tuple[dict[str, Any], float]:
    """The clickable contribution bars of one view and head as a Vega-Lite spec (cached per bundle, view,
    head and notes file; the ``bar`` selection reads back a latent), and the constant they add up with."""
    notes = latent_notes(bundle)
    return _contributions_spec(*_key(bundle), position, head, top, str(notes.folder), file_stamp(notes.path))


# --- evidence ------------------------------------------------------------------------------------------------

EVIDENCE_MISSING = evq.EVIDENCE_MISSING
FLAG_COLOURS = {"off_breast": "#e8590c", "marker": "#9c36b5", "lesion": "#2b8a3e"}


def has_evidence(bundle: Bundle) -> bool:
    return evq.has_evidence(bundle)


def study_head(bundle: Bundle, views: list[cases.HangingView], positive: tuple[str, ...]) -> str:
    """The head a study opens on: the "Positive for" concept, else the most probable head."""
    return evq.study_head(bundle, [v.position for v in views if v.position is not None], positive)


def evidence_vmax(bundle: Bundle, views: list[cases.HangingView], head: str) -> float | None:
    return evq.evidence_vmax(bundle, [v.position for v in views if v.position is not None], head)


def evidence_line(bundle: Bundle, position: int, head: str) -> str | None:
    return evq.evidence_line(bundle, position, head)


def unlabelled_notice(bundle: Bundle, needs: str) -> str | None:
    """Why a part that ``needs`` labels is empty on an unlabelled bundle (None on a labelled one)."""
    return label_notes.unlabelled_notice(bundle, needs)


def mismatch_notice(bundle: Bundle) -> str | None:
    """The notice beside the bundle's probabilities when phantom-trained models score images that are not phantoms."""
    return label_notes.bundle_mismatch_notice(bundle)


def orientation_summary(bundle: Bundle) -> str | None:
    return label_notes.orientation_summary(bundle)


def orientation_tags(bundle: Bundle, views: list[cases.HangingView]) -> dict[str, str]:
    """Per hanging view name, where its laterality and view came from when not both from tags (an imported
    folder): "inferred from the image", or "from the series text"."""
    return label_notes.orientation_tags(bundle, {view_name(v): v.image_id for v in views if v.image_id})


def view_findings(bundle: Bundle, views: list[cases.HangingView]) -> pd.DataFrame:
    return evq.view_findings(bundle, [v.position for v in views if v.position is not None])


def spot_mask(bundle: Bundle, spot: dict[str, Any]) -> np.ndarray:
    """The tokens of a spot (``{"position", "token"}`` or ``{"position", "box"}``)."""
    box = spot.get("box")
    return evq.spot_mask(
        bundle, int(spot["position"]), token=spot.get("token"), box=tuple(box) if box is not None else None
    )


@st.cache_data(show_spinner=False, max_entries=64)
def _fires_here(
    path: str,
    stamp: FileStamp,
    position: int,
    token: int | None,
    box: tuple[float, float, float, float] | None,
    notes_dir: str,
    notes_stamp: FileStamp,
) -> pd.DataFrame:
    bundle = _bundle(path, stamp)
    notes = LatentNotes(notes_dir, bundle.d_sae)
    return evq.fires_here(bundle, position, token=token, box=box, notes=notes)


def fires_here(bundle: Bundle, spot: dict[str, Any]) -> pd.DataFrame:
    """What fires at a spot of a view: latents, names, flags, in-region activation, specificity and
    contribution to each head (cached per bundle, spot and notes file)."""
    notes = latent_notes(bundle)
    box = spot.get("box")
    return _fires_here(
        *_key(bundle),
        int(spot["position"]),
        None if spot.get("token") is None else int(spot["token"]),
        None if box is None else tuple(float(b) for b in box),
        str(notes.folder),
        file_stamp(notes.path),
    )


def flag_columns(bundle: Bundle, *tables: pd.DataFrame) -> dict[str, Any]:
    """``column_config`` that shows a table's ``flags`` lists as coloured badges."""
    options = set(evq.flag_options(bundle))
    for table in tables:
        if "flags" in table:
            options |= {f for flags in table["flags"] for f in flags}
    ordered = sorted(options)
    colours = [FLAG_COLOURS.get(f.split(":", 1)[0], "#868e96") for f in ordered]
    return {
        "flags": st.column_config.MultiselectColumn(
            "flags", options=ordered, color=colours, format_func=evq.flag_text, disabled=True, width="medium",
            help="off-breast: fires mostly outside the breast (padding, borders); marker: mostly on burned-in "
            "markers; <category> lesion: its peaks land in that category's boxes",
        )
    }  # fmt: skip


def fires_columns(bundle: Bundle, table: pd.DataFrame) -> dict[str, Any]:
    """``column_config`` of the what-fires-here table: badges, and its numbers named in words."""
    number = st.column_config.NumberColumn
    return {
        **flag_columns(bundle, table),
        "latent": number("latent", format="%d", width="small"),
        "mean_in": number("mean here", format="%.3f", help="mean activation over the spot's tokens"),
        "max_in": number("max here", format="%.3f"),
        "specificity": number("specificity", format="%.1f",
                              help="mean here over the mean on the rest of the image (∞: silent elsewhere)"),
        **{f"contribution_{t}": number(f"→ {t} logit", format="%+.4f",
                                       help=f"the latent's part of the {t} logit from the spot")
           for t in bundle.tasks},
    }  # fmt: skip


def latent_badges(bundle: Bundle, latent: int) -> str:
    """A latent's flags as Markdown badges (for captions and headers), "" without flags."""
    flags = evq.flag_list(evq.latent_flags(bundle).get(int(latent), ""))
    colour = {"off_breast": "orange", "marker": "violet", "lesion": "green"}
    return " ".join(
        f":{colour.get(f.split(':', 1)[0], 'gray')}-badge[{md_text(evq.flag_text(f))}]" for f in flags
    )


def latent_labeller(bundle: Bundle):
    """``latent -> "#id name [badges]"`` for pickers and lists."""
    return evq.labeller(bundle, latent_notes(bundle))


def suggested_latents(
    bundle: Bundle, position: int, head: str, current: int | None, top: int = 10
) -> list[int]:
    """The latent picker's choices: the current one, the view's top contributors to ``head``, then the
    concept ranking's top class-1 latents (when ``head`` is a concept), each once."""
    chosen = [] if current is None else [int(current)]
    chosen += [int(t) for t in bundle.contributions(position, head)["latent"].head(top)]
    if head in bundle.concepts:
        chosen += [int(t) for t in bundle.top_latents(head, 1, top)]
    return list(dict.fromkeys(chosen))


# --- the shortcut audit --------------------------------------------------------------------------------------


def shortcut_summary(bundle: Bundle) -> pd.DataFrame | None:
    return evq.shortcut_summary(bundle)


def shortcut_table(bundle: Bundle, head: str) -> pd.DataFrame | None:
    return evq.shortcut_table(bundle, head, latent_notes(bundle))


def suppressed_latents(bundle: Bundle) -> list[int]:
    return evq.suppressed_latents(bundle)


def counterfactual_summary(bundle: Bundle) -> pd.DataFrame | None:
    return evq.counterfactual_summary(bundle)


def counterfactual_latents(bundle: Bundle, head: str, top: int = 20) -> pd.DataFrame | None:
    return evq.counterfactual_latents(bundle, head, latent_notes(bundle), top)


def counterfactual_shifts(bundle: Bundle, head: str) -> pd.DataFrame | None:
    return evq.counterfactual_shifts(bundle, head)


def shift_chart(shifts: pd.DataFrame, head: str) -> alt.Chart:
    """Each image's logit shift from adding its marker, by class (one tick per image, the class means ruled)."""
    ticks = (
        alt.Chart(shifts)
        .mark_tick(thickness=2, size=18, opacity=0.6)
        .encode(
            x=alt.X("logit shift:Q", title=f"{head} logit with the marker minus without"),
            y=alt.Y("class:N", title=None, sort=["positive", "negative"]),
            color=alt.Color(
                "analysed with a marker:N",
                scale=alt.Scale(domain=[True, False], range=["#f08c00", "#74c0fc"]),
                legend=alt.Legend(orient="right"),
            ),
            tooltip=["image_id:N", "class:N", "logit shift:Q"],
        )
    )
    means = (
        alt.Chart(shifts)
        .mark_point(shape="diamond", size=120, filled=True, color="white")
        .encode(x="mean(logit shift):Q", y=alt.Y("class:N", sort=["positive", "negative"]))
    )
    return (ticks + means).properties(
        height=140, title=f"Per image: what the marker does to the {head} logit"
    )


SUMMARY_NAMES = {
    "task": "head",
    "auroc": "AUROC as analysed",
    "auroc_suppressed": "AUROC, flagged suppressed",
    "auroc_drop": "drop",
    "n_suppressed": "latents suppressed",
    "suppressed_share": "their share of the logit difference",
}


SUMMARY_COLUMNS = {
    "their share of the logit difference": st.column_config.NumberColumn(format="percent"),
    "AUROC as analysed": st.column_config.NumberColumn(format="%.3f"),
    "AUROC, flagged suppressed": st.column_config.NumberColumn(format="%.3f"),
    "drop": st.column_config.NumberColumn(format="%+.3f"),
}


def carrier_columns(bundle: Bundle, carriers: pd.DataFrame) -> dict[str, Any]:
    """``column_config`` of the marker-shift carriers: badges and the columns named in words."""
    number = st.column_config.NumberColumn
    return {
        **flag_columns(bundle, carriers),
        evq.CARRIER_VALUE: number("logit change", format="%+.4f", help="mean change of its contribution"),
        "activation_change": number(
            "activation change", format="%+.4f", help="mean activation, with - without"
        ),
        "images_more": number("images: fires more", format="%d"),
        "images_less": number("images: fires less", format="%d"),
        "share": number("share of the SAE shift", format="percent"),
    }


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The shortcut summary with its columns named in words (those it has)."""
    return summary[[c for c in SUMMARY_NAMES if c in summary]].rename(columns=SUMMARY_NAMES)


def carriers_chart(carriers: pd.DataFrame, head: str) -> alt.Chart:
    """The latents that carry the marker's shift of ``head``'s logit as signed bars (the contribution chart)."""
    table = carriers.rename(columns={evq.CARRIER_VALUE: "contribution"})
    table["label"] = [
        label + evq.badge_suffix(",".join(flags))
        for label, flags in zip(table["label"], table["flags"], strict=True)
    ]  # plain-text badges on the chart's axis
    return charts.contributions_chart(table, head).properties(
        title=f"Change of each latent's contribution to the {head} logit when the marker is added"
    )


SUPPRESS_KEY = "suppress-flagged"  # session state: the latents the Interventions page suppresses as flagged


# --- latents -------------------------------------------------------------------------------------------------


def latent_notes(bundle: Bundle) -> LatentNotes:
    """The bundle's latent names and notes, kept in the user's data folder under the bundle's identity."""
    return LatentNotes.for_bundle(bundle.manifest, notes_location())


def note_author() -> str:
    """The name typed in the sidebar (may be empty), recorded with every note saved in this session."""
    return str(st.session_state.get(AUTHOR_KEY) or "")


def save_note(notes: LatentNotes, latent: int, *, base: dict[str, Any], **fields: str) -> dict[str, Any]:
    """Save one latent's form over ``base`` (the entry the form started from), signed by this session's author."""
    return notes.save(latent, **fields, base=base, author=note_author())


@st.cache_data(show_spinner=False, max_entries=32)
def _concept_table(
    path: str, stamp: FileStamp, concept: str, cls: int, top: int, notes_dir: str, notes_stamp: FileStamp
) -> pd.DataFrame:
    bundle = _bundle(path, stamp)
    return queries.concept_table(bundle, concept, cls, top=top, notes=LatentNotes(notes_dir, bundle.d_sae))


def concept_table(bundle: Bundle, concept: str, cls: int, top: int = 50) -> pd.DataFrame:
    """The ranked latents of a concept and class (cached per bundle, notes file and choice)."""
    notes = latent_notes(bundle)
    return _concept_table(*_key(bundle), concept, cls, top, str(notes.folder), file_stamp(notes.path))


def ranking_caption(bundle: Bundle, cls: int) -> str:
    return queries.ranking_caption(bundle, cls)


def latent_stats(bundle: Bundle, latent: int) -> dict[str, float]:
    return queries.latent_stats(bundle, latent)


def top_patches(bundle: Bundle, latent: int, n: int = 12) -> pd.DataFrame:
    return queries.top_patches(bundle, latent, n)


@st.cache_data(show_spinner=False, max_entries=256)
def _patch(path: str, stamp: FileStamp, box: tuple[float, float, float, float]) -> np.ndarray:
    return patch_crop(display_image(_mammogram(path, stamp)), box)


def patch_gallery(bundle: Bundle, root: Path, patches: pd.DataFrame) -> list[tuple[np.ndarray | None, str]]:
    """(crop, caption) per top patch, or (None, escaped error) where its image cannot be read; a patch
    that overlaps a ground-truth box says which kind (``top_patches``' ``hits``)."""
    out: list[tuple[np.ndarray | None, str]] = []
    for patch in patches.itertuples():
        hits = list(getattr(patch, "hits", []) or [])
        caption = f"{patch.value:.2f} · {patch.image_id[:8]}" + (
            f" · in a {', '.join(hits)} box" if hits else ""
        )
        try:
            path = image_path(root, patch.image_id)
            box = (patch.orig_x0, patch.orig_y0, patch.orig_x1, patch.orig_y1)
            out.append((_patch(path, file_stamp(path), tuple(map(float, box))), caption))
        except (MammoSaeError, KeyError) as error:
            out.append((None, md_text(error)))
    return out


def open_case(study: str, latent: int) -> None:
    """Set Case review to ``study`` with ``latent``'s map (the page is then switched to by the caller)."""
    st.session_state["study"] = study
    st.session_state["latent"] = int(latent)
    st.session_state["overlay"] = "latent"


def latent_histogram(bundle: Bundle, latent: int) -> pd.DataFrame:
    return queries.latent_histogram(bundle, latent)


def latent_by_label(bundle: Bundle, latent: int) -> pd.DataFrame:
    return queries.latent_by_label_long(bundle, latent)


def latent_effects(bundle: Bundle, latent: int) -> pd.DataFrame:
    return queries.latent_effects(bundle, latent)


def latent_peak(bundle: Bundle, position: int, latent: int) -> tuple[float, float]:
    return queries.latent_peak(bundle, position, latent)


# --- interventions ---------------------------------------------------------------------------------------------


def intervention_ks() -> list[int]:
    return [0, 1, 5, 10, 50, 100, 250, 500, 1000]


def empty_scales() -> pd.DataFrame:
    """The per-latent scale editor's empty table."""
    return pd.DataFrame({"latent": pd.Series([], dtype="int64"), "scale": pd.Series([], dtype="float64")})


def scales_from_editor(table: pd.DataFrame) -> dict[int, float]:
    """The complete rows of the scale editor as {latent: scale}."""
    return {int(r.latent): float(r.scale) for r in table.dropna().itertuples()}


def intervention_scale(bundle: Bundle, **choice: Any) -> np.ndarray:
    return queries.intervention_scale(bundle, **choice)


def changed_latents(scale: np.ndarray) -> int:
    return int((scale != 1).sum())


def case_intervention(bundle: Bundle, position: int, scale: np.ndarray, *, error_term: bool) -> pd.DataFrame:
    return queries.case_intervention(bundle, position, scale, error_term=error_term)


@st.cache_data(show_spinner=False, max_entries=16)
def _split_metrics(path: str, stamp: FileStamp, error_term: bool) -> pd.DataFrame:
    return queries.dataset_metrics(_bundle(path, stamp), None, error_term=error_term)


def split_metrics(bundle: Bundle, scale: np.ndarray, *, error_term: bool) -> pd.DataFrame:
    """The analysed split's AUROC / AUPRC with the intervention, beside the AUROC with the SAE and no
    intervention (that column is cached: it does not change with the controls)."""
    metrics = queries.dataset_metrics(bundle, scale, error_term=error_term)
    base = _split_metrics(*_key(bundle), error_term).set_index("head")
    return metrics.assign(
        **{"AUROC with SAE, no intervention": base.loc[metrics["head"], "auroc"].to_numpy()}
    )


def curve_rows(bundle: Bundle, unit: str, error_term: bool) -> pd.DataFrame:
    return queries.curve_rows(bundle, unit, error_term)


@st.cache_data(show_spinner=False)
def paper_curves() -> pd.DataFrame:
    """The paper's VinDr-Mammo curves (for real-data bundles only)."""
    return paper.paper_curves()


def curves_chart(rows: pd.DataFrame, metric: str, reference: pd.DataFrame | None) -> alt.Chart:
    return charts.curves_chart(rows, metric=metric, reference=reference)


# --- overview and training ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _baseline_table(path: str, stamp: FileStamp) -> pd.DataFrame:
    return queries.baseline_table(_bundle(path, stamp))


def baseline_table(bundle: Bundle) -> pd.DataFrame:
    """AUROC per head with the original features, the SAE reconstruction and reconstruction + error."""
    return _baseline_table(*_key(bundle))


def training_report(bundle: Bundle) -> tuple[list[tuple[str, str, pd.DataFrame]], int]:
    """The training report's panels (title, x, long table) and the number of logged steps; BundleError
    when the SAE kept no log."""
    metrics = queries.training_metrics(bundle)
    return queries.training_panels(metrics), len(metrics)


# --- uploads -------------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the classifier and the SAE…", max_entries=2)
def _live(path: str, stamp: FileStamp):
    from mammo_sae.bundle.live import LiveModels  # torch models: imported when an upload first needs them

    return LiveModels(_bundle(path, stamp))


def live_probabilities(bundle: Bundle, case) -> pd.DataFrame:
    return queries.live_probabilities(case, bundle.tasks)


def live_contributions(bundle: Bundle, case, head: str, top: int = 15) -> pd.DataFrame:
    live = _live(*_key(bundle))
    return queries.live_contributions_table(
        live, case, head, top=top, notes=latent_notes(bundle), flags=evq.latent_flags(bundle)
    )


def render_live_case(case, latent: int | None, colour_map: str) -> np.ndarray:
    """An uploaded case's frame, as the network saw it, with a latent's heatmap (uploads are never cached)."""
    return render_live(case, latent, colour_map=colour_map)


# Topic modules below reach the helpers above through this package (``accessors.<topic>.<function>``); each
# is imported last so that what it needs from here is already defined.
from accessors import (
    marks,  # noqa: F401
    reading,  # noqa: F401
    verdicts,  # noqa: F401
    viewer,  # noqa: F401
)
from accessors import pages  # noqa: E402, F401
from accessors import snapshot  # noqa: E402, F401
