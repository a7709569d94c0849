"""The per-image tables of an analysis: images with their logits, finding rows, evaluation units, baselines,
top patches and the keep/suppress curves. Pure functions of arrays and data-layer tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mammo_sae.analysis.interventions import CurveInputs, HeadLinear, intervention_curves
from mammo_sae.analysis.patches import patch_boxes
from mammo_sae.core.metrics import auprc, auroc
from mammo_sae.data.frames import transform_from_json
from mammo_sae.data.vindr import VindrIndex

IMAGE_COLUMNS = ("image_id", "study_id", "laterality", "view", "split", "breast_birads", "breast_density")
BASELINE_COLUMNS = ("head", "unit", "variant", "n", "positives", "auroc", "auprc")
VARIANTS = ("original", "sae", "sae_error")  # original features, SAE reconstruction, reconstruction + error


def image_table(
    index: VindrIndex, image_ids: Sequence[str], transforms: Sequence[str], concepts: tuple[str, ...]
) -> pd.DataFrame:
    """One row per analysed image, in bundle order (``position``), with its frame transform JSON."""
    assert len(image_ids) == len(transforms), "one transform per analysed image"
    info = index.images.set_index("image_id")
    columns = [c for c in IMAGE_COLUMNS[1:] if c in info.columns] + list(index.categories)
    table = info.loc[list(image_ids), columns].reset_index()
    table.insert(0, "position", np.arange(len(table), dtype=np.int64))
    table["transform"] = list(transforms)
    assert set(concepts) <= set(table.columns)
    return table


def with_logits(
    images: pd.DataFrame, tasks: tuple[str, ...], logits: dict[str, np.ndarray], error_nh: np.ndarray
) -> pd.DataFrame:
    """``images`` with each head's logit per variant (``logit_<task>_<variant>``) and its error term."""
    out = images.copy()
    for h, task in enumerate(tasks):
        for variant in VARIANTS:
            out[f"logit_{task}_{variant}"] = logits[variant][:, h]
        out[f"error_{task}"] = error_nh[:, h]
    return out


def row_table(index: VindrIndex, split: str, images: pd.DataFrame) -> pd.DataFrame:
    """The finding-CSV rows of the analysed images (the published per-row evaluation unit); none for an
    unlabelled root (an imported DICOM folder has no finding CSV)."""
    if not index.labelled:
        columns = ["position", "csv_row", "study_id", "image_id", "laterality", "view", "split"]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*columns, *index.categories]})
    rows = index.labels("row", split=None if split == "all" else split)
    position = pd.Series(images["position"].to_numpy(), index=images["image_id"])
    rows = rows[rows["image_id"].isin(position.index)].copy()
    rows.insert(0, "position", position.loc[rows["image_id"]].to_numpy())
    return rows.reset_index(drop=True)


def evaluation_units(
    images: pd.DataFrame, rows: pd.DataFrame, tasks: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Positions and labels per unit ("image": one per image; "row": one per finding-CSV row). A head whose
    labels are unknown (an unlabelled root's empty columns) has no labels in that unit."""
    units = {"image": images["position"].to_numpy(), "row": rows["position"].to_numpy()}
    labels = {
        unit: {t: table[t].to_numpy() for t in tasks if t in table and table[t].notna().any()}
        for unit, table in (("image", images), ("row", rows))
    }
    return units, labels


def baseline_table(
    logits: dict[str, np.ndarray],
    tasks: tuple[str, ...],
    units: dict[str, np.ndarray],
    labels: dict[str, dict[str, np.ndarray]],
) -> pd.DataFrame:
    """AUROC/AUPRC of each head with the original features, the SAE reconstruction, and reconstruction + error
    (NaN where a class is absent; ``n`` and ``positives`` say which)."""
    records = []
    for unit, positions in units.items():
        for h, task in enumerate(tasks):
            if task not in labels[unit]:
                continue
            y = labels[unit][task]
            for variant, values in logits.items():
                scores = values[positions, h]
                records.append(
                    {
                        "head": task,
                        "unit": unit,
                        "variant": variant,
                        "n": len(y),
                        "positives": int(np.sum(y == 1)),
                        "auroc": auroc(y, scores),
                        "auprc": auprc(y, scores),
                    }
                )
    return pd.DataFrame.from_records(records, columns=BASELINE_COLUMNS)


def patch_table(
    patches: pd.DataFrame, images: pd.DataFrame, grid: tuple[int, int], frame_size: tuple[int, int]
) -> pd.DataFrame:
    """Top patches with the image id, the token cell in frame pixels and in original pixels."""
    if patches.empty:
        return patches.assign(
            image_id=[], **{f"{p}{c}": [] for p in ("frame_", "orig_") for c in ("x0", "y0", "x1", "y1")}
        )
    frame = patch_boxes(patches["row"].to_numpy(), patches["col"].to_numpy(), grid, frame_size)
    original = np.empty_like(frame)
    transforms = images["transform"].to_numpy()
    for image in np.unique(patches["image"].to_numpy()):
        rows = np.flatnonzero(patches["image"].to_numpy() == image)
        original[rows] = transform_from_json(transforms[image]).boxes_to_original(frame[rows])
    out = patches.copy()
    out.insert(3, "image_id", images["image_id"].to_numpy()[patches["image"].to_numpy()])
    for j, name in enumerate(("x0", "y0", "x1", "y1")):
        out[f"frame_{name}"] = frame[:, j].astype(np.float32)
        out[f"orig_{name}"] = original[:, j].astype(np.float32)
    return out


def curves_table(
    zbar_nl: np.ndarray,
    head: HeadLinear,
    rankings: dict[tuple[str, int], np.ndarray],
    concepts: tuple[str, ...],
    labels: dict[str, dict[str, np.ndarray]],
    units: dict[str, np.ndarray],
    ks: tuple[int | None, ...],
    error_nh: np.ndarray,
) -> pd.DataFrame:
    """Keep/suppress curves of every concept's ranking, without and with the error term."""
    curve_inputs = [CurveInputs(c, rankings[(c, 0)], rankings[(c, 1)]) for c in concepts]
    parts = [
        intervention_curves(
            zbar_nl, head, curve_inputs, labels, ks=ks, error_nh=error if with_error else None, units=units
        ).assign(error_term=with_error)
        for with_error, error in ((False, None), (True, error_nh))
    ]
    return pd.concat(parts, ignore_index=True)
