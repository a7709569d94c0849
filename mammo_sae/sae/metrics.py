"""Training and evaluation metrics of an SAE: L0, explained variance / FVU, normalised MSE, dead and dense
latents. Definitions (docs/sae-training.md, "Metrics"):

- ``fvu`` = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the tokens (mean over the same tokens);
  ``explained_variance`` = 1 - fvu.
- ``nmse`` = sum ||x - x_hat||^2 / sum ||x||^2 (a ratio of sums, not a mean of per-token ratios).
- ``mse`` = mean over tokens and features of (x - x_hat)^2 (the paper's reconstruction term).
- ``l0`` = mean number of latents with z > 0 per token.
- dead: a latent that has not fired within the window; dense: fires on more than ``dense_threshold`` of
  the tokens of the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class LatentActivity:
    """Per-latent firing over the training stream: tokens since each latent last fired (dead latents) and
    firing counts over consecutive windows of ``window`` tokens (dense latents).

    Before ``window`` tokens have passed no latent counts as dead (it has not had the chance to fire).
    Dense fractions come from the last complete window, or the current partial one before the first.
    """

    def __init__(self, d_sae: int, window: int, device: torch.device | str = "cpu") -> None:
        self.window = int(window)
        self.since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.window_counts = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.window_tokens = 0
        self.last_frequency: torch.Tensor | None = None  # firing frequency over the last complete window

    def update(self, z_count: torch.Tensor, n_tokens: int) -> None:
        """Add one step: ``z_count[j]`` = tokens (of ``n_tokens``) on which latent j fired."""
        z_count = z_count.to(self.since_fired.device).round().long()
        self.since_fired = torch.where(z_count > 0, 0, self.since_fired + int(n_tokens))
        self.window_counts += z_count
        self.window_tokens += int(n_tokens)
        if self.window_tokens >= self.window:
            self.last_frequency = self.window_counts.double() / self.window_tokens
            self.window_counts.zero_()
            self.window_tokens = 0

    def dead_mask(self) -> torch.Tensor:
        return self.since_fired >= self.window

    def dead_fraction(self) -> float:
        return float(self.dead_mask().double().mean())

    def frequency(self) -> torch.Tensor:
        if self.last_frequency is not None:
            return self.last_frequency
        return self.window_counts.double() / max(self.window_tokens, 1)

    def dense_fraction(self, threshold: float) -> float:
        return float((self.frequency() > threshold).double().mean())

    def revive(self, indices: torch.Tensor) -> None:
        """Resampled latents start a fresh window."""
        self.since_fired[indices] = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "since_fired": self.since_fired.cpu(),
            "window_counts": self.window_counts.cpu(),
            "window_tokens": self.window_tokens,
            "last_frequency": None if self.last_frequency is None else self.last_frequency.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.since_fired.device
        if tuple(state["since_fired"].shape) != tuple(self.since_fired.shape):
            raise ValueError("latent activity of another number of latents")
        self.window = int(state["window"])
        self.since_fired = state["since_fired"].to(device)
        self.window_counts = state["window_counts"].to(device)
        self.window_tokens = int(state["window_tokens"])
        last = state["last_frequency"]
        self.last_frequency = None if last is None else last.to(device)


# --- per-batch statistics (summed, so that processes can all-reduce them) ------------------------------

# layout of the summed statistics vector: scalars, then sum of x (d), then z counts (d_sae)
SCALARS = ("n", "total", "mse", "sparsity", "aux", "l0", "sse", "sum_sq")


def batch_sums(x_bd: torch.Tensor, parts: Any) -> torch.Tensor:
    """Float64 sums of one (slice of a) batch x [B, d]: token-weighted loss parts, squared error, ||x||^2,
    sum x, and per-latent firing counts; a vector [len(SCALARS) + d + d_sae]. Sums of slices add up to
    the sums of the whole batch."""
    assert x_bd.dim() == 2, tuple(x_bd.shape)
    x, n = x_bd, x_bd.shape[0]
    x64 = x.detach().double()
    weight = float(n)
    mse = torch.as_tensor(parts.mse, device=x.device).double()
    scalars = torch.stack(
        [
            torch.tensor(weight, dtype=torch.float64, device=x.device),
            torch.as_tensor(parts.total, device=x.device).double() * weight,
            mse * weight,
            torch.as_tensor(parts.sparsity, device=x.device).double() * weight,
            torch.as_tensor(parts.aux, device=x.device).double() * weight,
            torch.as_tensor(parts.l0, device=x.device).double() * weight,
            torch.as_tensor(parts.sse, device=x.device).double(),
            (x64 * x64).sum(),
        ]
    )
    z_count_s = torch.as_tensor(parts.z_count, device=x.device).double()
    return torch.cat([scalars, x64.sum(0), z_count_s])


def summarise_sums(sums: torch.Tensor, d: int) -> dict[str, float]:
    """Means and ratios of :func:`batch_sums` (possibly summed over processes)."""
    values = dict(zip(SCALARS, sums[: len(SCALARS)].tolist(), strict=True))
    n = values["n"]
    sum_x_d = sums[len(SCALARS) : len(SCALARS) + d]
    centred = values["sum_sq"] - float((sum_x_d * sum_x_d).sum()) / n
    fvu = values["sse"] / centred if centred > 0 else float("nan")
    return {
        "loss": values["total"] / n,
        "mse": values["mse"] / n,
        "sparsity": values["sparsity"] / n,
        "aux": values["aux"] / n,
        "l0": values["l0"] / n,
        "explained_variance": 1.0 - fvu,
        "fvu": fvu,
        "nmse": values["sse"] / values["sum_sq"] if values["sum_sq"] > 0 else float("nan"),
    }


def z_counts_of(sums: torch.Tensor, d: int) -> torch.Tensor:
    """The per-latent firing counts [d_sae] of :func:`batch_sums`."""
    return sums[len(SCALARS) + d :]


def decoder_norms(w_dec_sd: torch.Tensor) -> dict[str, float]:
    """Min / mean / max L2 norm of the decoder rows [d_sae, d_in] (the dictionary vectors)."""
    norms_s = w_dec_sd.detach().double().norm(dim=1)
    return {
        "dec_norm_min": float(norms_s.min()),
        "dec_norm_mean": float(norms_s.mean()),
        "dec_norm_max": float(norms_s.max()),
    }


# --- evaluation over a whole token set ------------------------------------------------------------------


class ReconstructionEval:
    """Accumulates reconstruction metrics over batches of (x, x_hat, z), in float64."""

    def __init__(self, d: int, d_sae: int, device: torch.device | str = "cpu") -> None:
        self.d, self.d_sae = d, d_sae
        self.n = 0
        self.sse = 0.0
        self.sum_sq = 0.0
        self.sum_x = torch.zeros(d, dtype=torch.float64, device=device)
        self.active = 0.0
        self.counts = torch.zeros(d_sae, dtype=torch.float64, device=device)

    def update(self, x_bd: torch.Tensor, x_hat_bd: torch.Tensor, z_bs: torch.Tensor) -> None:
        assert x_bd.shape == x_hat_bd.shape == (len(x_bd), self.d), (tuple(x_bd.shape), tuple(x_hat_bd.shape))
        assert z_bs.shape == (len(x_bd), self.d_sae), tuple(z_bs.shape)
        x64_bd, error_bd = x_bd.double(), (x_hat_bd.double() - x_bd.double())
        fired_bs = z_bs > 0
        self.n += len(x_bd)
        self.sse += float((error_bd * error_bd).sum())
        self.sum_sq += float((x64_bd * x64_bd).sum())
        self.sum_x += x64_bd.sum(0)
        self.active += float(fired_bs.sum())
        self.counts += fired_bs.sum(0).double()

    def result(self, dense_threshold: float) -> dict[str, Any]:
        if not self.n:
            raise ValueError("no tokens were evaluated")
        centred = self.sum_sq - float((self.sum_x * self.sum_x).sum()) / self.n
        fvu = self.sse / centred if centred > 0 else float("nan")
        frequency = self.counts / self.n
        return {
            "n_tokens": self.n,
            "mse": self.sse / (self.n * self.d),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "nmse": self.sse / self.sum_sq if self.sum_sq > 0 else float("nan"),
            "l0": self.active / self.n,
            "dead_fraction": float((self.counts == 0).double().mean()),
            "dense_fraction": float((frequency > dense_threshold).double().mean()),
            "dense_threshold": dense_threshold,
        }


@torch.no_grad()
def evaluate_sae(
    sae: Any,
    batches: Iterable[torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    dense_threshold: float = 0.1,
) -> dict[str, Any]:
    """Reconstruction metrics of ``sae`` (in eval mode) over every token of ``batches``."""
    was_training = sae.training
    sae.eval()
    accumulator = ReconstructionEval(sae.W_dec.shape[1], sae.W_dec.shape[0], device)
    try:
        for batch in batches:
            x_bd = torch.as_tensor(batch).to(device).float()
            z_bs = sae.encode(x_bd)
            accumulator.update(x_bd, sae.decode(z_bs), z_bs)
    finally:
        sae.train(was_training)
    return accumulator.result(dense_threshold)
