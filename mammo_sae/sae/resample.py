"""Dead-latent resampling, Anthropic style (the Mammo-SAE recipe for the relu SAE).

Every N epochs: score ``resample_inputs`` training tokens by their squared reconstruction error; for each
dead latent draw one token with probability proportional to the square of that error; the latent's
decoder row becomes the token's direction (unit norm), its encoder column the same direction scaled to
0.2 x the mean encoder norm of the alive latents, its encoder bias 0; Adam's moments of those rows and
columns are reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mammo_sae.store import StoreReader

ENCODER_NORM_FACTOR = 0.2

# (parameter name, axis that indexes latents) for every parameter with a per-latent slice
LATENT_AXES = (("W_enc", 1), ("b_enc", 0), ("W_dec", 0))


def sample_tokens(
    reader: StoreReader, shards: Sequence[int], n: int, seed: Any, tokens: np.ndarray | None = None
) -> np.ndarray:
    """``min(n, tokens)`` distinct tokens of ``shards`` (only of ``tokens``, global token numbers, if
    given) drawn uniformly as float32 [n, d], read shard by shard in file order; deterministic for
    ``seed`` (anything ``numpy.random.default_rng`` takes)."""
    rng = np.random.default_rng(seed)
    if tokens is not None:
        n = min(int(n), len(tokens))
        chosen_n = tokens[np.sort(rng.choice(len(tokens), size=n, replace=False))]
        shard_of_n = np.searchsorted(reader.shard_offsets, chosen_n, side="right") - 1
        x_nd = np.empty((n, reader.d), dtype=np.float32)
        for k in np.unique(shard_of_n):
            rows = np.flatnonzero(shard_of_n == k)
            x_nd[rows] = reader.shard_features(int(k))[chosen_n[rows] - reader.shard_offsets[k]]
        return x_nd
    sizes = np.array([int(reader.shard_token_counts[k]) for k in shards], dtype=np.int64)
    total = int(sizes.sum())
    n = min(int(n), total)
    chosen_n = np.sort(rng.choice(total, size=n, replace=False))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    x_nd = np.empty((n, reader.d), dtype=np.float32)
    position_n = np.searchsorted(bounds, chosen_n, side="right") - 1
    for i, k in enumerate(shards):
        rows = np.flatnonzero(position_n == i)
        if rows.size:
            x_nd[rows] = reader.shard_features(int(k))[chosen_n[rows] - bounds[i]]
    return x_nd


@torch.no_grad()
def squared_errors(sae: Any, x_nd: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-token ||x - x_hat||^2 [n] (float64), in chunks of ``batch_size``."""
    out = []
    for start in range(0, len(x_nd), batch_size):
        x_bd = x_nd[start : start + batch_size]
        x_hat_bd, _ = sae(x_bd)
        out.append(((x_hat_bd - x_bd).double() ** 2).sum(dim=1))
    return torch.cat(out)


@torch.no_grad()
def resample_dead_latents(
    sae: Any,
    optimizer: torch.optim.Optimizer,
    dead: torch.Tensor,
    x_nd: torch.Tensor,
    *,
    generator: torch.Generator,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Re-initialise the latents in ``dead`` (indices) from the high-loss tokens of ``x_nd`` [n, d_in]
    (training space)."""
    dead = dead.to(sae.W_dec.device).long()
    assert x_nd.dim() == 2 and x_nd.shape[1] == sae.W_enc.shape[0], tuple(x_nd.shape)
    report = {"resampled": int(dead.numel()), "candidates": len(x_nd)}
    if not dead.numel():
        return report
    loss_n = squared_errors(sae, x_nd, batch_size)
    weights_n = loss_n**2
    if not torch.isfinite(weights_n).all() or float(weights_n.sum()) <= 0:
        weights_n = torch.ones_like(weights_n)  # a perfect (or broken) reconstruction: draw uniformly
    n_positive = int((weights_n > 0).sum())
    picks = torch.multinomial(
        weights_n.cpu(), dead.numel(), replacement=dead.numel() > n_positive, generator=generator
    ).to(x_nd.device)
    alive_s = torch.ones(sae.W_enc.shape[1], dtype=torch.bool, device=dead.device)
    alive_s[dead] = False
    norms_s = sae.W_enc.norm(dim=0)
    reference = norms_s[alive_s].mean() if bool(alive_s.any()) else norms_s.mean()
    encoder_norm = float(ENCODER_NORM_FACTOR * reference)
    sae.reinit_latents(dead, x_nd[picks], encoder_norm)
    reset_adam_rows(sae, optimizer, dead)
    report.update({"encoder_norm": encoder_norm, "mean_picked_loss": float(loss_n[picks].mean())})
    return report


def reset_adam_rows(sae: Any, optimizer: torch.optim.Optimizer, latents: torch.Tensor) -> None:
    """Zero Adam's first and second moments of the given latents' encoder columns, encoder biases and
    decoder rows (the step counter is per tensor and stays)."""
    for name, axis in LATENT_AXES:
        state = optimizer.state.get(getattr(sae, name), {})
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in state:
                state[key].index_fill_(axis, latents.to(state[key].device), 0.0)


def make_generator(seed: int, round_number: int) -> torch.Generator:
    """The generator of resampling round ``round_number`` (a pure function of the seed and the round)."""
    mixed = np.random.default_rng([seed, 7, round_number]).integers(0, 2**62)
    return torch.Generator().manual_seed(int(mixed))
