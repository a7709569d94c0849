"""The VinDr-Mammo tables: their file names and columns, and reading, checking and writing them.

Every bad cell becomes a DataError naming the file, row and fix. Cells are read as strings (no NA
guessing, so an id is never turned into a number or a missing value) and parsed here column by column.
Parsing works on the distinct values of a column, which keeps it fast. The index (``vindr.py``) reads
with these names and the phantom generator writes with them, so both agree with the release by
construction.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from mammo_sae.core.errors import DataError

_BIRADS = re.compile(r"(?:BI-?RADS)?\s*([1-5])", re.IGNORECASE)
_DENSITY = re.compile(r"(?:DENSITY)?\s*([A-D])", re.IGNORECASE)
DENSITY_LEVELS: tuple[str, ...] = ("A", "B", "C", "D")

# --- the release layout (FACTS.md 4) ---------------------------------------------------------------------
BREAST_CSV = "breast-level_annotations.csv"
FINDING_CSV = "finding_annotations.csv"
METADATA_CSV = "metadata.csv"
IMAGES_DIR = "images"
IMAGE_SUFFIX = ".dicom"
MAMMO_CLIP_CSV = "vindr_detection_v1_folds.csv"
MAMMO_CLIP_PNG_DIR = "images_png"
# Folders (relative to the root) searched for the Mammo-CLIP CSV and PNG folder when they are "auto".
MAMMO_CLIP_SEARCH: tuple[str, ...] = (".", "mammo_clip")

BOX_COLUMNS: tuple[str, ...] = ("xmin", "ymin", "xmax", "ymax")
RESIZED_BOX_COLUMNS: tuple[str, ...] = tuple(f"resized_{name}" for name in BOX_COLUMNS)
# The release's columns, in its order (phantoms are written with exactly these).
BREAST_COLUMNS: tuple[str, ...] = (
    "study_id",
    "series_id",
    "image_id",
    "laterality",
    "view_position",
    "height",
    "width",
    "breast_birads",
    "breast_density",
    "split",
)
FINDING_COLUMNS: tuple[str, ...] = (
    *BREAST_COLUMNS[:-1],
    "finding_categories",
    "finding_birads",
    *BOX_COLUMNS,
    "split",
)


def table_text(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    """CSV text with exactly ``columns`` in that order; a row with a missing or an unknown key is a bug."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        assert set(row) == set(columns), (
            f"row keys differ from the columns: {sorted(set(row) ^ set(columns))}"
        )
        writer.writerow(row)
    return buffer.getvalue()


def read_table(path: Path, required: Sequence[str], *, what: str, fix: str) -> pd.DataFrame:
    """Read a CSV as strings, stripped of surrounding spaces; fail clearly if it is absent, empty or short of columns.

    ``what`` names the file in messages ("the breast-level annotations"); ``fix`` says what to do.
    Extra columns are kept.
    """
    if not path.is_file():
        raise DataError(f"{what} not found: {path} does not exist. {fix}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} file {path} is empty. {fix}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} file {path} is not a readable CSV ({exc}). {fix}") from None
    frame.columns = [str(name).strip().lstrip("\ufeff") for name in frame.columns]  # tolerate a BOM
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataError(
            f"{what} file {path} lacks the required column(s) {', '.join(missing)} "
            f"(it has: {', '.join(frame.columns)}). {fix}"
        )
    if frame.empty:
        raise DataError(f"{what} file {path} has a header but no rows. {fix}")
    for name in frame.columns:
        frame[name] = frame[name].str.strip()
    return frame


def where(path: Path, frame: pd.DataFrame, row: int) -> str:
    """'file.csv data row 12 (line 14, image_id abc)': how messages point at one CSV row."""
    label = f"{path.name} data row {row} (line {row + 2}"
    if "image_id" in frame.columns:
        label += f", image_id {frame['image_id'].iat[row]}"
    return label + ")"


def parse_distinct(
    frame: pd.DataFrame, column: str, parse: Callable[[str], Any], *, path: Path
) -> tuple[np.ndarray, list[Any]]:
    """Apply ``parse`` to each distinct value of a string column: (codes per row, parsed value per code).

    ``parse`` raises ValueError on a bad value; the DataError then names the first row that holds it.
    """
    codes, uniques = pd.factorize(frame[column])
    parsed: list[Any] = []
    for code, text in enumerate(uniques):
        try:
            parsed.append(parse(str(text)))
        except ValueError as exc:
            row = int(np.flatnonzero(codes == code)[0])
            raise DataError(f"{where(path, frame, row)}: bad {column} {text!r}: {exc}") from None
    return codes, parsed


def parse_birads(text: str) -> int | None:
    """'BI-RADS 4' (or '4') -> 4; '' -> None."""
    if not text:
        return None
    match = _BIRADS.fullmatch(text)
    if match is None:
        raise ValueError("expected 'BI-RADS 1' .. 'BI-RADS 5' or empty")
    return int(match.group(1))


def parse_density(text: str) -> str | None:
    """'DENSITY C' (or 'C') -> 'C'; '' -> None."""
    if not text:
        return None
    match = _DENSITY.fullmatch(text)
    if match is None:
        raise ValueError("expected 'DENSITY A' .. 'DENSITY D' or empty")
    return match.group(1).upper()


def birads_column(frame: pd.DataFrame, column: str, *, path: Path) -> ExtensionArray:
    """A BI-RADS column as nullable Int8 (1-5, NA where empty)."""
    codes, parsed = parse_distinct(frame, column, parse_birads, path=path)
    lookup = np.array([np.nan if value is None else value for value in parsed], dtype=float)
    return pd.array(lookup[codes], dtype="Int8")


def density_column(frame: pd.DataFrame, column: str, *, path: Path) -> pd.Categorical:
    """A breast-density column as a categorical over A-D (NA where empty)."""
    codes, parsed = parse_distinct(frame, column, parse_density, path=path)
    lookup = np.array(parsed, dtype=object)
    return pd.Categorical(lookup[codes], categories=DENSITY_LEVELS)


def number_column(frame: pd.DataFrame, column: str, *, path: Path, integer: bool = False) -> pd.Series:
    """A numeric column: float64 (NaN where empty) or, with ``integer``, nullable Int32."""
    text = frame[column]
    values = pd.to_numeric(text.where(text != ""), errors="coerce").astype(float)
    bad = values.isna().to_numpy() & (text != "").to_numpy()
    if integer:
        bad |= (values.notna() & (values % 1 != 0)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        raise DataError(
            f"{where(path, frame, row)}: {column} {text.iat[row]!r} is not {kind} "
            f"({int(bad.sum())} such row(s) in all)"
        )
    return values.astype("Int32") if integer else values


def check_values(frame: pd.DataFrame, column: str, allowed: Iterable[str], *, path: Path) -> None:
    """Fail on the first value of ``column`` outside ``allowed``."""
    allowed = tuple(allowed)
    bad = ~frame[column].isin(allowed).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where(path, frame, row)}: {column} {frame[column].iat[row]!r} is not one of "
            f"{', '.join(allowed)} ({int(bad.sum())} such row(s) in all)"
        )


def check_not_empty(frame: pd.DataFrame, columns: Iterable[str], *, path: Path) -> None:
    """Fail on the first empty cell among ``columns``."""
    for column in columns:
        bad = (frame[column] == "").to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where(path, frame, row)}: {column} is empty ({int(bad.sum())} such row(s) in all)"
            )


def files_present(folder: Path, subfolders: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Whether ``folder/<subfolder>/<name>`` is a file, for each pair: one directory scan per subfolder.

    A scan reads names (and types) without one stat per file, which matters on cold or network storage;
    an absent ``folder`` means nothing is present.
    """
    try:
        with os.scandir(folder) as entries:
            present = {entry.name for entry in entries if entry.is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return np.zeros(len(names), dtype=bool)
    except OSError as exc:
        raise DataError(f"cannot list {folder} ({exc}); check its permissions") from None
    files: dict[str, set[str]] = {}
    for sub in present.intersection(subfolders):
        try:
            with os.scandir(os.path.join(folder, sub)) as entries:
                files[sub] = {entry.name for entry in entries if entry.is_file()}
        except OSError as exc:
            raise DataError(f"cannot list {folder / sub} ({exc}); check its permissions") from None
    empty: set[str] = set()
    found = (name in files.get(sub, empty) for sub, name in zip(subfolders, names, strict=True))
    return np.fromiter(found, dtype=bool, count=len(names))
