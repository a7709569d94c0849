"""Two measures of an SAE's dictionary for the SAE evaluation (issue 21): how spatially coherent a latent's
token map is (Moran's I) and how far two dictionaries trained with other seeds agree (the mean best-match
cosine of their decoder rows, PW-MCC style). Pure numpy.

    morans_i(map_hw)                        # +1 smooth, 0 random, -1 a checkerboard
    best_match_cosine(dec_a_sd, dec_b_sd)   # per row of a: its best |cosine| with a row of b
    latent_coherence(codes, latents, images) # per latent: median Moran's I of its maps
    matched_latents(dec_a, dec_b, top10)     # how many of a concept's top latents another seed has too
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.core.errors import MammoSaeError


class DictionaryMetricError(MammoSaeError):
    """A map or dictionary of the wrong shape, or one that defines no value."""


def morans_i(map_hw: np.ndarray) -> float:
    """Moran's I of a 2-D map over rook (4-neighbour) adjacency with unit weights:

        I = (N / W) * sum_{i~j} (x_i - m)(x_j - m) / sum_i (x_i - m)^2

    (each adjacent pair counted in both directions, W their count). NaN for a constant map."""
    x_hw = np.asarray(map_hw, dtype=np.float64)
    if x_hw.ndim != 2 or min(x_hw.shape) < 1 or x_hw.size < 2:
        raise DictionaryMetricError(f"Moran's I needs a 2-D map of 2 or more cells, got shape {x_hw.shape}")
    centred = x_hw - x_hw.mean()
    denominator = float(np.sum(centred * centred))
    if denominator == 0.0:
        return float("nan")
    cross = 2.0 * (np.sum(centred[:, 1:] * centred[:, :-1]) + np.sum(centred[1:, :] * centred[:-1, :]))
    pairs = 2.0 * (x_hw.shape[0] * (x_hw.shape[1] - 1) + (x_hw.shape[0] - 1) * x_hw.shape[1])
    return float(x_hw.size / pairs * cross / denominator)


def _unit_rows(dec_sd: np.ndarray, name: str) -> np.ndarray:
    dec = np.asarray(dec_sd, dtype=np.float64)
    if dec.ndim != 2 or dec.shape[0] == 0:
        raise DictionaryMetricError(f"{name} must be a [latents, features] matrix, got shape {dec.shape}")
    norms = np.linalg.norm(dec, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise DictionaryMetricError(f"{name} has an all-zero decoder row: it has no direction to match")
    return dec / norms


def best_match_cosine(dec_a_sd: np.ndarray, dec_b_sd: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each decoder row of ``a``, its largest absolute cosine with any row of ``b`` ([rows of a]);
    computed in chunks of ``a`` (16,384 x 16,384 latents never need the whole matrix at once)."""
    a, b = _unit_rows(dec_a_sd, "dec_a"), _unit_rows(dec_b_sd, "dec_b")
    if a.shape[1] != b.shape[1]:
        raise DictionaryMetricError(
            f"the dictionaries have {a.shape[1]} and {b.shape[1]} features: not comparable"
        )
    out = np.empty(a.shape[0])
    for start in range(0, a.shape[0], chunk):
        out[start : start + chunk] = np.abs(a[start : start + chunk] @ b.T).max(axis=1)
    return out


def mean_best_match(dec_a_sd: np.ndarray, dec_b_sd: np.ndarray) -> float:
    """PW-MCC style agreement of two dictionaries: the mean best-match |cosine|, symmetrised (a->b and b->a)."""
    return float(
        (best_match_cosine(dec_a_sd, dec_b_sd).mean() + best_match_cosine(dec_b_sd, dec_a_sd).mean()) / 2
    )


def latent_coherence(codes: TokenCodes, latents: Sequence[int], images: Sequence[int]) -> np.ndarray:
    """Per latent: the median Moran's I of its token map over the given images where it fires on more than
    one token and not on all of them (NaN where no image qualifies). A concept that lies on a region (a
    mass, the pectoral muscle) scores near +1; one scattered over isolated tokens near 0."""
    out = np.full(len(latents), np.nan)
    values: list[list[float]] = [[] for _ in latents]
    for i in images:
        maps_khw = codes.image_latent_maps(int(i), latents)
        for k, map_hw in enumerate(maps_khw):
            fired = int(np.count_nonzero(map_hw))
            if 1 < fired < map_hw.size:
                values[k].append(morans_i(map_hw))
    for k, found in enumerate(values):
        if found:
            out[k] = float(np.median(found))
    return out


def matched_latents(
    dec_a_sd: np.ndarray, dec_b_sd: np.ndarray, latents: Sequence[int], threshold: float = 0.9
) -> int:
    """How many of ``latents`` (rows of ``a``, e.g. a concept's top 10) have a row of ``b`` within
    |cosine| >= ``threshold``: the seed-stable ones."""
    rows = np.asarray(latents, dtype=np.int64)
    return int(np.sum(best_match_cosine(np.asarray(dec_a_sd)[rows], dec_b_sd) >= threshold))
