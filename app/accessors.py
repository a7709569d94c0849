"""The app's only door into the library: cached loaders keyed by path and modification time.

Views call these and show `MammoSaeError` messages as they are; they never compute numerics themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from mammo_sae.data.dicom import MammogramDicom, display_image, read_mammogram
from mammo_sae.data.phantom import is_phantom_dataset
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.errors import MammoSaeError
from mammo_sae.render import DEFAULT_COLOUR, FINDING_COLOURS, draw_boxes, fit_height


def default_data_root() -> str:
    """The dataset root the app opens first: ``MAMMO_SAE_DATA`` or the phantom folder of the README."""
    return os.environ.get("MAMMO_SAE_DATA", "data/phantoms")


__all__ = [
    "MammoSaeError",
    "dataset_index",
    "default_data_root",
    "is_phantom_dataset",
    "mammogram",
    "rendered_view",
]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_resource(show_spinner="Indexing the dataset…", max_entries=4)
def _index(root: str, _stamp: tuple[float, float]) -> VindrIndex:
    return VindrIndex.load(root)


def dataset_index(root: str) -> VindrIndex:
    """The index of a dataset root, rebuilt when its CSVs change."""
    folder = Path(root)
    stamp = (_mtime(folder / "breast-level_annotations.csv"), _mtime(folder / "finding_annotations.csv"))
    return _index(str(folder.resolve()), stamp)


@st.cache_resource(show_spinner="Decoding…", max_entries=12)
def _mammogram(path: str, _mtime: float) -> MammogramDicom:
    return read_mammogram(path)


def mammogram(path: str) -> MammogramDicom:
    return _mammogram(path, _mtime(Path(path)))


@st.cache_data(show_spinner=False, max_entries=64)
def rendered_view(
    path: str,
    preset: str | None,
    invert: bool,
    boxes: tuple[tuple[float, float, float, float], ...],
    categories: tuple[str, ...],
    max_height: int,
) -> np.ndarray:
    """A view ready to show: windowed, optionally inverted, fitted to ``max_height``, boxes drawn."""
    image = mammogram(path)
    pixels = display_image(image, preset)
    if invert:
        pixels = 255 - pixels
    small, scale = fit_height(pixels, max_height)
    colours = [FINDING_COLOURS.get(c, DEFAULT_COLOUR) for c in categories]
    return draw_boxes(small, np.array(boxes).reshape(-1, 4), scale=scale, colours=colours)
