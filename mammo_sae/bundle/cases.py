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


def hanging_views(bundle: Bundle, study_id: str) -> list[HangingView]:
    """The study's views in hanging order (R CC, L CC, R MLO, L MLO); missing views have no position."""
    images = bundle.images
    rows = images[images["study_id"] == study_id]
    if rows.empty:
        raise KeyError(f"study {study_id!r} is not in this bundle")
    out = []
    for laterality, view in HANGING_ORDER:
        match = rows[(rows["laterality"] == laterality) & (rows["view"] == view)]
        position = int(match["position"].iloc[0]) if len(match) else None
        out.append(
            HangingView(laterality, view, position, str(match["image_id"].iloc[0]) if len(match) else None)
        )
    return out


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
