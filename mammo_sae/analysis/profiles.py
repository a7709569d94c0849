"""Every latent's location profile over an analysed split, its token-level AP against each finding
category's boxes, and the artefact / lesion flags drawn from them.

    labels_nt = regions.split_regions(...)                    # uint8 [n_images, T]
    profile = location_profiles(codes, labels_nt, names)      # share_<region> + activation_mass per latent
    ap_l = token_ap(codes, labels_nt, names.index("box:mass"))
    flags = latent_flags(latents, categories, n_box_images)   # "off_breast,marker,lesion:mass" or ""

A profile is a share of activation mass (the sum of a latent's values), so it adds up to one over the
regions of a latent that fires at all. All passes stream over the codes and give back memory-mapped
pages every RELEASE_EVERY images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.peaks import RELEASE_EVERY
from mammo_sae.analysis.regions import MARKER, OFF_BREAST
from mammo_sae.core.errors import MammoSaeError

CHUNK_IMAGES = 64  # images whose entries are gathered at a time
VALUE_BITS = 15  # a positive float16's bit pattern fits 15 bits and orders as its value does
FLAG_OFF_BREAST, FLAG_MARKER, LESION_PREFIX = "off_breast", "marker", "lesion:"


class ProfileError(MammoSaeError):
    """Region labels do not fit the codes, or flag thresholds are out of range."""


def region_column(name: str) -> str:
    """The latents.parquet column of a region's activation share: "box:mass" -> "share_box_mass"."""
    return "share_" + name.replace(":", "_")


def _check_labels(codes: TokenCodes, labels_nt: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    labels_nt = np.asarray(labels_nt)
    want = (codes.n_images, codes.tokens_per_image)
    if labels_nt.shape != want or not np.issubdtype(labels_nt.dtype, np.integer):
        raise ProfileError(
            f"region labels must be integer [n_images, T] = {list(want)} to fit the codes, "
            f"got {labels_nt.dtype} {list(labels_nt.shape)}"
        )
    if n_labels is not None and labels_nt.size and (labels_nt.min() < 0 or labels_nt.max() >= n_labels):
        raise ProfileError(
            f"region labels run {labels_nt.min()}..{labels_nt.max()} but only {n_labels} region names are "
            "given; pass region_names(categories) of the run that made the labels"
        )
    return labels_nt.reshape(-1)


def _chunks(codes: TokenCodes):
    """(first token row, codes of a chunk of images), releasing resident pages every RELEASE_EVERY images."""
    released = 0
    for start in range(0, codes.n_images, CHUNK_IMAGES):
        if start - released >= RELEASE_EVERY:
            codes.release()
            released = start
        yield start * codes.tokens_per_image, codes.images(start, min(start + CHUNK_IMAGES, codes.n_images))
    codes.release()


def location_profiles(codes: TokenCodes, labels_nt: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Per latent (index 0..d_sae-1): ``share_<region>`` (the share of its activation mass over the split
    that lies on tokens of each region, NaN for a latent that never fires) and ``activation_mass``."""
    names = tuple(names)
    n_regions = len(names)
    labels_r = _check_labels(codes, labels_nt, n_regions)
    mass_lr = np.zeros(codes.d_sae * n_regions, dtype=np.float64)
    for first_row, part in _chunks(codes):
        label_e = labels_r[first_row + part.entry_rows()].astype(np.int64)
        key_e = part.latent.astype(np.int64) * n_regions + label_e
        mass_lr += np.bincount(key_e, weights=part.value.astype(np.float64), minlength=len(mass_lr))
    mass_lr = mass_lr.reshape(codes.d_sae, n_regions)
    mass_l = mass_lr.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_lr = np.where(mass_l[:, None] > 0, mass_lr / mass_l[:, None], np.nan)
    out = pd.DataFrame(share_lr, columns=[region_column(n) for n in names])
    out["activation_mass"] = mass_l
    out.index.name = "latent"
    return out


def token_aps(codes: TokenCodes, labels_nt: np.ndarray, box_labels: Sequence[int]) -> np.ndarray:
    """float64 [len(box_labels), d_sae]: per latent, the average precision of its activations as a detector
    of each label's tokens over the split (:func:`token_ap`), from one sort of all entries."""
    box_labels = [int(b) for b in box_labels]
    labels_r = _check_labels(codes, labels_nt)
    shift = np.uint64(VALUE_BITS)
    key_dtype = np.uint32 if codes.d_sae <= 1 << (32 - VALUE_BITS) else np.uint64
    keys_e = np.empty(codes.nnz, dtype=key_dtype)
    positives: list[list[np.ndarray]] = [[] for _ in box_labels]
    n_pos = np.array([int((labels_r == b).sum()) for b in box_labels], dtype=np.int64)
    for first_row, part in _chunks(codes):
        lo = int(codes.indptr[first_row])
        inverted = (1 << VALUE_BITS) - 1 - part.value.view(np.uint16).astype(np.uint64)
        key = (part.latent.astype(np.uint64) << shift) | inverted  # latent up, then value down
        keys_e[lo : lo + part.nnz] = key
        label_e = labels_r[first_row + part.entry_rows()]
        for j, b in enumerate(box_labels):
            positives[j].append(key[label_e == b])
    keys_e.sort()
    out = np.full((len(box_labels), codes.d_sae), np.nan)
    for j in range(len(box_labels)):
        if n_pos[j] == 0:
            continue
        pos_k = np.sort(np.concatenate(positives[j])).astype(key_dtype)
        latent_k = (pos_k >> key_dtype(VALUE_BITS)).astype(np.int64)
        start_k = (latent_k.astype(np.uint64) << shift).astype(key_dtype)
        # entries of the same latent at least as strong as each positive: all of them, and the positive ones
        n_all = np.searchsorted(keys_e, pos_k, side="right") - np.searchsorted(keys_e, start_k, side="left")
        n_hit = np.searchsorted(pos_k, pos_k, side="right") - np.searchsorted(pos_k, start_k, side="left")
        precision_k = n_hit / n_all
        out[j] = np.bincount(latent_k, weights=precision_k, minlength=codes.d_sae) / n_pos[j]
    return out


def token_ap(codes: TokenCodes, labels_nt: np.ndarray, box_label: int) -> np.ndarray:
    """float64 [d_sae]: per latent, the average precision of its activation values as a detector of the
    tokens labelled ``box_label`` over the split. Its active tokens are ranked by value (tied values share a
    threshold, as scikit-learn's average_precision_score takes them); the positives are every token of the
    split with that label, so a latent silent on some of them has its recall capped. NaN when the split has
    no such token; 0 for a latent that fires on none of them."""
    return token_aps(codes, labels_nt, [box_label])[0]


# --- flags ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagThresholds:
    """When a latent is flagged (shares of activation mass, and pointing rates with their support)."""

    #: off_breast: share of its activation mass on background + border tokens at least this
    off_breast: float = 0.5
    #: marker (share rule): share of its activation mass on marker tokens at least this
    marker: float = 0.5
    #: lesion:<category> (and the marker pointing rule): share of its peaks inside the kind's boxes
    #: (``peak_in_<kind>`` of latents.parquet) at least this
    lesion_pointing: float = 0.5
    #: a pointing flag needs the latent to fire on at least max(min_support, min_support_fraction x the
    #: number of images with boxes of that kind) of those images (``fired_<kind>``)
    min_support: int = 3
    min_support_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("off_breast", "marker", "lesion_pointing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ProfileError(f"FlagThresholds.{name} must be a fraction in (0, 1], got {value!r}")
        support = self.min_support
        if isinstance(support, bool) or not isinstance(support, (int, np.integer)) or support < 1:
            raise ProfileError(f"FlagThresholds.min_support must be an integer >= 1, got {support!r}")
        fraction = self.min_support_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ProfileError(
                f"FlagThresholds.min_support_fraction must be a fraction in [0, 1], got {fraction!r}"
            )

    def support(self, n_box_images: int) -> int:
        """Images a latent must fire on, among ``n_box_images`` holding boxes of a kind."""
        needed = math.ceil(round(self.min_support_fraction * int(n_box_images), 9))
        return max(int(self.min_support), needed)


def _share(latents: pd.DataFrame, names: Sequence[str]) -> pd.Series | None:
    columns = [region_column(n) for n in names]
    if not set(columns) <= set(latents):
        return None
    return latents[columns].sum(axis=1, min_count=len(columns))


def _pointing(latents: pd.DataFrame, kind: str, n_images: int, thresholds: FlagThresholds) -> pd.Series:
    rate, fired = f"peak_in_{kind}", f"fired_{kind}"
    if rate not in latents or fired not in latents:
        return pd.Series(False, index=latents.index)
    return (latents[rate] >= thresholds.lesion_pointing) & (latents[fired] >= thresholds.support(n_images))


def flag_rules(
    latents: pd.DataFrame,
    categories: Sequence[str],
    n_box_images: Mapping[str, int],
    thresholds: FlagThresholds | None = None,
) -> pd.DataFrame:
    """Each flag condition as its own bool column: ``off_breast``, ``marker_share`` (activation mass on
    marker tokens), ``marker_pointing`` (peaks in truth marker boxes, with support) and ``lesion:<c>``
    per category. A condition whose columns are missing (no profile, no boxes of the kind) is False."""
    thresholds = FlagThresholds() if thresholds is None else thresholds
    false = pd.Series(False, index=latents.index)
    off = _share(latents, OFF_BREAST)
    marker = _share(latents, (MARKER,))
    rules = {
        FLAG_OFF_BREAST: false if off is None else off >= thresholds.off_breast,
        "marker_share": false if marker is None else marker >= thresholds.marker,
        "marker_pointing": _pointing(latents, MARKER, n_box_images.get(MARKER, 0), thresholds),
    }
    for c in categories:
        rules[LESION_PREFIX + c] = _pointing(latents, c, n_box_images.get(c, 0), thresholds)
    return pd.DataFrame({k: v.fillna(False).astype(bool) for k, v in rules.items()}, index=latents.index)


def latent_flags(
    latents: pd.DataFrame,
    categories: Sequence[str],
    n_box_images: Mapping[str, int],
    thresholds: FlagThresholds | None = None,
) -> pd.Series:
    """Per latent, its flags comma-separated in a stable order: ``off_breast``, ``marker`` (share rule OR
    pointing rule, :func:`flag_rules`), ``lesion:<category>`` in category order; "" for none.

    ``latents`` holds the ``share_<region>`` columns of :func:`location_profiles` and the ``peak_in_<kind>``
    / ``fired_<kind>`` columns of the pointing screen; ``n_box_images``: images with boxes of each kind."""
    rules = flag_rules(latents, categories, n_box_images, thresholds)
    flags = pd.DataFrame(
        {
            FLAG_OFF_BREAST: rules[FLAG_OFF_BREAST],
            FLAG_MARKER: rules["marker_share"] | rules["marker_pointing"],
            **{LESION_PREFIX + c: rules[LESION_PREFIX + c] for c in categories},
        }
    )
    names = np.array(flags.columns, dtype=object)
    on_lf = flags.to_numpy(dtype=bool)
    joined = [",".join(names[row]) for row in on_lf]
    return pd.Series(joined, index=latents.index, name="flags", dtype=object)
