"""Ground-truth boxes of the analysed images, and a fast screen of where every latent peaks.

The screen asks, for every latent at once, how often its strongest token on an image lies inside a box
of a given kind (a finding, or a phantom's burned-in marker). The maximum of a bilinearly upsampled map
sits at the centre of its strongest token, so this is the pointing game at token resolution; it covers
all latents in one pass over the codes, where the full localisation (localisation.py) scores a chosen few.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.data.csv_tables import RESIZED_BOX_COLUMNS
from mammo_sae.data.frame_policy import boxes_in_space
from mammo_sae.data.frames import transform_from_json
from mammo_sae.data.phantom import TRUTH_CSV, is_phantom_dataset
from mammo_sae.data.vindr import VindrIndex

BOX = ["xmin", "ymin", "xmax", "ymax"]
FRAME_BOX = ["frame_x0", "frame_y0", "frame_x1", "frame_y1"]
TOLERANCE_COLUMNS = ["tolerance_x", "tolerance_y"]  # pointing tolerance per box, frame px per axis
RELEASE_EVERY = 256  # images between releases of the codes' resident pages


def truth_boxes(
    index: VindrIndex, root: str | Path, images: pd.DataFrame, frame_size: tuple[int, int]
) -> pd.DataFrame:
    """Boxes of the analysed images: one row per (finding box, label column it carries), plus, for phantom
    datasets, every other ground-truth object (markers, benign structures). Original and frame pixels."""
    position = pd.Series(images["position"].to_numpy(), index=images["image_id"])
    findings = index.findings[index.findings["has_box"] & index.findings["image_id"].isin(position.index)]
    parts = []
    for kind in index.categories:
        if kind in findings:
            rows = findings[findings[kind] == 1]
            # Mammo-CLIP's resized boxes, for frames mapped onto a PNG
            clip_boxes = {c: rows[c] for c in RESIZED_BOX_COLUMNS if c in rows}
            parts.append(
                pd.DataFrame(
                    {"image_id": rows["image_id"], "kind": kind, **{c: rows[c] for c in BOX}, **clip_boxes}
                )
            )
    truth_path = Path(root) / TRUTH_CSV
    if is_phantom_dataset(root) and truth_path.is_file():
        truth = pd.read_csv(truth_path, dtype={"image_id": str})
        truth = truth[truth["image_id"].isin(position.index) & ~truth["kind"].isin(index.categories)]
        parts.append(truth[["image_id", "kind", *BOX]])
    boxes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["image_id", "kind", *BOX])
    boxes[BOX] = boxes[BOX].astype(np.float64)
    boxes.insert(0, "position", position.loc[boxes["image_id"]].to_numpy().astype(np.int64))
    frame = np.zeros((len(boxes), 4))
    transforms = images["transform"].to_numpy()
    resized = list(RESIZED_BOX_COLUMNS) if set(RESIZED_BOX_COLUMNS) <= set(boxes) else None
    for p, group in boxes.groupby("position"):
        transform = transform_from_json(transforms[int(p)])
        source = boxes_in_space(
            transform, group[BOX].to_numpy(), group[resized].to_numpy() if resized else None
        )
        boxes.loc[group.index, BOX] = source  # in the transform's original pixels (a PNG's, without a DICOM)
        frame[group.index.to_numpy()] = transform.boxes_to_frame(source)
    boxes[FRAME_BOX] = frame
    boxes = boxes[~np.isnan(frame).any(axis=1)].drop(columns=resized or [])
    assert frame_size[0] > 0 and frame_size[1] > 0
    return boxes.sort_values(["position", "kind"], kind="stable").reset_index(drop=True)


def image_peaks(codes: TokenCodes, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latent, token, value) of each latent's strongest token on image i (ties -> lowest token)."""
    t = codes.tokens_per_image
    start, stop = codes.indptr[i * t], codes.indptr[(i + 1) * t]
    latent = np.asarray(codes.latent[start:stop], dtype=np.int64)
    value = np.asarray(codes.value[start:stop], dtype=np.float32)
    token = np.repeat(np.arange(t), np.diff(codes.indptr[i * t : (i + 1) * t + 1]))
    order = np.lexsort((token, -value, latent))
    first = np.ones(len(order), dtype=bool)
    first[1:] = latent[order][1:] != latent[order][:-1]
    keep = order[first]
    return latent[keep], token[keep], value[keep]


class PointingScreen:
    """Per latent: among images holding boxes of one kind where the latent fires, the fraction whose peak
    token centre lies inside one of those boxes."""

    def __init__(self, grid: tuple[int, int], frame_size: tuple[int, int], d_sae: int) -> None:
        self.grid, self.frame_size, self.d_sae = grid, frame_size, d_sae

    def token_centres(self, tokens: np.ndarray) -> np.ndarray:
        gh, gw = self.grid
        height, width = self.frame_size
        rows, cols = np.divmod(tokens, gw)
        return np.stack([(cols + 0.5) * width / gw, (rows + 0.5) * height / gh], axis=1)

    def run(self, codes: TokenCodes, boxes: pd.DataFrame, kind: str) -> pd.DataFrame:
        """``boxes``: the kind's rows of ``truth_boxes``; optional ``tolerance_x`` / ``tolerance_y`` columns
        (frame px per axis, see ``pointing_tolerances``; an older one-axis ``tolerance`` column serves both)
        grow each box for the hit test, as in the pointing game."""
        hits = np.zeros(self.d_sae, dtype=np.int64)
        fired = np.zeros(self.d_sae, dtype=np.int64)
        for n, (p, group) in enumerate(boxes.groupby("position")):
            if n % RELEASE_EVERY == RELEASE_EVERY - 1:
                codes.release()  # bounded resident memory over a long pass
            latent, token, _ = image_peaks(codes, int(p))
            xy = self.token_centres(token)
            grow_x, grow_y = box_tolerances(group)
            b = group[FRAME_BOX].to_numpy() + np.stack([-grow_x, -grow_y, grow_x, grow_y], axis=1)
            inside = (
                (xy[:, None, 0] >= b[None, :, 0])
                & (xy[:, None, 0] <= b[None, :, 2])
                & (xy[:, None, 1] >= b[None, :, 1])
                & (xy[:, None, 1] <= b[None, :, 3])
            ).any(axis=1)
            fired[latent] += 1
            hits[latent[inside]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(fired > 0, hits / np.maximum(fired, 1), np.nan)
        return pd.DataFrame({f"peak_in_{kind}": fraction, f"fired_{kind}": fired})


MARKER_MIN_POINTING = 0.5


def pointing_tolerances(boxes: pd.DataFrame, original_px: float) -> pd.DataFrame:
    """Per box row, ``original_px`` original-image pixels in frame pixels on each axis (``tolerance_x``,
    ``tolerance_y``): the box's own frame / original width and height ratios, which are the image's resize
    scales. A degenerate box borrows its image's other boxes' median scale on that axis (1 when none has one)."""
    out = pd.DataFrame(index=boxes.index, columns=TOLERANCE_COLUMNS, dtype=np.float64)
    for column, (lo, hi, frame_lo, frame_hi) in zip(
        TOLERANCE_COLUMNS,
        (("xmin", "xmax", "frame_x0", "frame_x1"), ("ymin", "ymax", "frame_y0", "frame_y1")),
        strict=True,
    ):
        size = (boxes[hi] - boxes[lo]).to_numpy(dtype=np.float64)
        frame = (boxes[frame_hi] - boxes[frame_lo]).to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = pd.Series(np.where(size > 0, frame / size, np.nan), index=boxes.index)
        scale = scale.fillna(scale.groupby(boxes["position"]).transform("median"))  # NaN skipped
        out[column] = scale.fillna(1.0).to_numpy() * float(original_px)
    return out


def box_tolerances(boxes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """([m] x, [m] y) pointing tolerances in frame px of ``boxes`` rows: their ``tolerance_x`` /
    ``tolerance_y`` columns, an older one-axis ``tolerance`` column on both axes, else zero."""
    if set(TOLERANCE_COLUMNS) <= set(boxes):
        return boxes["tolerance_x"].to_numpy(np.float64), boxes["tolerance_y"].to_numpy(np.float64)
    if "tolerance" in boxes:
        value = boxes["tolerance"].to_numpy(np.float64)
        return value, value.copy()
    return np.zeros(len(boxes)), np.zeros(len(boxes))


def image_tolerance(boxes: pd.DataFrame) -> tuple[float, float]:
    """One image's (x, y) pointing tolerance in frame px, from its first box row (all rows of an image share
    the image's resize scale)."""
    x, y = box_tolerances(boxes.iloc[:1])
    return (float(x[0]), float(y[0])) if len(x) else (0.0, 0.0)


def marker_latents(latents: pd.DataFrame, n_marker_boxes: int, limit: int | None = None) -> pd.DataFrame:
    """The confounder check: latents whose strongest token lies in a marker box on at least half of the marker
    images where they fire, and that fire on at least 10% of them (3 at least), with their class scores and
    logit effects; best first, all of them unless ``limit`` is given (``attrs["total"]`` counts them all).
    Empty when the dataset has no markers."""
    if "peak_in_marker" not in latents:
        return pd.DataFrame()
    support = max(3, math.ceil(0.1 * n_marker_boxes))
    hits = latents[(latents["peak_in_marker"] >= MARKER_MIN_POINTING) & (latents["fired_marker"] >= support)]
    hits = hits.sort_values(["peak_in_marker", "fired_marker"], ascending=False, kind="stable")
    total = len(hits)
    if limit is not None:
        hits = hits.head(limit)
    columns = ["peak_in_marker", "fired_marker", *[c for c in latents if c.startswith(("score_", "effect_"))]]
    out = hits[columns]
    out.attrs["support"] = support
    out.attrs["total"] = total
    return out
