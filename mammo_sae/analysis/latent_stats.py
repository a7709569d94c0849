"""Per-latent activation statistics and histograms of a split's sparse codes, in one streaming pass each.

Both walk the codes a chunk of images at a time and reduce with ``np.bincount``, so memory stays bounded by
the chunk (never a dense [tokens, d_sae] block) and the cost is linear in the number of non-zero entries. A
chunk holds at most ``chunk_images`` images and ``max_entries`` entries (one image at least), and the pages
of memory-mapped codes are released after each, so peak memory does not grow with the split.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from mammo_sae.analysis.codes import CodesError, TokenCodes

MAX_ENTRIES = 1 << 20  # code entries per chunk: ~35 bytes of temporaries each, ~40 MB in all


def _chunks(codes: TokenCodes, chunk_images: int, max_entries: int) -> Iterator[TokenCodes]:
    """Consecutive image ranges within both budgets; memory-mapped pages are released after each."""
    if chunk_images < 1 or max_entries < 1:
        raise CodesError(f"chunk_images and max_entries must be >= 1, got {chunk_images}, {max_entries}")
    if codes.n_images == 0:
        raise CodesError("the codes hold no images; nothing to summarise")
    first_entry = np.asarray(codes.indptr[:: codes.tokens_per_image], dtype=np.int64)  # [n_images + 1]
    start = 0
    while start < codes.n_images:
        fits = int(np.searchsorted(first_entry, first_entry[start] + max_entries, side="right")) - 1
        stop = min(start + chunk_images, max(fits, start + 1))
        yield codes.images(start, stop)
        codes.release()
        start = stop


def latent_summary(
    codes: TokenCodes, chunk_images: int = 256, max_entries: int = MAX_ENTRIES
) -> pd.DataFrame:
    """Per latent (index = latent id 0..d_sae-1): frequency (fraction of all tokens where it fired), images
    (fraction of images where it fired on >= 1 token), mean (mean over ALL tokens), mean_active (mean over
    tokens where it fired; 0 when never), max (0 when never)."""
    d = codes.d_sae
    count_l = np.zeros(d, dtype=np.int64)
    images_l = np.zeros(d, dtype=np.int64)
    sum_l = np.zeros(d, dtype=np.float64)
    max_l = np.zeros(d, dtype=np.float32)
    for part in _chunks(codes, chunk_images, max_entries):
        latent_e = part.latent.astype(np.int64)
        value_e = part.value.astype(np.float32)
        count_l += np.bincount(latent_e, minlength=d)
        sum_l += np.bincount(latent_e, weights=value_e, minlength=d)
        np.maximum.at(max_l, latent_e, value_e)
        fired_il = np.zeros((part.n_images, d), dtype=bool)  # one flag per (image, latent) pair
        fired_il[part.entry_rows() // codes.tokens_per_image, latent_e] = True
        images_l += fired_il.sum(axis=0)
    n_tokens = codes.n_images * codes.tokens_per_image
    frame = pd.DataFrame(
        {
            "frequency": count_l / n_tokens,
            "images": images_l / codes.n_images,
            "mean": sum_l / n_tokens,
            "mean_active": np.divide(sum_l, count_l, out=np.zeros(d), where=count_l > 0),
            "max": max_l,
        },
        index=pd.RangeIndex(d, name="latent"),
    )
    return frame


def latent_histograms(
    codes: TokenCodes,
    maxima: np.ndarray,
    bins: int = 32,
    chunk_images: int = 256,
    max_entries: int = MAX_ENTRIES,
) -> np.ndarray:
    """[d_sae, bins] int64 counts of each latent's non-zero activations in ``bins`` equal bins over
    (0, max_l] (value == max falls in the last bin). ``maxima`` is ``latent_summary(codes)["max"]``, or any
    bound at least as large; a value above its latent's bound is an error."""
    d = codes.d_sae
    maxima_l = np.asarray(maxima, dtype=np.float64).reshape(-1)
    if len(maxima_l) != d or bins < 1:
        raise CodesError(f"latent_histograms needs {d} maxima and bins >= 1, got {len(maxima_l)} and {bins}")
    counts = np.zeros(d * bins, dtype=np.int64)
    for part in _chunks(codes, chunk_images, max_entries):
        latent_e = part.latent.astype(np.int64)
        value_e = part.value.astype(np.float64)
        max_e = maxima_l[latent_e]
        if (value_e > max_e).any():
            worst = int(latent_e[np.argmax(value_e - max_e)])
            raise CodesError(
                f"latent {worst} has a value above its maximum {maxima_l[worst]}; "
                "pass latent_summary(codes)['max'] as maxima"
            )
        bin_e = np.minimum((value_e * bins / max_e).astype(np.int64), bins - 1)
        counts += np.bincount(latent_e * bins + bin_e, minlength=d * bins)
    return counts.reshape(d, bins)
