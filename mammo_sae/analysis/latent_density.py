"""How often each latent fires, across the whole dictionary: the firing-frequency density on a log axis
and the dead and dense latents, with the thresholds that define them.

A latent is **dead** when it fires on no token of the analysed split (it cannot be shown on a log axis, so
it is counted beside the plot) and **dense** when it fires on more than ``DENSE_THRESHOLD`` of the tokens
(SAELens and the sparse-autoencoder literature use 10%): a dense latent is a bias in disguise, rarely a
concept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mammo_sae.core.errors import MammoSaeError

DENSE_THRESHOLD = 0.1  # fraction of tokens
BINS_PER_DECADE = 5


def _frequencies(frequency_l: np.ndarray) -> np.ndarray:
    frequency_l = np.asarray(frequency_l, dtype=np.float64).reshape(-1)
    if not len(frequency_l) or not np.isfinite(frequency_l).all() or (frequency_l < 0).any():
        raise MammoSaeError(
            "firing frequencies must be finite fractions >= 0, one per latent; rebuild the bundle's latent table"
        )
    return frequency_l


def firing_density(frequency_l: np.ndarray, bins_per_decade: int = BINS_PER_DECADE) -> pd.DataFrame:
    """The live latents binned by firing frequency on log-spaced bins (whole decades at the ends): columns
    from, to (fractions of tokens) and latents (how many fall in the bin). Empty when every latent is dead."""
    assert bins_per_decade >= 1
    live_l = _frequencies(frequency_l)
    live_l = live_l[live_l > 0]
    if not len(live_l):
        return pd.DataFrame({"from": [], "to": [], "latents": []})
    low, high = np.floor(np.log10(live_l.min())), np.ceil(np.log10(live_l.max()))
    high = max(high, low + 1)
    edges = 10 ** np.linspace(low, high, round(float(high - low) * bins_per_decade) + 1)
    counts, _ = np.histogram(np.clip(live_l, edges[0], edges[-1]), bins=edges)
    return pd.DataFrame({"from": edges[:-1], "to": edges[1:], "latents": counts.astype(np.int64)})


def dead_and_dense(
    frequency_l: np.ndarray, dense_threshold: float = DENSE_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(dead latent ids, dense latent ids): firing on no token, and on more than ``dense_threshold`` of the
    tokens; each sorted (dense ones most frequent first)."""
    assert 0 < dense_threshold < 1
    frequency_l = _frequencies(frequency_l)
    dead = np.flatnonzero(frequency_l == 0)
    dense = np.flatnonzero(frequency_l > dense_threshold)
    return dead, dense[np.argsort(-frequency_l[dense], kind="stable")]
