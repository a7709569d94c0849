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


def sample_tokens(reader: StoreReader, shards: Sequence[int], n: int, seed: Any) -> np.ndarray:
    """``min(n, tokens)`` distinct tokens of ``shards`` drawn uniformly (float32, (n, d)), read shard by
    shard in file order; deterministic for ``seed`` (anything ``numpy.random.default_rng`` takes)."""
    sizes = np.array([int(reader.shard_token_counts[k]) for k in shards], dtype=np.int64)
    total = int(sizes.sum())
    n = min(int(n), total)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty((n, reader.d), dtype=np.float32)
    position = np.searchsorted(bounds, chosen, side="right") - 1
    for i, k in enumerate(shards):
        rows = np.flatnonzero(position == i)
        if rows.size:
            out[rows] = reader.shard_features(int(k))[chosen[rows] - bounds[i]]
    return out


@torch.no_grad()
def squared_errors(sae: Any, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-token ||x - x_hat||^2 (float64), in chunks of ``batch_size``."""
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        x_hat, _ = sae(chunk)
        out.append(((x_hat - chunk).double() ** 2).sum(dim=1))
    return torch.cat(out)


@torch.no_grad()
def resample_dead_latents(
    sae: Any,
    optimizer: torch.optim.Optimizer,
    dead: torch.Tensor,
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Re-initialise the latents in ``dead`` (indices) from the high-loss tokens of ``x`` (training space)."""
    dead = dead.to(sae.W_dec.device).long()
    report = {"resampled": int(dead.numel()), "candidates": len(x)}
    if not dead.numel():
        return report
    loss = squared_errors(sae, x, batch_size)
    weights = loss**2
    if not torch.isfinite(weights).all() or float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)  # a perfect (or broken) reconstruction: draw uniformly
    n_positive = int((weights > 0).sum())
    picks = torch.multinomial(
        weights.cpu(), dead.numel(), replacement=dead.numel() > n_positive, generator=generator
    ).to(x.device)
    alive = torch.ones(sae.W_enc.shape[1], dtype=torch.bool, device=dead.device)
    alive[dead] = False
    norms = sae.W_enc.norm(dim=0)
    reference = norms[alive].mean() if bool(alive.any()) else norms.mean()
    encoder_norm = float(ENCODER_NORM_FACTOR * reference)
    sae.reinit_latents(dead, x[picks], encoder_norm)
    reset_adam_rows(sae, optimizer, dead)
    report.update({"encoder_norm": encoder_norm, "mean_picked_loss": float(loss[picks].mean())})
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
