"""What fires here: the latents active in one region of one image (a token, a point or a box), with their
in-region activation, their specificity to the region and their share of each head's logit from it.

Token ``(r, c)`` of a ``(gh, gw)`` grid covers frame rows ``[r H / gh, (r + 1) H / gh)`` and columns
``[c W / gw, (c + 1) W / gw)``. Latent i's share of head h's logit at token t is ``z_ti effect_lh[i, h] / N``
(``analysis.evidence``), so summing it over the region's tokens gives the latent's contribution from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.core.errors import MammoSaeError


class FiresHereError(MammoSaeError):
    """A token, point or box does not lie on the image's token grid or frame, or region inputs do not fit."""


def _edges(size: int, cells: int) -> np.ndarray:
    """[cells + 1] frame-pixel edges of the token footprints along one axis."""
    return np.arange(cells + 1, dtype=np.float64) * size / cells


def _cell_of(value: float, size: int, cells: int, axis: str) -> int:
    """The footprint holding ``value`` along one axis (half-open footprints; the frame's far edge belongs to
    the last one)."""
    if not 0 <= value <= size:
        raise FiresHereError(f"{axis} = {value} lies outside the frame (0 .. {size} frame pixels)")
    return min(int(np.searchsorted(_edges(size, cells), value, side="right")) - 1, cells - 1)


def _check_geometry(grid: tuple[int, int], frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    gh, gw = (int(g) for g in grid)
    height, width = (int(s) for s in frame_size)
    if min(gh, gw, height, width) <= 0:
        raise FiresHereError(f"grid {grid} and frame_size {frame_size} must be positive (rows, columns)")
    return gh, gw, height, width


def region_tokens(
    grid: tuple[int, int],
    frame_size: tuple[int, int],
    *,
    token: int | None = None,
    point: tuple[float, float] | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """[gh * gw] bool mask of a region given as exactly one of: a token index; a point ``(x, y)`` in frame
    pixels (the token whose footprint holds it; a point on an edge between footprints goes to the right /
    lower one); a box ``(x0, y0, x1, y1)`` in frame pixels (every token whose footprint overlaps it with
    positive area, the box clipped to the frame; a box of zero area gives the token of its centre)."""
    gh, gw, height, width = _check_geometry(grid, frame_size)
    given = [name for name, value in (("token", token), ("point", point), ("box", box)) if value is not None]
    if len(given) != 1:
        raise FiresHereError(f"give exactly one of token, point or box; got {given or 'none'}")
    mask_t = np.zeros(gh * gw, dtype=bool)
    if token is not None:
        if isinstance(token, bool) or not isinstance(token, int | np.integer) or not 0 <= token < gh * gw:
            raise FiresHereError(
                f"token must be an integer in 0..{gh * gw - 1} ({gh} x {gw} grid), got {token!r}"
            )
        mask_t[int(token)] = True
        return mask_t
    if point is not None:
        x, y = _coordinates(point, 2, "point (x, y)")
        mask_t[_cell_of(y, height, gh, "y") * gw + _cell_of(x, width, gw, "x")] = True
        return mask_t
    x0, y0, x1, y1 = _coordinates(box, 4, "box (x0, y0, x1, y1)")
    if x1 < x0 or y1 < y0:
        raise FiresHereError(f"box {box} must have x0 <= x1 and y0 <= y1")
    if x0 == x1 or y0 == y1:
        return region_tokens(grid, frame_size, point=((x0 + x1) / 2, (y0 + y1) / 2))
    cx0, cx1, cy0, cy1 = max(x0, 0.0), min(x1, float(width)), max(y0, 0.0), min(y1, float(height))
    if cx1 <= cx0 or cy1 <= cy0:
        raise FiresHereError(
            f"box {box} does not overlap the frame (0 .. {width} x 0 .. {height} frame pixels)"
        )
    xe, ye = _edges(width, gw), _edges(height, gh)
    cols = (xe[:-1] < cx1) & (xe[1:] > cx0)
    rows = (ye[:-1] < cy1) & (ye[1:] > cy0)
    return (rows[:, None] & cols[None, :]).reshape(-1)


def _coordinates(values: Sequence[float], count: int, what: str) -> tuple[float, ...]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape != (count,) or not np.isfinite(array).all():
        raise FiresHereError(f"{what} must be {count} finite numbers in frame pixels, got {values!r}")
    return tuple(float(v) for v in array)


def image_entries(codes: TokenCodes, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's code entries: token (0 .. T-1) int64, latent int64 and value float32 arrays [nnz_i]."""
    one = codes.image(i)
    token_e = np.repeat(np.arange(codes.tokens_per_image, dtype=np.int64), np.diff(one.indptr))
    return token_e, np.asarray(one.latent, dtype=np.int64), np.asarray(one.value, dtype=np.float32)


def what_fires_here(
    token_t: np.ndarray,
    latent_t: np.ndarray,
    value_t: np.ndarray,
    region_t: np.ndarray,
    effect_lh: np.ndarray,
    tasks: Sequence[str],
    n_tokens: int,
    top: int | None = None,
    rank_by: str | None = None,
    signed: bool = False,
) -> pd.DataFrame:
    """One row per latent active (value > 0) on at least one token of the region ``region_t`` [n_tokens]:

    - ``mean_in`` / ``max_in``: mean (zeros counted) and max activation over the region's tokens;
    - ``mean_out``: mean over the image's other tokens (NaN when the region is the whole image);
    - ``specificity``: mean_in / mean_out, +inf when the latent is silent outside the region;
    - ``contribution_<task>``: ``sum over region tokens of z_ti effect_lh[i, h] / n_tokens``, the latent's
      part of that head's logit from the region;
    - ``share_<task>``: that contribution over the region's total latent evidence for the head (all active
      latents; the decoder-bias and error terms are left out), NaN when that total is 0.

    Inputs are the image's code entries (``image_entries``). Rows are sorted by ``mean_in`` descending, or,
    with ``rank_by="contribution_<task>"`` (or ``share_<task>`` / any numeric column), by its absolute value
    descending (``signed=True``: by the signed value, most positive first); ties go to the lower latent id.
    ``top`` keeps the first rows. ``attrs``: ``n_in`` (region tokens) and ``region_total_<task>``."""
    tasks = tuple(tasks)
    effect_lh = np.asarray(effect_lh, dtype=np.float64)
    token_e, latent_e = np.asarray(token_t, dtype=np.int64), np.asarray(latent_t, dtype=np.int64)
    value_e = np.asarray(value_t, dtype=np.float64)
    region_t = np.asarray(region_t)
    if effect_lh.ndim != 2 or effect_lh.shape[1] != len(tasks):
        raise FiresHereError(f"effect_lh must be [d_sae, heads = {len(tasks)}], got {effect_lh.shape}")
    if region_t.shape != (n_tokens,) or region_t.dtype != bool:
        raise FiresHereError(
            f"region must be a bool mask over the {n_tokens} tokens, got {region_t.dtype} {region_t.shape}"
        )
    if not (token_e.shape == latent_e.shape == value_e.shape) or token_e.ndim != 1:
        raise FiresHereError(
            "token, latent and value must be 1-D arrays of the same length (one per code entry)"
        )
    d_sae = effect_lh.shape[0]
    if token_e.size and (token_e.min() < 0 or token_e.max() >= n_tokens):
        raise FiresHereError(f"entry tokens must lie in 0..{n_tokens - 1}")
    if latent_e.size and (latent_e.min() < 0 or latent_e.max() >= d_sae):
        raise FiresHereError(f"entry latents must lie in 0..{d_sae - 1} (the SAE's latents)")
    n_in = int(region_t.sum())
    if n_in == 0:
        raise FiresHereError("the region holds no token; give a token, point or box on the image")
    n_out = n_tokens - n_in
    live_e = value_e > 0
    in_e = region_t[token_e] & live_e
    sum_in_l = np.bincount(latent_e[in_e], value_e[in_e], d_sae)
    latent_k = np.flatnonzero(np.bincount(latent_e[in_e], minlength=d_sae))
    out_e = ~region_t[token_e] & live_e
    sum_out_k = np.bincount(latent_e[out_e], value_e[out_e], d_sae)[latent_k]
    max_in_l = np.zeros(d_sae)
    np.maximum.at(max_in_l, latent_e[in_e], value_e[in_e])
    mean_in_k = sum_in_l[latent_k] / n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out_k = sum_out_k / n_out if n_out else np.full(len(latent_k), np.nan)
        specificity_k = np.where(mean_out_k > 0, mean_in_k / mean_out_k, np.inf)
    specificity_k[np.isnan(mean_out_k)] = np.nan
    columns: dict[str, np.ndarray] = {
        "latent": latent_k,
        "mean_in": mean_in_k,
        "max_in": max_in_l[latent_k],
        "mean_out": mean_out_k,
        "specificity": specificity_k,
    }
    contribution_kh = sum_in_l[latent_k, None] * effect_lh[latent_k] / n_tokens
    total_h = contribution_kh.sum(axis=0)
    attrs: dict[str, object] = {"n_in": n_in}
    for h, task in enumerate(tasks):
        columns[f"contribution_{task}"] = contribution_kh[:, h]
    for h, task in enumerate(tasks):
        columns[f"share_{task}"] = contribution_kh[:, h] / total_h[h] if total_h[h] != 0 else np.nan
        attrs[f"region_total_{task}"] = float(total_h[h])
    table = pd.DataFrame(columns)
    key = "mean_in" if rank_by is None else rank_by
    if key not in table.columns or key == "latent":
        raise FiresHereError(
            f"rank_by must name a value column ({', '.join(table.columns[1:])}), got {rank_by!r}"
        )
    values = table[key].to_numpy(dtype=np.float64)
    if rank_by is not None and not signed:
        values = np.abs(values)
    order = np.lexsort((latent_k, -np.nan_to_num(values, nan=-np.inf)))
    table = table.iloc[order if top is None else order[: max(int(top), 0)]].reset_index(drop=True)
    table.attrs.update(attrs)
    return table
