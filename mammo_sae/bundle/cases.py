"""Cases of a bundle as a reader sees them: studies with their filters, the four views in hanging order,
per-view probabilities (original and with the SAE in place) and ground-truth boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.bundle.reader import Bundle

HANGING_ORDER = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))  # CC above MLO, R left of L


@dataclass(frozen=True)
class HangingView:
    laterality: str
    view: str
    position: int | None  # row in the bundle's image table; None when the study lacks this view
    image_id: str | None


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def study_table(bundle: Bundle) -> pd.DataFrame:
    """One row per study: split, whether any view is mass / calcification positive, highest BI-RADS,
    density, and the number of views analysed."""
    images = bundle.images
    flags = {c: (c, "max") for c in bundle.concepts if c in images}
    grouped = images.groupby("study_id", sort=False).agg(
        split=("split", "first"),
        views=("image_id", "size"),
        birads=("breast_birads", "max") if "breast_birads" in images else ("split", "size"),
        density=("breast_density", "first") if "breast_density" in images else ("split", "size"),
        **flags,
    )
    return grouped.reset_index()


def filter_studies(
    studies: pd.DataFrame,
    *,
    split: str | None = None,
    positive: tuple[str, ...] = (),
    negative: tuple[str, ...] = (),
    birads: tuple[str, ...] = (),
    density: tuple[str, ...] = (),
    search: str = "",
) -> pd.DataFrame:
    """Studies matching every given filter (positive: all named concepts present; negative: none of the
    named concepts present; search: a substring of the study id, case-insensitive)."""
    mask = pd.Series(True, index=studies.index)
    if split:
        mask &= studies["split"] == split
    for concept in positive:
        mask &= studies[concept].astype(int) == 1
    for concept in negative:
        mask &= studies[concept].astype(int) == 0
    if birads:
        mask &= studies["birads"].astype(str).isin([str(b) for b in birads])
    if density:
        mask &= studies["density"].astype(str).isin([str(d) for d in density])
    if search.strip():
        mask &= studies["study_id"].str.contains(search.strip(), case=False, regex=False)
    return studies[mask]


def _hanging_index(bundle: Bundle) -> dict[str, tuple[HangingView, ...]]:
    """Every study's views in hanging order, built once per opened bundle (a page asks many times a run)."""
    index = bundle.__dict__.get("_hanging_index")
    if index is None:
        table = bundle.images[["study_id", "laterality", "view", "position", "image_id"]]
        first: dict[tuple[str, str, str], tuple[int, str]] = {}
        for study, laterality, view, position, image_id in table.itertuples(index=False):
            first.setdefault(
                (study, laterality, view), (int(position), str(image_id))
            )  # the first, as listed
        index = {
            study: tuple(
                HangingView(lat, view, *first.get((study, lat, view), (None, None)))
                for lat, view in HANGING_ORDER
            )
            for study in dict.fromkeys(table["study_id"])
        }
        bundle.__dict__["_hanging_index"] = index
    return index


def hanging_views(bundle: Bundle, study_id: str) -> list[HangingView]:
    """The study's views in hanging order (R CC, L CC, R MLO, L MLO); missing views have no position."""
    views = _hanging_index(bundle).get(study_id)
    if views is None:
        raise KeyError(f"study {study_id!r} is not in this bundle")
    return list(views)


def view_probabilities(bundle: Bundle, position: int) -> pd.DataFrame:
    """Per head: the probability with the original features and with the SAE reconstruction in place."""
    row = bundle.images.iloc[position]
    return pd.DataFrame(
        [
            {
                "head": task,
                "original": float(sigmoid(row[f"logit_{task}_original"])),
                "sae": float(sigmoid(row[f"logit_{task}_sae"])),
            }
            for task in bundle.tasks
        ]
    )


def view_boxes(bundle: Bundle, position: int, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Ground-truth boxes of one view in original pixels (``xmin..ymax``) with their kind."""
    boxes = bundle.boxes[bundle.boxes["position"] == position]
    if kinds is not None:
        boxes = boxes[boxes["kind"].isin(kinds)]
    return boxes[["kind", "xmin", "ymin", "xmax", "ymax"]].reset_index(drop=True)
