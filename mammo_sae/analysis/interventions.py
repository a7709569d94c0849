"""Latent interventions on the classification heads, computed exactly from per-image mean latents.

Each binary head h is linear after mean pooling and the SAE decoder is affine, so with zbar the mean over an
image's tokens of the SAE latents z and x_hat = z @ W_dec + b_dec:

    logit_h(zbar') = sum_t effect[t, h] * zbar'_t + const[h],  effect = W_dec @ w_h,  const[h] = w_h . b_dec + b_h

An intervention scales the latents, zbar' = zbar * s: keep a set T (s = 1 on T, 0 elsewhere), suppress it
(s = 0 on T, 1 elsewhere) or any per-latent scale. The SAE's reconstruction error seen by head h,
error[n, h] = w_h . (mean x - mean x_hat), can be added back to every intervened logit.

For a concept (e.g. "mass") with latent rankings rank0 / rank1 (best first, for class 0 / class 1) the paper
keeps or suppresses T_k = T_k(0) U T_k(1), the union of the first k of each, for k in PAPER_KS
(None = "all": keep all = the plain SAE reconstruction, suppress all = const only).

heads = HeadLinear.from_weights(("mass", "calcification"), W_dec, b_dec, head_weight_hd, head_bias_h)
logits_nh = shortcut_logits(zbar_nl, heads, scale_vector(d_sae, keep=topk_union(r0, r1, 10, d_sae)))
table = intervention_curves(zbar_nl, heads, [CurveInputs("mass", r0, r1)], {"image": {"mass": y_n}})

All logits are float64; the curves take one pass over zbar (one GEMM against every k-block at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.metrics import auprc_columns, auroc_columns
from mammo_sae.core.page_release import release_pages

PAPER_KS: tuple[int | None, ...] = (0, 1, 5, 10, 50, 100, 250, 500, 1000, 5000, 10000, None)
MODES = ("keep", "suppress")
# Rows of zbar converted to float64 at a time: exact float64 sums without a float64 copy of the whole matrix.
CHUNK_ELEMENTS = 1 << 20


class InterventionError(MammoSaeError):
    """An intervention, ranking, head or label set was given with the wrong shape, ids or names."""


def parse_ks(text: str) -> tuple[int | None, ...]:
    """``paper`` (PAPER_KS) or comma-separated k values, ``all`` meaning every latent."""
    if text == "paper":
        return PAPER_KS
    values: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            values.append(None)
        elif part.isdigit():
            values.append(int(part))
        else:
            raise InterventionError(
                f"k values are 'paper' or comma-separated integers and 'all', got {text!r}"
            )
    return tuple(values)


def k_label(k: int | None) -> str:
    """The label of a top-k size: the number itself, or "all" for None."""
    return "all" if k is None else str(k)


def _float64(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A numpy float64 copy-if-needed of an array or tensor (on the CPU, detached)."""
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float64).numpy()
    return np.asarray(array, dtype=np.float64)


@dataclass(frozen=True)
class HeadLinear:
    """The heads as seen from the SAE's latent space: logits_nh = zbar_nl @ effect_lh + const_h (float64)."""

    tasks: tuple[str, ...]
    effect_lh: (
        np.ndarray
    )  # [d_sae, heads] float64: W_dec @ w_h, a latent's logit change per unit of mean activation
    const_h: np.ndarray  # [heads] float64: w_h . b_dec + b_h, the logit with every latent at zero

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "effect_lh", np.asarray(self.effect_lh, dtype=np.float64))
        object.__setattr__(self, "const_h", np.asarray(self.const_h, dtype=np.float64))
        if self.effect_lh.ndim != 2 or self.const_h.shape != (self.effect_lh.shape[1],):
            raise InterventionError(
                f"effect_lh must be [d_sae, heads] and const_h [heads]; got {self.effect_lh.shape} and "
                f"{self.const_h.shape}"
            )
        if len(self.tasks) != self.n_heads or len(set(self.tasks)) != len(self.tasks):
            raise InterventionError(
                f"tasks must name each of the {self.n_heads} heads once; got {list(self.tasks)}"
            )

    @classmethod
    def from_weights(
        cls,
        tasks: Sequence[str],
        W_dec: np.ndarray | torch.Tensor,
        b_dec: np.ndarray | torch.Tensor,
        head_weight_hd: np.ndarray | torch.Tensor,
        head_bias_h: np.ndarray | torch.Tensor,
    ) -> HeadLinear:
        """Fold the SAE decoder (W_dec [d_sae, d_in], b_dec [d_in]) into linear heads (weight [heads, d_in],
        bias [heads]); computed in float64 so the folded logits match decode-then-classify to rounding."""
        w_dec_ld, b_dec_d = _float64(W_dec), _float64(b_dec)
        weight_hd, bias_h = _float64(head_weight_hd), _float64(head_bias_h)
        if w_dec_ld.ndim != 2 or b_dec_d.shape != (w_dec_ld.shape[1],):
            raise InterventionError(
                f"W_dec must be [d_sae, d_in] and b_dec [d_in]; got {w_dec_ld.shape} and {b_dec_d.shape}"
            )
        if (
            weight_hd.ndim != 2
            or weight_hd.shape[1] != w_dec_ld.shape[1]
            or bias_h.shape != weight_hd.shape[:1]
        ):
            raise InterventionError(
                f"head weights must be [heads, d_in = {w_dec_ld.shape[1]}] and biases [heads]; got "
                f"{weight_hd.shape} and {bias_h.shape} (stack one row per binary head)"
            )
        return cls(tuple(tasks), w_dec_ld @ weight_hd.T, weight_hd @ b_dec_d + bias_h)

    @property
    def d_sae(self) -> int:
        return self.effect_lh.shape[0]

    @property
    def n_heads(self) -> int:
        return self.effect_lh.shape[1]

    def index(self, task: str) -> int:
        """The column of head `task`."""
        if task not in self.tasks:
            raise InterventionError(f"unknown head {task!r}; the heads are {list(self.tasks)}")
        return self.tasks.index(task)


def _latent_ids(ids: Sequence[int] | np.ndarray, d_sae: int, what: str) -> np.ndarray:
    """Latent ids as a 1-D int64 array, each in [0, d_sae)."""
    ids_arr = np.asarray(ids)
    if ids_arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids_arr.ndim != 1 or not np.issubdtype(ids_arr.dtype, np.integer):
        raise InterventionError(
            f"{what} must be a 1-D list of integer latent ids; got {ids_arr.dtype} {ids_arr.shape}"
        )
    bad = ids_arr[(ids_arr < 0) | (ids_arr >= d_sae)]
    if bad.size:
        raise InterventionError(
            f"{what} has latent ids outside [0, {d_sae}): {np.unique(bad)[:10].tolist()}"
            f"{' ...' if np.unique(bad).size > 10 else ''}; use ids of this SAE's {d_sae} latents"
        )
    return ids_arr.astype(np.int64)


def _ranking(rank: np.ndarray, d_sae: int, what: str) -> np.ndarray:
    """A ranking (best first): distinct latent ids in range, as int64."""
    rank_r = _latent_ids(rank, d_sae, what)
    if np.unique(rank_r).size != rank_r.size:
        raise InterventionError(f"{what} repeats latent ids; a ranking lists each latent at most once")
    return rank_r


def _check_k(k: int | None) -> int | None:
    """A top-k size: a non-negative int, or None for "all"."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise InterventionError(f"k must be a non-negative integer or None (= all); got {k!r}")
    return int(k)


def union_entry(rank0: np.ndarray, rank1: np.ndarray, d_sae: int) -> np.ndarray:
    """[d_sae] int64: the smallest k at which each latent enters T_k(0) U T_k(1) (position + 1 in the better of
    the two rankings); latents in neither ranking get d_sae + 1 (they join only at k = all).

    T_k is then exactly {t : entry[t] <= min(k, d_sae)}, which lets one pass serve every k."""
    entry_l = np.full(d_sae, d_sae + 1, dtype=np.int64)
    for what, rank in (("rank0", rank0), ("rank1", rank1)):
        rank_r = _ranking(rank, d_sae, what)
        entry_l[rank_r] = np.minimum(entry_l[rank_r], np.arange(1, rank_r.size + 1))
    return entry_l


def topk_union(rank0: np.ndarray, rank1: np.ndarray, k: int | None, d_sae: int) -> np.ndarray:
    """Sorted int64 latent ids of T_k(0) U T_k(1), the union of the first k of each ranking; k = None: all."""
    k = _check_k(k)
    rank0_r, rank1_r = _ranking(rank0, d_sae, "rank0"), _ranking(rank1, d_sae, "rank1")
    if k is None:
        return np.arange(d_sae, dtype=np.int64)
    return np.union1d(rank0_r[:k], rank1_r[:k]).astype(np.int64)


def scale_vector(
    d_sae: int,
    *,
    keep: Sequence[int] | np.ndarray | None = None,
    suppress: Sequence[int] | np.ndarray | None = None,
    scales: Mapping[int, float] | None = None,
) -> np.ndarray:
    """[d_sae] float32 per-latent scale: keep=latents -> 1 on them, 0 elsewhere; suppress=latents -> 0 on them,
    1 elsewhere; neither -> all 1. `scales` then overrides individual latents (e.g. {12: 2.0} doubles latent 12)."""
    if keep is not None and suppress is not None:
        raise InterventionError("give keep or suppress, not both; combine them yourself with scales={...}")
    scale_l = np.ones(d_sae, dtype=np.float32)
    if keep is not None:
        scale_l[:] = 0
        scale_l[_latent_ids(keep, d_sae, "keep")] = 1
    if suppress is not None:
        scale_l[_latent_ids(suppress, d_sae, "suppress")] = 0
    if scales:
        ids = _latent_ids(np.fromiter(scales.keys(), dtype=np.int64), d_sae, "scales")
        values = np.fromiter(scales.values(), dtype=np.float64)
        if not np.isfinite(values).all():
            raise InterventionError(f"scales must be finite numbers; got {dict(scales)}")
        scale_l[ids] = values
    return scale_l


def _check_zbar(zbar_nl: np.ndarray | torch.Tensor, d_sae: int) -> np.ndarray:
    """Mean latents as a floating numpy array [n, d_sae] (not copied)."""
    if isinstance(zbar_nl, torch.Tensor):
        zbar_nl = zbar_nl.detach().cpu().numpy()
    zbar_nl = np.asarray(zbar_nl)
    if zbar_nl.ndim != 2 or zbar_nl.shape[1] != d_sae or not np.issubdtype(zbar_nl.dtype, np.floating):
        raise InterventionError(
            f"zbar must be floating [n images, d_sae = {d_sae}] (per-image mean latents); got "
            f"{zbar_nl.dtype} {zbar_nl.shape}"
        )
    return zbar_nl


def _check_error(error_nh: np.ndarray | None, n: int, heads: HeadLinear) -> np.ndarray | float:
    """The reconstruction-error logits [n, heads] as float64, or 0.0 when not given."""
    if error_nh is None:
        return 0.0
    error_nh = np.asarray(error_nh, dtype=np.float64)
    if error_nh.shape != (n, heads.n_heads):
        raise InterventionError(
            f"error must be [n images = {n}, heads = {heads.n_heads}] (w_h . (mean x - mean x_hat)); "
            f"got {error_nh.shape}"
        )
    return error_nh


def _matmul64(zbar_nl: np.ndarray, weight_lc: np.ndarray) -> np.ndarray:
    """[n, c] float64 zbar_nl @ weight_lc, converting a few rows of zbar to float64 at a time.

    Exact float64 sums (float32 accumulation over 16k latents drifts by ~1e-7 relative) without a float64 copy
    of the whole matrix; chunks of ~1M elements (8 MiB) stay in cache and run faster than one big conversion.
    A memory-mapped zbar gives its pages back after each chunk, so the pass does not hold the whole file."""
    n, d = zbar_nl.shape
    if zbar_nl.dtype == np.float64:
        return zbar_nl @ weight_lc
    out_nc = np.empty((n, weight_lc.shape[1]), dtype=np.float64)
    rows = max(1, CHUNK_ELEMENTS // max(d, 1))
    for start in range(0, n, rows):
        out_nc[start : start + rows] = zbar_nl[start : start + rows].astype(np.float64) @ weight_lc
        release_pages(zbar_nl)
    return out_nc


def shortcut_logits(
    zbar_nl: np.ndarray,
    heads: HeadLinear,
    scale_l: np.ndarray | None = None,
    error_nh: np.ndarray | None = None,
) -> np.ndarray:
    """[n, heads] float64 logits of the heads on the SAE reconstruction of the latents zbar * scale, plus the
    reconstruction error term when error_nh [n, heads] is given."""
    zbar_nl = _check_zbar(zbar_nl, heads.d_sae)
    effect_lh = heads.effect_lh
    if scale_l is not None:
        scale_l = np.asarray(scale_l, dtype=np.float64)
        if scale_l.shape != (heads.d_sae,):
            raise InterventionError(
                f"scale must be [d_sae = {heads.d_sae}]; got {scale_l.shape} (see scale_vector)"
            )
        effect_lh = effect_lh * scale_l[:, None]
    return _matmul64(zbar_nl, effect_lh) + heads.const_h + _check_error(error_nh, zbar_nl.shape[0], heads)


def contributions(
    zbar_l: np.ndarray, heads: HeadLinear, task: str, scale_l: np.ndarray | None = None
) -> pd.DataFrame:
    """One case: each latent's contribution effect[t, h] * zbar_t (* scale_t) to head `task`'s logit.

    Rows sorted by |contribution| descending (ties by latent id), zero contributions dropped; columns latent,
    zbar, effect, contribution (plus scale, between effect and contribution, when scale_l is given).
    attrs: task, const = const[h]; contribution.sum() + const equals the shortcut logit up to float64 rounding."""
    h = heads.index(task)
    zbar_l = np.asarray(zbar_l)
    if zbar_l.shape != (heads.d_sae,):
        raise InterventionError(
            f"zbar must be one case's mean latents [d_sae = {heads.d_sae}]; got {zbar_l.shape}"
        )
    effect_l = heads.effect_lh[:, h]
    contribution_l = zbar_l.astype(np.float64) * effect_l
    if scale_l is not None:
        scale_l = np.asarray(scale_l, dtype=np.float64)
        if scale_l.shape != (heads.d_sae,):
            raise InterventionError(
                f"scale must be [d_sae = {heads.d_sae}]; got {scale_l.shape} (see scale_vector)"
            )
        contribution_l = contribution_l * scale_l
    latent = np.flatnonzero(contribution_l)
    latent = latent[np.lexsort((latent, -np.abs(contribution_l[latent])))]
    columns: dict[str, np.ndarray] = {
        "latent": latent,
        "zbar": zbar_l[latent].astype(np.float64),
        "effect": effect_l[latent],
    }
    if scale_l is not None:
        columns["scale"] = scale_l[latent]
    columns["contribution"] = contribution_l[latent]
    table = pd.DataFrame(columns)
    table.attrs.update(task=task, const=float(heads.const_h[h]))
    return table


def _check_ks(ks: Sequence[int | None]) -> list[int | None]:
    """Distinct top-k sizes (ints >= 0 or None), in the caller's order."""
    ks = [_check_k(k) for k in ks]
    if len(set(ks)) != len(ks):
        raise InterventionError(f"ks repeats a value: {[k_label(k) for k in ks]}; give each k once")
    return ks


def _effective_k(k: int | None, d_sae: int) -> int:
    """The entry bound of T_k: min(k, d_sae), or d_sae + 1 for all (so unranked latents join only at all)."""
    return d_sae + 1 if k is None else min(k, d_sae)


def curve_logits(
    zbar_nl: np.ndarray,
    heads: HeadLinear,
    entry_l: np.ndarray,
    ks: Sequence[int | None],
    error_nh: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """keep_knh, suppress_knh: float64 logits [len(ks), n, heads] for keeping / suppressing T_k, for every k.

    One pass over zbar: the latents are split into blocks by their entry value (entry <= k1, k1 < entry <= k2,
    ..., with the ks sorted), and ONE float64 GEMM of zbar against a [d_sae, blocks * heads] matrix holding
    effect restricted to each block gives every block's partial logit (no column gathers of zbar). keep_k is
    const plus the blocks up to k; suppress_k is const plus the blocks after k (a suffix sum, so suppress does
    not lose precision to total - keep). Equal to shortcut_logits with the explicit masks up to float64
    rounding (the tests ask for 1e-9 relative)."""
    ks = _check_ks(ks)
    d_sae = heads.d_sae
    zbar_nl = _check_zbar(zbar_nl, d_sae)
    entry_l = np.asarray(entry_l)
    if entry_l.shape != (d_sae,) or (entry_l.size and (entry_l.min() < 1 or entry_l.max() > d_sae + 1)):
        raise InterventionError(
            f"entry must be [d_sae = {d_sae}] with values in [1, d_sae + 1] (see union_entry)"
        )
    bound_k = np.array([_effective_k(k, d_sae) for k in ks], dtype=np.int64)
    bound_b = np.unique(np.append(bound_k, d_sae + 1))
    block_l = np.searchsorted(bound_b, entry_l, side="left")  # bound_b[b - 1] < entry <= bound_b[b]
    n_blocks, n_heads = bound_b.size, heads.n_heads
    blocked_lbh = np.zeros((d_sae, n_blocks, n_heads))
    blocked_lbh[np.arange(d_sae), block_l] = heads.effect_lh
    partial_nbh = _matmul64(zbar_nl, blocked_lbh.reshape(d_sae, n_blocks * n_heads))
    partial_nbh = partial_nbh.reshape(-1, n_blocks, n_heads)
    upto_nbh = np.cumsum(partial_nbh, axis=1)
    after_nbh = np.zeros_like(partial_nbh)
    after_nbh[:, :-1] = np.cumsum(partial_nbh[:, :0:-1], axis=1)[:, ::-1]
    at_k = np.searchsorted(bound_b, bound_k)
    offset_nh = heads.const_h + _check_error(error_nh, zbar_nl.shape[0], heads)
    keep_knh = np.ascontiguousarray(np.moveaxis(upto_nbh[:, at_k], 1, 0)) + offset_nh
    suppress_knh = np.ascontiguousarray(np.moveaxis(after_nbh[:, at_k], 1, 0)) + offset_nh
    return keep_knh, suppress_knh


@dataclass(frozen=True)
class CurveInputs:
    """What one curve family needs: a concept name and its two latent rankings (best first)."""

    concept: str
    rank0: np.ndarray  # latents ranked for class 0 (concept absent)
    rank1: np.ndarray  # latents ranked for class 1 (concept present)


CURVE_COLUMNS = (
    "concept",
    "unit",
    "head",
    "mode",
    "k",
    "k_label",
    "n_latents",
    "n",
    "n_pos",
    "auroc",
    "auprc",
)


def _unit_positions(
    labels: Mapping[str, Mapping[str, np.ndarray]], units: Mapping[str, np.ndarray] | None, n: int
) -> dict[str, np.ndarray]:
    """unit -> int64 image positions for every unit in labels ("image" defaults to every image once)."""
    positions = {"image": np.arange(n, dtype=np.int64)}
    for unit, pos in (units or {}).items():
        pos_u = np.asarray(pos)
        if pos_u.ndim != 1 or (pos_u.size and not np.issubdtype(pos_u.dtype, np.integer)):
            raise InterventionError(f"units[{unit!r}] must be a 1-D integer array of image positions")
        if pos_u.size and (pos_u.min() < 0 or pos_u.max() >= n):
            raise InterventionError(
                f"units[{unit!r}] has image positions outside [0, {n}); zbar has {n} rows"
            )
        positions[unit] = pos_u.astype(np.int64)
    for unit, task_labels in labels.items():
        if unit not in positions:
            raise InterventionError(
                f"labels are given for unit {unit!r} but units only defines {sorted(positions)}; "
                f"pass units={{{unit!r}: image positions}}"
            )
        for task, y in task_labels.items():
            if np.shape(y) != positions[unit].shape:
                raise InterventionError(
                    f"labels[{unit!r}][{task!r}] has shape {np.shape(y)}; unit {unit!r} has "
                    f"{positions[unit].size} rows"
                )
    return positions


def intervention_curves(
    zbar_nl: np.ndarray,
    heads: HeadLinear,
    rankings: Sequence[CurveInputs],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    ks: Sequence[int | None] = PAPER_KS,
    error_nh: np.ndarray | None = None,
    units: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Long table of AUROC / AUPRC after keeping or suppressing T_k, for every concept, unit, head, mode and k.

    labels: unit -> task -> 0/1 labels [rows of that unit]; only the heads named there are evaluated.
    units: unit -> image position of each of its rows (into zbar's n images), e.g. {"row": pos} to score each
    finding-CSV row as the paper does; "image" defaults to every image once (units may override it).
    Columns: concept, unit, head, mode ("keep" / "suppress"), k (pandas Int64, <NA> for "all"), k_label,
    n_latents (|T_k|), n (rows scored), n_pos, auroc, auprc. Rows follow rankings, labels and ks order.
    Baselines (the original model, the plain reconstruction) are the caller's to add."""
    ks = _check_ks(ks)
    zbar_nl = _check_zbar(zbar_nl, heads.d_sae)
    positions = _unit_positions(labels, units, zbar_nl.shape[0])
    concepts = [curve.concept for curve in rankings]
    if len(set(concepts)) != len(concepts):
        raise InterventionError(f"rankings repeat a concept: {concepts}; give each concept once")
    for task_labels in labels.values():
        for task in task_labels:
            heads.index(task)
    columns: dict[str, list] = {name: [] for name in CURVE_COLUMNS}
    for curve in rankings:
        entry_l = union_entry(curve.rank0, curve.rank1, heads.d_sae)
        entry_sorted = np.sort(entry_l)
        n_latents_k = [int(np.searchsorted(entry_sorted, _effective_k(k, heads.d_sae), "right")) for k in ks]
        keep_knh, suppress_knh = curve_logits(zbar_nl, heads, entry_l, ks, error_nh)
        for unit, task_labels in labels.items():
            pos_u = positions[unit]
            for task, y in task_labels.items():
                h = heads.index(task)
                y_u = np.asarray(y)
                scores_um = np.concatenate([keep_knh[:, pos_u, h].T, suppress_knh[:, pos_u, h].T], axis=1)
                count = 2 * len(ks)
                columns["concept"] += [curve.concept] * count
                columns["unit"] += [unit] * count
                columns["head"] += [task] * count
                columns["mode"] += [mode for mode in MODES for _ in ks]
                columns["k"] += [pd.NA if k is None else k for _ in MODES for k in ks]
                columns["k_label"] += [k_label(k) for _ in MODES for k in ks]
                columns["n_latents"] += n_latents_k * 2
                columns["n"] += [pos_u.size] * count
                columns["n_pos"] += [int(np.sum(y_u == 1))] * count
                columns["auroc"] += auroc_columns(y_u, scores_um).tolist()
                columns["auprc"] += auprc_columns(y_u, scores_um).tolist()
    integer = {"n_latents": "int64", "n": "int64", "n_pos": "int64"}
    return pd.DataFrame(columns).astype({"k": "Int64", **integer, "auroc": "float64", "auprc": "float64"})
