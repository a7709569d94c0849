"""Where each analysed image's laterality and view came from, carried from an imported DICOM folder's
provenance table into its bundle, so the app can say "inferred from the image" beside such a view."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mammo_sae.data.folder_import import PROVENANCE_CSV, is_imported_root, source_kind

#: the bundle table's columns: per image, each value, the attribute (or "image") it came from, the kind of
#: place ("tag", "text" or "image") and its confidence
ORIENTATION_COLUMNS = (
    "position",
    "image_id",
    "laterality",
    "laterality_source",
    "laterality_from",
    "laterality_confidence",
    "view",
    "view_source",
    "view_from",
    "view_confidence",
)


def orientation_table(root: str | Path, images: pd.DataFrame) -> pd.DataFrame | None:
    """The orientation provenance of the analysed images (``images``: position, image_id), or None for a
    root whose laterality and view are its CSV's (VinDr-Mammo, phantoms)."""
    root = Path(root)
    if not is_imported_root(root):
        return None
    provenance = pd.read_csv(root / PROVENANCE_CSV, dtype=str, keep_default_na=False)
    table = images[["position", "image_id"]].merge(provenance, on="image_id", how="left", validate="1:1")
    assert len(table) == len(images), "one provenance row per analysed image"
    missing = table["laterality_source"].isna()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} analysed images have no row in {root / PROVENANCE_CSV}: import the folder "
            "again (python -m mammo_sae.data import)"
        )
    out = table.rename(columns={"view_position": "view"})
    for name in ("laterality", "view"):
        out[f"{name}_from"] = out[f"{name}_source"].map(source_kind)
        out[f"{name}_confidence"] = out[f"{name}_confidence"].astype(float)
    return out[list(ORIENTATION_COLUMNS)].reset_index(drop=True)
