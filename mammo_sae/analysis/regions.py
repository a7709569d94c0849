"""Where each token of an analysed image lies: a ground-truth box of a finding category, a burned-in marker,
the frame's border rows and columns, the background outside the breast, the skin-line band, or breast tissue.

Every token gets exactly one label (an index into the image's region names), so shares over regions add up
to one. Labels are decided in this order, first match wins: a finding box (by category, in the order of
the dataset's categories), a marker, the border, the background, the skin band, breast tissue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.peaks import FRAME_BOX
from mammo_sae.core.errors import MammoSaeError

#: the base regions, in label order (finding boxes follow as ``box:<category>``)
BREAST, SKIN, BACKGROUND, BORDER, MARKER = "breast", "skin", "background", "border", "marker"
BASE_REGIONS: tuple[str, ...] = (BREAST, SKIN, BACKGROUND, BORDER, MARKER)
BOX_PREFIX = "box:"
#: regions that are not breast tissue (what an ``off_breast`` flag counts)
OFF_BREAST: tuple[str, ...] = (BACKGROUND, BORDER)


def region_names(categories: tuple[str, ...]) -> tuple[str, ...]:
    """Label names of a dataset with these finding categories: the base regions, then one box region per
    category; label ``i`` of a token is ``region_names(...)[i]``."""
    return (*BASE_REGIONS, *(f"{BOX_PREFIX}{c}" for c in categories))


class RegionError(MammoSaeError):
    """Region settings are out of range, or tissue planes, boxes and the token grid do not fit together."""


@dataclass(frozen=True)
class RegionSettings:
    """How token footprints become region labels (fractions are shares of a token's footprint area)."""

    #: a token is in a category's (or a truth marker's) box region when this share of its footprint is
    #: covered by the union of those boxes, or when it holds a box's centre (a box smaller than a token
    #: still labels the token it sits in)
    box_overlap: float = 0.25
    #: a token is background when less than this share of its footprint is breast
    breast_fraction: float = 0.5
    #: a breast token is skin when at least this share of its breast pixels lies in the skin band
    skin_fraction: float = 0.5
    #: a token is marker when at least this share of its footprint is a detected marker box
    marker_fraction: float = 0.25
    #: near a box: breast or skin tokens within this Chebyshev token distance of the box's tokens
    near_tokens: int = 2

    def __post_init__(self) -> None:
        for name in ("box_overlap", "breast_fraction", "skin_fraction", "marker_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise RegionError(f"RegionSettings.{name} must be a fraction in (0, 1], got {value!r}")
        near = self.near_tokens
        if isinstance(near, bool) or not isinstance(near, (int, np.integer)) or near < 0:
            raise RegionError(f"RegionSettings.near_tokens must be an integer >= 0, got {near!r}")


# --- boxes on the token grid --------------------------------------------------------------------------------


def _grid_frame(grid: tuple[int, int], frame_size: tuple[int, int]) -> tuple[int, int, float, float]:
    gh, gw = (int(v) for v in grid)
    height, width = (float(v) for v in frame_size)
    if gh <= 0 or gw <= 0 or not (height > 0 and width > 0):
        raise RegionError(f"grid {grid} and frame size {frame_size} must be positive (rows, columns)")
    return gh, gw, height, width


def _clipped(boxes_n4: np.ndarray, height: float, width: float) -> np.ndarray:
    boxes_n4 = np.asarray(boxes_n4, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes_n4).all():
        raise RegionError("boxes must be finite (x0, y0, x1, y1) frame pixels; drop the rows with NaN first")
    if (boxes_n4[:, 2] < boxes_n4[:, 0]).any() or (boxes_n4[:, 3] < boxes_n4[:, 1]).any():
        raise RegionError("boxes must have x1 >= x0 and y1 >= y0 (pixel edges x0, y0, x1, y1)")
    inside = (
        (boxes_n4[:, 2] >= 0) & (boxes_n4[:, 0] <= width) & (boxes_n4[:, 3] >= 0) & (boxes_n4[:, 1] <= height)
    )
    clipped = boxes_n4[inside].copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0.0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0.0, height)
    return clipped


def box_coverage(boxes_n4: np.ndarray, grid: tuple[int, int], frame_size: tuple[int, int]) -> np.ndarray:
    """float32 [gh, gw]: the exact share of each token footprint covered by the union of the boxes (frame
    pixels, clipped to the frame). The plane is cut along every box and token edge into cells that each lie
    in one token and are inside or outside every box; covered cell areas are summed per token."""
    gh, gw, height, width = _grid_frame(grid, frame_size)
    boxes = _clipped(boxes_n4, height, width)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    if len(boxes) == 0:
        return np.zeros((gh, gw), dtype=np.float32)
    col_edges, row_edges = np.arange(gw + 1) * (width / gw), np.arange(gh + 1) * (height / gh)
    xs = np.unique(np.concatenate([col_edges, boxes[:, [0, 2]].ravel()]))
    ys = np.unique(np.concatenate([row_edges, boxes[:, [1, 3]].ravel()]))
    ix0, ix1 = np.searchsorted(xs, boxes[:, 0]), np.searchsorted(xs, boxes[:, 2])
    iy0, iy1 = np.searchsorted(ys, boxes[:, 1]), np.searchsorted(ys, boxes[:, 3])
    count_yx = np.zeros((len(ys), len(xs)), dtype=np.int64)  # 2-D difference array of box counts
    np.add.at(count_yx, (iy0, ix0), 1)
    np.add.at(count_yx, (iy0, ix1), -1)
    np.add.at(count_yx, (iy1, ix0), -1)
    np.add.at(count_yx, (iy1, ix1), 1)
    covered_yx = count_yx.cumsum(axis=0).cumsum(axis=1)[:-1, :-1] > 0
    area_yx = np.diff(ys)[:, None] * np.diff(xs)[None, :] * covered_yx
    col_x = np.clip(np.searchsorted(col_edges, xs[:-1], side="right") - 1, 0, gw - 1)
    row_y = np.clip(np.searchsorted(row_edges, ys[:-1], side="right") - 1, 0, gh - 1)
    sums = np.zeros((gh, gw))
    np.add.at(sums, (row_y[:, None], col_x[None, :]), area_yx)
    return np.clip(sums / ((height / gh) * (width / gw)), 0.0, 1.0).astype(np.float32)


def box_tokens(
    boxes_n4: np.ndarray, grid: tuple[int, int], frame_size: tuple[int, int], min_overlap: float
) -> np.ndarray:
    """bool [gh, gw]: tokens whose footprint the union of the boxes covers by at least ``min_overlap``,
    plus the token holding each box's centre (of the box clipped to the frame; boxes wholly outside the
    frame label nothing)."""
    if not 0 < min_overlap <= 1:
        raise RegionError(f"min_overlap must be a fraction in (0, 1], got {min_overlap!r}")
    gh, gw, height, width = _grid_frame(grid, frame_size)
    tokens_hw = box_coverage(boxes_n4, grid, frame_size) >= np.float32(min_overlap)
    boxes = _clipped(boxes_n4, height, width)
    if len(boxes):
        cols = np.clip(np.floor((boxes[:, 0] + boxes[:, 2]) / 2 * gw / width), 0, gw - 1).astype(np.int64)
        rows = np.clip(np.floor((boxes[:, 1] + boxes[:, 3]) / 2 * gh / height), 0, gh - 1).astype(np.int64)
        tokens_hw[rows, cols] = True
    return tokens_hw


# --- labels ---------------------------------------------------------------------------------------------------


def _check_tissue(tissue: np.ndarray, grid: tuple[int, int], per_image: bool) -> np.ndarray:
    tissue = np.asarray(tissue)
    t = int(grid[0]) * int(grid[1])
    shape = ("n", 3, t) if per_image else (3, t)
    if (
        tissue.ndim != len(shape)
        or tissue.shape[-2:] != (3, t)
        or not np.issubdtype(tissue.dtype, np.floating)
    ):
        raise RegionError(
            f"tissue fractions must be float [{', '.join(map(str, shape))}] (breast, skin, marker per token, "
            f"token_fractions flattened), got {tissue.dtype} {tissue.shape}"
        )
    return tissue


def _tissue_labels(tissue_n3t: np.ndarray, grid: tuple[int, int], settings: RegionSettings) -> np.ndarray:
    """uint8 [n, T] labels from the tissue planes alone: detected marker > border > background > skin > breast."""
    gh, gw = int(grid[0]), int(grid[1])
    breast_nt, skin_nt, marker_nt = (tissue_n3t[:, k].astype(np.float32) for k in range(3))
    labels_nt = np.full(breast_nt.shape, BASE_REGIONS.index(BREAST), dtype=np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        skin_share_nt = np.where(breast_nt > 0, skin_nt / breast_nt, 0.0)
    labels_nt[skin_share_nt >= settings.skin_fraction] = BASE_REGIONS.index(SKIN)
    labels_nt[breast_nt < settings.breast_fraction] = BASE_REGIONS.index(BACKGROUND)
    border_hw = np.zeros((gh, gw), dtype=bool)
    border_hw[[0, -1], :] = True
    border_hw[:, [0, -1]] = True
    labels_nt[:, border_hw.ravel()] = BASE_REGIONS.index(BORDER)
    labels_nt[marker_nt >= settings.marker_fraction] = BASE_REGIONS.index(MARKER)
    return labels_nt


def _overlay_boxes(
    labels_t: np.ndarray,
    boxes_by_kind: Mapping[str, np.ndarray],
    categories: tuple[str, ...],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
    settings: RegionSettings,
) -> None:
    """Truth marker boxes, then finding boxes (last category first, so the first category wins), in place."""
    kinds = [(MARKER, BASE_REGIONS.index(MARKER))]
    kinds += [(c, len(BASE_REGIONS) + k) for k, c in reversed(list(enumerate(categories)))]
    for kind, label in kinds:
        boxes = boxes_by_kind.get(kind)
        if boxes is not None and len(boxes):
            labels_t[box_tokens(boxes, grid, frame_size, settings.box_overlap).ravel()] = label


def token_regions(
    tissue_3t: np.ndarray,
    boxes_by_kind: Mapping[str, np.ndarray],
    categories: tuple[str, ...],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
    settings: RegionSettings | None = None,
) -> np.ndarray:
    """uint8 [T] label of each token of one image (an index into ``region_names(categories)``).

    ``tissue_3t``: breast, skin and detected-marker shares per token (``token_fractions`` flattened);
    ``boxes_by_kind``: frame-pixel boxes [n, 4] by kind (finding categories and ``marker``; other kinds,
    e.g. a phantom's ``benign``, are ignored). First match wins: a finding box (category order), a marker
    (truth box, or detected share >= marker_fraction), the border rows and columns, background (breast
    share < breast_fraction), skin (skin share of the token's breast >= skin_fraction), breast."""
    settings = RegionSettings() if settings is None else settings
    tissue_3t = _check_tissue(tissue_3t, grid, per_image=False)
    _grid_frame(grid, frame_size)
    labels_t = _tissue_labels(tissue_3t[None], grid, settings)[0]
    _overlay_boxes(labels_t, boxes_by_kind, tuple(categories), grid, frame_size, settings)
    return labels_t


def split_regions(
    tissue_n3t: np.ndarray,
    boxes: pd.DataFrame,
    categories: tuple[str, ...],
    grid: tuple[int, int],
    frame_size: tuple[int, int],
    settings: RegionSettings | None = None,
) -> np.ndarray:
    """uint8 [n, T] labels of the split's images 0..n-1 (:func:`token_regions` per image); ``boxes`` has
    ``truth_boxes`` rows (``position``, ``kind``, ``frame_x0`` .. ``frame_y1``)."""
    settings = RegionSettings() if settings is None else settings
    tissue_n3t = _check_tissue(tissue_n3t, grid, per_image=True)
    _grid_frame(grid, frame_size)
    labels_nt = _tissue_labels(tissue_n3t, grid, settings)
    missing = [c for c in ("position", "kind", *FRAME_BOX) if c not in boxes]
    if missing:
        raise RegionError(f"boxes lack the columns {missing}; pass the truth_boxes table (boxes.parquet)")
    used = boxes[boxes["kind"].isin([MARKER, *categories])]
    positions = used["position"].to_numpy(dtype=np.int64)
    if len(positions) and (positions.min() < 0 or positions.max() >= len(labels_nt)):
        raise RegionError(
            f"box positions {positions.min()}..{positions.max()} fall outside the split's "
            f"{len(labels_nt)} images (0..{len(labels_nt) - 1})"
        )
    for p, group in used.groupby("position"):
        by_kind = {str(k): g[FRAME_BOX].to_numpy(np.float64) for k, g in group.groupby("kind")}
        _overlay_boxes(labels_nt[int(p)], by_kind, tuple(categories), grid, frame_size, settings)
    return labels_nt


def near_box(labels_t: np.ndarray, grid: tuple[int, int], box_label: int, near_tokens: int) -> np.ndarray:
    """bool [..., T]: breast and skin tokens within ``near_tokens`` (Chebyshev distance, in tokens) of a token
    labelled ``box_label``, not themselves in it; ``labels_t`` is [T] or [n, T]."""
    labels_t = np.asarray(labels_t)
    gh, gw = int(grid[0]), int(grid[1])
    if labels_t.shape[-1:] != (gh * gw,):
        raise RegionError(f"labels {labels_t.shape} do not fit a {gh} x {gw} grid ([..., {gh * gw}])")
    if near_tokens < 0:
        raise RegionError(f"near_tokens must be >= 0, got {near_tokens}")
    in_box = (labels_t == box_label).reshape(*labels_t.shape[:-1], gh, gw)
    grown = in_box.copy()
    k = int(near_tokens)
    for axis, size in ((-2, gh), (-1, gw)):  # a square dilation, separable: rows then columns
        step = grown.copy()
        for shift in range(1, min(k, size - 1) + 1):
            lo = [slice(None)] * grown.ndim
            hi = [slice(None)] * grown.ndim
            lo[axis], hi[axis] = slice(shift, None), slice(None, -shift)
            step[tuple(lo)] |= grown[tuple(hi)]
            step[tuple(hi)] |= grown[tuple(lo)]
        grown = step
    tissue = np.isin(labels_t, (BASE_REGIONS.index(BREAST), BASE_REGIONS.index(SKIN)))
    return grown.reshape(labels_t.shape) & ~in_box.reshape(labels_t.shape) & tissue
