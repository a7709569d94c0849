"""The VinDr-Mammo index: the release CSVs as an image table and a findings table, with labels per image and row.

``VindrIndex.load(root)`` reads ``breast-level_annotations.csv`` (one row per image) and
``finding_annotations.csv`` (one row per finding; "No Finding" images have one row without a box),
checks that they agree, and looks for the images on disk without failing when they are absent.
Where the Mammo-CLIP derived CSV and PNG folder are found, it also attaches PNG paths, folds and the
boxes in the 912x1520 model frame. Labels exist per image (positive if any row is; the sound default)
and per CSV row (how the published evaluation counted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mammo_sae.core.errors import DataError
from mammo_sae.data import csv_tables as ct
from mammo_sae.data.categories import NO_FINDING, TARGETS, category_key, order_categories, parse_category_list
from mammo_sae.data.csv_tables import (
    BOX_COLUMNS,
    BREAST_COLUMNS,
    BREAST_CSV,
    FINDING_COLUMNS,
    FINDING_CSV,
    IMAGE_SUFFIX,
    IMAGES_DIR,
    MAMMO_CLIP_CSV,
    MAMMO_CLIP_PNG_DIR,
    MAMMO_CLIP_SEARCH,
    RESIZED_BOX_COLUMNS,
)
from mammo_sae.data.folder_import import is_imported_root

# Image-level columns that finding_annotations.csv repeats; the findings table leaves them to the image table.
_REPEATED = ("series_id", "height", "width", "breast_birads", "breast_density")
# Columns the index needs; other columns are kept as they are.
BREAST_REQUIRED: tuple[str, ...] = tuple(name for name in BREAST_COLUMNS if name != "series_id")
FINDING_REQUIRED: tuple[str, ...] = tuple(name for name in FINDING_COLUMNS if name not in _REPEATED)
# Columns both CSVs carry that must agree for the same image.
_MUST_AGREE = ("study_id", "laterality", "view_position", "split")
_SPLIT_ORDER = ("training", "test")
_FIX = (
    f"Point ROOT at an unmodified VinDr-Mammo release folder (it holds {BREAST_CSV}, {FINDING_CSV} and images/), "
    "or re-download the CSVs from PhysioNet."
)

Level = Literal["image", "row"]
Location = str | Path | None


@dataclass(frozen=True, eq=False)
class VindrIndex:
    """The tables of one VinDr-Mammo root. Build it with ``VindrIndex.load``.

    ``images``: one row per image (ids, laterality, view, split, breast_birads, breast_density, height,
    width, path, exists, one 0/1 column per category, n_findings = boxes, n_rows = finding rows).
    ``findings``: one row per finding-CSV row (csv_row, ids, split, categories, finding_birads, boxes,
    has_box, the same 0/1 columns). ``categories``: the label column names, targets first.
    """

    root: Path
    images: pd.DataFrame
    findings: pd.DataFrame
    categories: tuple[str, ...]
    files_checked: bool
    sources: dict[str, str | None] = field(default_factory=dict)
    mammo_clip: dict[str, Any] | None = None
    labelled: bool = True  # False for a root imported from a DICOM folder: no findings, BI-RADS or density

    @classmethod
    def load(
        cls,
        root: str | Path,
        *,
        images_dir: str | Path = IMAGES_DIR,
        image_suffix: str = IMAGE_SUFFIX,
        check_files: bool = True,
        mammo_clip_csv: Location = "auto",
        png_dir: Location = "auto",
    ) -> VindrIndex:
        """Index a VinDr-Mammo root; raise DataError on absent, empty, malformed or inconsistent CSVs.

        Images absent from disk are listed in ``missing``, never fatal. ``check_files=False`` skips the
        disk scan (``exists`` is then NA). ``mammo_clip_csv`` / ``png_dir``: "auto" searches the root and
        ``mammo_clip/``, a path (relative to the root or absolute) must exist, None skips them.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"VinDr-Mammo root {root} is not a folder. {_FIX}")
        breast_path, finding_path = root / BREAST_CSV, root / FINDING_CSV
        images = _image_table(breast_path)
        labelled = finding_path.exists() or not is_imported_root(root)
        if labelled:
            findings, codes, parsed = _finding_table(finding_path, images, breast_path)
        else:  # an imported folder: every image without a finding row, and no category at all
            findings, codes, parsed = _no_findings(), np.zeros(0, dtype=np.int64), []
        categories = _add_labels(images, findings, codes, parsed)
        if not labelled:  # unknown, not negative
            for name in categories:
                images[name] = pd.array([pd.NA] * len(images), dtype="Int8")

        images_root = root / images_dir
        studies = images["study_id"].tolist()
        file_names = (images["image_id"] + image_suffix).tolist()
        images["path"] = [
            f"{images_root}/{study}/{name}" for study, name in zip(studies, file_names, strict=True)
        ]
        if check_files:
            images["exists"] = ct.files_present(images_root, studies, file_names)
        else:
            images["exists"] = pd.array([pd.NA] * len(images), dtype="boolean")

        sources: dict[str, str | None] = {
            "breast_csv": str(breast_path),
            "finding_csv": str(finding_path) if labelled else None,
            "images_dir": str(images_root),
        }
        clip_csv = _locate(root, mammo_clip_csv, MAMMO_CLIP_CSV, "Mammo-CLIP CSV", want_dir=False)
        pngs = _locate(root, png_dir, MAMMO_CLIP_PNG_DIR, "Mammo-CLIP PNG folder", want_dir=True)
        sources["mammo_clip_csv"] = None if clip_csv is None else str(clip_csv)
        sources["png_dir"] = None if pngs is None else str(pngs)
        report = None
        if clip_csv is not None:
            report = _attach_mammo_clip(clip_csv, images, findings)
        if pngs is not None:
            png_names = (images["image_id"] + ".png").tolist()
            images["png_path"] = [
                f"{pngs}/{study}/{name}" for study, name in zip(studies, png_names, strict=True)
            ]
            if check_files:
                images["png_exists"] = ct.files_present(pngs, studies, png_names)
        return cls(root, images, findings, categories, check_files, sources, report, labelled)

    def __repr__(self) -> str:
        missing = len(self.missing) if self.files_checked else "unchecked"
        return (
            f"VindrIndex(root={str(self.root)!r}, images={len(self.images)}, finding_rows={len(self.findings)}, "
            f"categories={len(self.categories)}, missing={missing})"
        )

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names present, "training" and "test" first."""
        present = set(self.images["split"].unique())
        return tuple(name for name in _SPLIT_ORDER if name in present) + tuple(
            sorted(present - set(_SPLIT_ORDER))
        )

    @property
    def missing(self) -> list[str]:
        """Paths of listed images not found on disk (empty when files were not checked)."""
        if not self.files_checked:
            return []
        return self.images.loc[~self.images["exists"].astype(bool), "path"].tolist()

    def labels(
        self, level: Level = "image", *, split: str | None = None, categories: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """0/1 labels with their ids: one row per image (default) or per finding-CSV row (``level="row"``).

        Per image, a category is positive if any of the image's rows has it. Per row is how the published
        evaluation counted (multi-finding images count more than once). ``categories`` accepts column
        names or release names ("Suspicious Calcification").
        """
        self.require_labels("image or row labels")
        if level == "image":
            frame, ids = self.images, ["study_id", "image_id", "laterality", "view", "split"]
        elif level == "row":
            frame, ids = self.findings, ["csv_row", "study_id", "image_id", "laterality", "view", "split"]
        else:
            raise DataError(f"level must be 'image' or 'row', not {level!r}")
        columns = self._category_columns(categories)
        if split is not None:
            frame = frame[frame["split"] == self._check_split(split)]
        return frame[ids + columns].reset_index(drop=True)

    def require_labels(self, what: str) -> None:
        """Raise a DataError saying why ``what`` cannot be given when the root has no labels."""
        if not self.labelled:
            raise DataError(
                f"{self.root} is a folder imported from DICOM files and has no labels (no findings, BI-RADS or "
                f"density), so there are no {what}. Take labels from a labelled root (analyze --score-data "
                "VINDR_ROOT) or from another bundle."
            )

    def boxes(self, image_id: str) -> pd.DataFrame:
        """The finding boxes of one image in original pixels, with ``kind``: its first target category
        (mass before calcification) or, failing that, its first listed category."""
        rows = self.findings[(self.findings["image_id"] == image_id) & self.findings["has_box"]]
        targets = [name for name in TARGETS if name in rows]
        kinds = [
            next(
                (name for name in targets if row[name]),
                category_key(row["categories"][0]) if row["categories"] else "finding",
            )
            for _, row in rows.iterrows()
        ]
        out = rows[list(BOX_COLUMNS)].astype(float).reset_index(drop=True)
        out["kind"] = kinds
        return out

    def conflicts(self, categories: Sequence[str] = TARGETS) -> pd.DataFrame:
        """Per image (aligned with ``images``), whether its rows disagree on each category: some rows have it,
        others do not. The ``any`` column is true if the image conflicts on any of ``categories``."""
        columns = self._category_columns(categories)
        rows_per_image = self.images["n_rows"].to_numpy()
        positions = self._row_positions()
        out = pd.DataFrame(index=self.images.index)
        for name in columns:
            positive_rows = np.bincount(
                positions, weights=self.findings[name].to_numpy(), minlength=len(self.images)
            )
            out[name] = (positive_rows > 0) & (positive_rows < rows_per_image)
        out["any"] = out[columns].any(axis=1)
        return out

    def summary(self, *, max_listed: int = 10) -> dict[str, Any]:
        """Counts for a quick look, JSON-ready: per split and in total."""
        if not self.labelled:
            return self._unlabelled_summary(max_listed)
        images, findings = self.images, self.findings
        splits = self.splits
        conflicts = self.conflicts(TARGETS).rename(columns={"any": "_or_".join(TARGETS)})
        labels = list(self.categories)

        def per_split(frame: pd.DataFrame, count: Callable[[pd.DataFrame], Any]) -> dict[str, Any]:
            result = {name: count(frame[frame["split"] == name]) for name in splits}
            result["total"] = count(frame)
            return result

        def positives(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, int]:
            return {name: int(frame[name].sum()) for name in columns}

        def value_counts(column: str, keys: Sequence[Any]) -> Callable[[pd.DataFrame], dict[str, int]]:
            def count(frame: pd.DataFrame) -> dict[str, int]:
                counts = frame[column].value_counts(dropna=False)
                result = {str(key): int(counts.get(key, 0)) for key in keys}
                if frame[column].isna().any():
                    result["missing"] = int(frame[column].isna().sum())
                return result

            return count

        missing = self.missing
        summary: dict[str, Any] = {
            "root": str(self.root),
            "splits": list(splits),
            "images": per_split(images, len),
            "studies": per_split(images, lambda frame: int(frame["study_id"].nunique())),
            "finding_rows": per_split(findings, len),
            "positives": {
                "image": per_split(images, lambda frame: positives(frame, TARGETS)),
                "row": per_split(findings, lambda frame: positives(frame, TARGETS)),
            },
            "categories_image_level": per_split(images, lambda frame: positives(frame, self.categories)),
            "images_without_findings": per_split(
                images, lambda frame: int((frame[labels].sum(axis=1) == 0).sum())
            ),
            "breast_birads": per_split(images, value_counts("breast_birads", range(1, 6))),
            "breast_density": per_split(images, value_counts("breast_density", ct.DENSITY_LEVELS)),
            "conflicting_images": per_split(
                conflicts.join(images["split"]), lambda frame: positives(frame, list(conflicts.columns))
            ),
            "missing_files": {
                "checked": self.files_checked,
                "count": len(missing),
                "first": [_shown(path, self.root) for path in missing[:max_listed]],
            },
            "mammo_clip": self.mammo_clip,
        }
        return summary

    def _unlabelled_summary(self, max_listed: int) -> dict[str, Any]:
        """The counts an imported folder has: images, studies, views, and the files missing on disk."""
        images, missing = self.images, self.missing
        return {
            "root": str(self.root),
            "labelled": False,
            "splits": list(self.splits),
            "images": len(images),
            "studies": int(images["study_id"].nunique()),
            "views": {
                f"{side} {view}": int(((images["laterality"] == side) & (images["view"] == view)).sum())
                for side in ("R", "L")
                for view in ("CC", "MLO")
            },
            "missing_files": {
                "checked": self.files_checked,
                "count": len(missing),
                "first": [_shown(path, self.root) for path in missing[:max_listed]],
            },
        }

    def _category_columns(self, categories: Sequence[str] | None) -> list[str]:
        if categories is None:
            return list(self.categories)
        try:
            columns = [category_key(name) for name in categories]
        except ValueError as exc:
            raise DataError(f"bad category name: {exc}") from None
        unknown = [name for name in columns if name not in self.categories]
        if unknown:
            raise DataError(f"unknown categories {unknown}; this index has {', '.join(self.categories)}")
        return columns

    def _check_split(self, split: str) -> str:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; this index has {', '.join(self.splits)}")
        return split

    def _row_positions(self) -> np.ndarray:
        return pd.Index(self.images["image_id"]).get_indexer(self.findings["image_id"])


def _shown(path: str, root: Path) -> str:
    """A path relative to the root when it lies inside it (shorter in summaries), else as it is."""
    inside = Path(path).is_relative_to(root)
    return str(Path(path).relative_to(root)) if inside else path


def _image_table(path: Path) -> pd.DataFrame:
    """breast-level_annotations.csv -> one row per image, parsed and checked."""
    raw = ct.read_table(path, BREAST_REQUIRED, what="the breast-level annotations", fix=_FIX)
    ct.check_not_empty(raw, ("study_id", "image_id", "split"), path=path)
    ct.check_values(raw, "laterality", ("L", "R"), path=path)
    ct.check_values(raw, "view_position", ("CC", "MLO"), path=path)
    duplicated = raw["image_id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = np.flatnonzero(duplicated)[:2]
        raise DataError(
            f"{path.name} lists image_id {raw['image_id'].iat[first[0]]} more than once (data rows "
            f"{first[0]} and {first[1]}; {int(duplicated.sum())} rows in all share an image_id). {_FIX}"
        )
    images = pd.DataFrame(
        {
            "study_id": raw["study_id"].array,
            "image_id": raw["image_id"].array,
            "laterality": raw["laterality"].array,
            "view": raw["view_position"].array,
            "split": raw["split"].array,
            "breast_birads": ct.birads_column(raw, "breast_birads", path=path),
            "breast_density": ct.density_column(raw, "breast_density", path=path),
            "height": ct.number_column(raw, "height", path=path, integer=True).array,
            "width": ct.number_column(raw, "width", path=path, integer=True).array,
        }
    )
    for name in raw.columns:
        if name not in BREAST_REQUIRED and name not in images.columns:
            images[name] = raw[name].array
    return images


def _no_findings() -> pd.DataFrame:
    """The findings table of a root without labels: the columns, no rows."""
    columns = [
        "csv_row",
        "study_id",
        "image_id",
        "laterality",
        "view",
        "split",
        "categories",
        "finding_birads",
    ]
    findings = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    for name in BOX_COLUMNS:
        findings[name] = pd.Series(dtype=np.float64)
    findings["has_box"] = pd.Series(dtype=bool)
    return findings


def _finding_table(
    path: Path, images: pd.DataFrame, breast_path: Path
) -> tuple[pd.DataFrame, np.ndarray, list[tuple[str, ...]]]:
    """finding_annotations.csv -> (one row per CSV row, checked against the image table; category codes and
    the distinct category lists they index)."""
    raw = ct.read_table(path, FINDING_REQUIRED, what="the finding annotations", fix=_FIX)
    positions = pd.Index(images["image_id"]).get_indexer(raw["image_id"])
    unknown = np.flatnonzero(positions < 0)
    if len(unknown):
        raise DataError(
            f"{ct.where(path, raw, int(unknown[0]))}: image_id is not in {breast_path.name} "
            f"({len(unknown)} such row(s) in all). Both CSVs must come from the same release. {_FIX}"
        )
    for column in _MUST_AGREE:
        expected = images["view" if column == "view_position" else column].to_numpy()[positions]
        differs = np.flatnonzero(raw[column].to_numpy() != expected)
        if len(differs):
            row = int(differs[0])
            raise DataError(
                f"{ct.where(path, raw, row)}: {column} {raw[column].iat[row]!r} disagrees with "
                f"{breast_path.name} ({expected[row]!r}) for the same image ({len(differs)} such row(s) in "
                f"all). Both CSVs must come from the same, unmodified release. {_FIX}"
            )

    codes, parsed = ct.parse_distinct(raw, "finding_categories", parse_category_list, path=path)
    categories = np.empty(len(parsed), dtype=object)
    categories[:] = parsed
    boxes = {name: ct.number_column(raw, name, path=path).to_numpy() for name in BOX_COLUMNS}
    findings = pd.DataFrame(
        {
            "csv_row": np.arange(len(raw)),
            "study_id": raw["study_id"].array,
            "image_id": raw["image_id"].array,
            "laterality": raw["laterality"].array,
            "view": raw["view_position"].array,
            "split": raw["split"].array,
            "categories": categories[codes],
            "finding_birads": ct.birads_column(raw, "finding_birads", path=path),
            **boxes,
        }
    )
    findings["has_box"] = ~np.isnan(np.column_stack(list(boxes.values()))).any(axis=1)
    for name in raw.columns:
        if name not in FINDING_REQUIRED and name not in _REPEATED and name not in findings.columns:
            findings[name] = raw[name].array
    return findings, codes, parsed


def _add_labels(
    images: pd.DataFrame, findings: pd.DataFrame, codes: np.ndarray, parsed: list[tuple[str, ...]]
) -> tuple[str, ...]:
    """0/1 columns per category on both tables (a row has it; an image has it in any row) and the counts.

    ``codes``/``parsed``: the distinct category list of every CSV row. Returns the category columns.
    """
    keys = [[category_key(name) for name in names] for names in parsed]
    categories = order_categories(key for names in keys for key in names)
    clash = [name for name in categories if name in images.columns or name in findings.columns]
    if clash:
        raise DataError(
            f"finding categories {clash} would overwrite index columns of the same name; "
            "rename those categories in the finding CSV"
        )
    # One 0/1 row per distinct category list, gathered for every CSV row.
    lookup = np.zeros((len(parsed), len(categories)), dtype=np.int8)
    for code, names in enumerate(keys):
        for key in names:
            if key != NO_FINDING:
                lookup[code, categories.index(key)] = 1
    row_labels = lookup[codes]
    positions = pd.Index(images["image_id"]).get_indexer(findings["image_id"])
    n_images = len(images)
    for k, name in enumerate(categories):
        findings[name] = row_labels[:, k]
        images[name] = (np.bincount(positions, weights=row_labels[:, k], minlength=n_images) > 0).astype(
            np.int8
        )
    has_box = findings["has_box"].to_numpy()
    images["n_findings"] = np.bincount(positions, weights=has_box, minlength=n_images).astype(np.int32)
    images["n_rows"] = np.bincount(positions, minlength=n_images).astype(np.int32)
    return categories


def _locate(root: Path, given: Location, name: str, what: str, *, want_dir: bool) -> Path | None:
    """Resolve an optional Mammo-CLIP location: "auto" searches MAMMO_CLIP_SEARCH, a path must exist."""
    if given is None:
        return None
    exists = Path.is_dir if want_dir else Path.is_file
    if isinstance(given, str) and given == "auto":
        return next((root / sub / name for sub in MAMMO_CLIP_SEARCH if exists(root / sub / name)), None)
    path = root / Path(given).expanduser()
    if not exists(path):
        kind = "folder" if want_dir else "file"
        raise DataError(
            f"{what} {path} is not a {kind}; give the right path, 'auto' to search, or None to skip it"
        )
    return path


def _attach_mammo_clip(path: Path, images: pd.DataFrame, findings: pd.DataFrame) -> dict[str, Any]:
    """Join the Mammo-CLIP CSV: fold per image, resized boxes per finding (matched by order within an image)."""
    fix = "Use the vindr_detection_v1_folds.csv shipped with Mammo-CLIP, or pass mammo_clip_csv=None to skip it."
    raw = ct.read_table(path, ("patient_id", "image_id"), what="the Mammo-CLIP CSV", fix=fix)
    image_ids = raw["image_id"].str.removesuffix(".png")
    positions = pd.Index(images["image_id"]).get_indexer(image_ids)
    matched = positions >= 0
    checks = [("patient_id", "study_id")] + [
        (name, name) for name in ("laterality", "split") if name in raw.columns
    ]
    for theirs, ours in checks:
        differs = np.flatnonzero(matched & (raw[theirs].to_numpy() != images[ours].to_numpy()[positions]))
        if len(differs):
            row = int(differs[0])
            raise DataError(
                f"{ct.where(path, raw, row)}: {theirs} {raw[theirs].iat[row]!r} disagrees with the VinDr CSVs "
                f"({images[ours].to_numpy()[positions[row]]!r}) for the same image ({len(differs)} such row(s)). {fix}"
            )
    if "fold" in raw.columns:
        folds = ct.number_column(raw, "fold", path=path, integer=True)
        fold = folds[matched].groupby(positions[matched]).first()
        images["fold"] = fold.reindex(np.arange(len(images))).astype("Int32").array
    attached_rows = 0
    if all(name in raw.columns for name in RESIZED_BOX_COLUMNS):
        theirs = pd.DataFrame(
            {"image_id": image_ids.to_numpy(), "nth": image_ids.groupby(image_ids).cumcount().to_numpy()}
        )
        for name in RESIZED_BOX_COLUMNS:
            theirs[name] = ct.number_column(raw, name, path=path).to_numpy()
        ours = pd.DataFrame(
            {
                "image_id": findings["image_id"].to_numpy(),
                "nth": findings.groupby("image_id").cumcount().to_numpy(),
            }
        )
        joined = ours.merge(theirs, on=["image_id", "nth"], how="left", indicator=True)
        for name in RESIZED_BOX_COLUMNS:
            findings[name] = joined[name].to_numpy()
        attached_rows = int((joined["_merge"] == "both").sum())
    return {
        "csv": str(path),
        "rows": len(raw),
        "images_matched": len(np.unique(positions[matched])),
        "rows_with_unknown_image": int((~matched).sum()),
        "finding_rows_matched": attached_rows,
    }
