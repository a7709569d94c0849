"""The app's only door into the library: cached loaders keyed by path and modification time.

Views call these and show `MammoSaeError` messages as they are; they never compute numerics themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mammo_sae.analysis.frames import transform_from_json
from mammo_sae.bundle import Bundle, BundleError, BundleStaleError
from mammo_sae.bundle.cases import filter_studies, hanging_views, study_table, view_boxes, view_probabilities
from mammo_sae.bundle.live import LiveModels, decode_png
from mammo_sae.bundle.notes import CATEGORIES, LatentNotes
from mammo_sae.bundle.notes import EMPTY_ENTRY as EMPTY_NOTE
from mammo_sae.bundle.roots import BundlePathError, bundle_roots, resolve_bundle_path
from mammo_sae.bundle.viewer import ViewOptions, render_live, render_view
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.dicom import MammogramDicom, display_image, read_mammogram
from mammo_sae.data.phantom import is_phantom_dataset
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.demo import DEMO_DIR, cache_dir, demo_bundle_dir, ensure_demo_dataset
from mammo_sae.render import DEFAULT_COLOUR, FINDING_COLOURS, draw_boxes, fit_height

__all__ = [
    "CATEGORIES",
    "EMPTY_NOTE",
    "Bundle",
    "BundleError",
    "BundlePathError",
    "BundleStaleError",
    "LatentNotes",
    "MammoSaeError",
    "ViewOptions",
    "allowed_bundle_roots",
    "bundle_data_root",
    "case_view",
    "dataset_index",
    "decode_png",
    "default_bundle_path",
    "default_data_root",
    "display_image",
    "filter_studies",
    "hanging_views",
    "is_phantom_dataset",
    "live_models",
    "mammogram",
    "md_table",
    "md_text",
    "open_bundle",
    "read_mammogram",
    "render_live_case",
    "rendered_view",
    "studies",
    "view_boxes",
    "view_probabilities",
]


_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=")


def md_text(text: object) -> str:
    """``text`` escaped for Streamlit's markdown (headers, captions, markdown): shown literally, never as
    links, images, HTML, colours or maths. Latent names and notes are untrusted user text."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text)).replace("\n", " ")


def md_table(values: dict[str, object]) -> pd.Series:
    """``values`` (e.g. DICOM metadata) as a one-column table for ``st.table``, each cell escaped: st.table
    renders Markdown in its cells, and DICOM strings and file names are untrusted."""
    return pd.Series({key: md_text(value) for key, value in values.items()}, name="value", dtype=object)


def default_data_root() -> str:
    """The dataset root the Dataset page opens first: ``MAMMO_SAE_DATA`` or the README's phantom folder."""
    return os.environ.get("MAMMO_SAE_DATA", "data/phantoms")


def default_bundle_path() -> str:
    """``MAMMO_SAE_BUNDLE`` or the shipped demo bundle."""
    return os.environ.get("MAMMO_SAE_BUNDLE") or str(demo_bundle_dir())


def allowed_bundle_roots() -> tuple[Path, ...]:
    """The folders bundles may be opened from: the repository's weights/, the user cache, every
    MAMMO_SAE_BUNDLE_ROOTS entry and MAMMO_SAE_BUNDLE."""
    return bundle_roots((DEMO_DIR.parent, cache_dir()))


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_resource(show_spinner="Opening the bundle…", max_entries=4)
def _bundle(path: str, _stamp: float) -> Bundle:
    return Bundle.open(path)


def open_bundle(path: str) -> Bundle:
    """The bundle at ``path`` (re-opened when its manifest changes); BundlePathError when ``path`` is
    outside the allowed roots, BundleError / BundleStaleError."""
    folder = resolve_bundle_path(path, allowed_bundle_roots())
    return _bundle(str(folder), _mtime(folder / "manifest.json"))


def is_demo(bundle: Bundle) -> bool:
    return bundle.path.resolve() == demo_bundle_dir().resolve()


@st.cache_resource(show_spinner=False, max_entries=2)
def _demo_root(_stamp: float) -> Path:
    with st.status(
        "First start: generating the demo's synthetic phantoms (about 20 s)…", expanded=True
    ) as status:
        root = ensure_demo_dataset(progress=status.write)
        status.update(label="Demo phantoms ready", state="complete", expanded=False)
    return root


def bundle_data_root(bundle: Bundle) -> Path | None:
    """Where the bundle's images are: the regenerated demo phantoms, or the recorded dataset root."""
    if is_demo(bundle):
        return _demo_root(_mtime(DEMO_DIR / "demo.json"))
    root = bundle.data_root
    return root if root.is_dir() else None


@st.cache_resource(show_spinner="Indexing the dataset…", max_entries=4)
def _index(root: str, _stamp: tuple[float, float]) -> VindrIndex:
    return VindrIndex.load(root)


def dataset_index(root: str | Path) -> VindrIndex:
    """The index of a dataset root, rebuilt when its CSVs change."""
    folder = Path(root)
    stamp = (_mtime(folder / "breast-level_annotations.csv"), _mtime(folder / "finding_annotations.csv"))
    return _index(str(folder.resolve()), stamp)


@st.cache_resource(show_spinner=False, max_entries=16)
def _mammogram(path: str, _mtime: float) -> MammogramDicom:
    return read_mammogram(path)


def mammogram(path: str | Path) -> MammogramDicom:
    return _mammogram(str(path), _mtime(Path(path)))


@st.cache_data(show_spinner=False, max_entries=8)
def _studies(path: str, _stamp: float) -> pd.DataFrame:
    return study_table(open_bundle(path))


def studies(bundle: Bundle) -> pd.DataFrame:
    return _studies(str(bundle.path), _mtime(bundle.path / "manifest.json"))


@st.cache_data(show_spinner=False, max_entries=96)
def case_view(
    bundle_path: str,
    data_root: str,
    position: int,
    options: ViewOptions,
    latent: int | None,
    box_kinds: tuple[str, ...],
) -> np.ndarray:
    """One hanging view of a bundle case, rendered (cached per view, options and latent)."""
    bundle = open_bundle(bundle_path)
    row = bundle.images.iloc[position]
    path = dataset_index(data_root).images.set_index("image_id").loc[row["image_id"], "path"]
    boxes = view_boxes(bundle, position, box_kinds)
    token_map = bundle.latent_map(position, latent) if latent is not None else None
    rendered = render_view(
        mammogram(path),
        row["laterality"],
        options,
        boxes=boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy(),
        box_kinds=boxes["kind"].tolist(),
        token_map=token_map,
        transform=transform_from_json(row["transform"]),
    )
    return rendered.pixels


@st.cache_resource(show_spinner="Loading the classifier and the SAE…", max_entries=2)
def _live(path: str, _stamp: float) -> LiveModels:
    return LiveModels(open_bundle(path))


def live_models(bundle: Bundle) -> LiveModels:
    return _live(str(bundle.path), _mtime(bundle.path / "manifest.json"))


@st.cache_data(show_spinner=False, max_entries=64)
def rendered_view(
    path: str,
    preset: str | None,
    invert: bool,
    boxes: tuple[tuple[float, float, float, float], ...],
    categories: tuple[str, ...],
    max_height: int,
) -> np.ndarray:
    """A dataset view ready to show: windowed, optionally inverted, fitted to ``max_height``, boxes drawn."""
    image = mammogram(path)
    pixels = display_image(image, preset)
    if invert:
        pixels = 255 - pixels
    small, scale = fit_height(pixels, max_height)
    colours = [FINDING_COLOURS.get(c, DEFAULT_COLOUR) for c in categories]
    return draw_boxes(small, np.array(boxes).reshape(-1, 4), scale=scale, colours=colours)


def require_bundle() -> Bundle:
    """The bundle picked in the sidebar, or a message with the command that builds it (then the page stops)."""
    path = st.session_state.get("bundle_path") or default_bundle_path()
    try:
        return open_bundle(path)
    except BundlePathError as error:
        st.error(md_text(error))
    except BundleStaleError as error:
        st.error(
            f"This bundle's inputs changed since it was built, so its numbers may no longer hold.\n\n{error}"
        )
    except MammoSaeError as error:
        st.error(str(error))
        if Path(path).resolve() == demo_bundle_dir().resolve():
            st.code("python -m mammo_sae.demo --out weights/demo", language="bash")
        else:
            st.code(
                f"python -m mammo_sae.analyze --data ROOT --classifier FILE --sae DIR --out {path}",
                language="bash",
            )
    st.stop()
    raise AssertionError("unreachable")


def require_data_root(bundle: Bundle) -> Path:
    """The bundle's image folder, or a message saying where it was expected (then the page stops)."""
    try:
        root = bundle_data_root(bundle)
    except MammoSaeError as error:
        st.error(str(error))
        st.stop()
    if root is None:
        st.warning(
            f"The images of this bundle are not at {bundle.data_root}. The tables and charts still work; to see the "
            "views, mount the dataset there or set MAMMO_SAE_DATA."
        )
        st.stop()
    return root


def render_live_case(case, latent: int | None, colour_map: str) -> np.ndarray:
    """An uploaded case's frame, as the network saw it, with a latent's heatmap (uploads are never cached)."""
    return render_live(case, latent, colour_map=colour_map)
