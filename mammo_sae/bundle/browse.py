"""The Dataset page's questions of a dataset index: counts, studies filtered by split and finding, and a
study's four views in hanging order (the same order and filters as a bundle's cases)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mammo_sae.bundle.cases import HANGING_ORDER, filter_studies
from mammo_sae.data.vindr import VindrIndex

FINDINGS = ("mass", "calcification")
FINDING_FILTERS = ("any", *FINDINGS, "none")


@dataclass(frozen=True)
class DatasetView:
    laterality: str
    view: str
    image_id: str | None  # None when the study lacks this view
    path: str | None
    exists: bool  # False when the CSV lists the image but its file is missing


def dataset_counts(index: VindrIndex) -> dict[str, int | None]:
    """Images, studies, finding-positive images and images missing on disk."""
    images = index.images
    counts = {"images": len(images), "studies": int(images["study_id"].nunique())}
    for finding in FINDINGS:  # None: unknown (an imported folder has no labels), not none
        known = index.labelled and finding in images
        counts[f"{finding} images"] = int(images[finding].sum()) if known else None
    counts["missing"] = len(index.missing)
    return counts


def index_studies(images: pd.DataFrame) -> pd.DataFrame:
    """One row per study of an index's image table: split, views, and per finding whether any view has it."""
    flags = {f: (f, "max") for f in FINDINGS if f in images}
    grouped = images.groupby("study_id", sort=True).agg(
        split=("split", "first"), views=("image_id", "size"), **flags
    )
    return grouped.reset_index()


def browse_studies(images: pd.DataFrame, split: str = "all", finding: str = "any") -> list[str]:
    """Study ids (sorted) of the images in ``split`` ("all" for every split) with ``finding`` in any view
    ("any", a finding, or "none": no finding of FINDINGS)."""
    if finding not in FINDING_FILTERS:
        raise ValueError(f"finding must be one of {', '.join(FINDING_FILTERS)}, got {finding!r}")
    chosen = images if split == "all" else images[images["split"] == split]
    studies = index_studies(chosen)
    present = tuple(f for f in FINDINGS if f in studies)
    if finding in FINDINGS:
        if finding not in present:
            return sorted(studies["study_id"])  # the index has no such labels: the filter does not apply
        studies = filter_studies(studies, positive=(finding,))
    elif finding == "none":
        studies = filter_studies(studies, negative=present)
    return sorted(studies["study_id"])


def dataset_views(images: pd.DataFrame, study_id: str) -> list[DatasetView]:
    """The study's views in hanging order (R CC, L CC, R MLO, L MLO); absent views have no image."""
    rows = images[images["study_id"] == study_id].set_index(["laterality", "view"])
    out = []
    for laterality, view in HANGING_ORDER:
        if (laterality, view) not in rows.index:
            out.append(DatasetView(laterality, view, None, None, False))
            continue
        row = rows.loc[(laterality, view)]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        exists = row.get("exists", True)
        out.append(
            DatasetView(
                laterality,
                view,
                str(row["image_id"]),
                str(row["path"]),
                bool(True if pd.isna(exists) else exists),
            )
        )
    return out
