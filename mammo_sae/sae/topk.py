"""TopK and BatchTopK SAEs with the AuxK loss on dead latents (Gao et al. 2024; Bussmann et al. 2024).

    pre   = (x - b_dec) @ W_enc + b_enc
    z     = TopK_k(ReLU(pre)) per token                  (topk)
          = the k*B largest ReLU(pre) of the batch       (batchtopk, training mode)
          = ReLU(pre) * (pre > threshold)                (batchtopk, eval mode: JumpReLU)
    x_hat = z @ W_dec + b_dec
    loss  = mean_{b, i} (x_hat - x)^2 + aux_coeff * AuxK

AuxK: with r = x - x_hat (no gradient), a = ReLU of the top ``aux_k`` pre-activations among the dead
latents (``dead_mask``) of each token, ``AuxK = ||a @ W_dec - r||^2 / ||r - mean_b r||^2`` (sums over
batch and features): the fraction of the residual's variance the dead latents leave unexplained. It is 0
without dead latents. Decoder rows are kept at unit norm, as for the ReLU SAE (OpenAI's recipe), and the
encoder starts as the decoder's transpose.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mammo_sae.sae import fast
from mammo_sae.sae.base import LossParts, SAEError, SparseAutoencoder, check_positive, register_architecture

THRESHOLD_MOMENTUM = 0.01  # BatchTopK: weight of each training batch in the running threshold


@register_architecture
class TopKSAE(SparseAutoencoder):
    architecture: ClassVar[str] = "topk"
    saelens_architecture: ClassVar[str] = "topk"
    hparam_names: ClassVar[tuple[str, ...]] = ("k", "aux_k", "aux_coeff")

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: int = 64,
        aux_k: int | None = None,
        aux_coeff: float = 1 / 32,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype, device=device)
        check_positive("k", k, integer=True)
        if k > d_sae:
            raise SAEError(f"k={k} is larger than d_sae={d_sae}")
        aux_k = max(d_in // 2, 1) if aux_k is None else aux_k  # OpenAI's default (appendix B.1)
        check_positive("aux_k", aux_k, integer=True)
        check_positive("aux_coeff", aux_coeff, integer=False)
        self.k, self.aux_k, self.aux_coeff = int(k), int(aux_k), float(aux_coeff)

    @property
    def hparams(self) -> dict[str, Any]:
        return {"k": self.k, "aux_k": self.aux_k, "aux_coeff": self.aux_coeff, "seed": self.seed}

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        val, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, torch.relu(val))

    def _extra_terms(self, x, pre, z, x_hat, dead_mask, l1_coeff):
        zero = x.new_zeros(())
        if dead_mask is None:
            return zero, zero
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return zero, zero
        val, idx = pre.masked_fill(~dead_mask, float("-inf")).topk(min(self.aux_k, n_dead), dim=1)
        a = torch.zeros_like(pre).scatter(1, idx, torch.relu(val))
        residual = (x - x_hat).detach()
        diff = a @ self.W_dec - residual
        return zero, self.aux_coeff * torch.sum(diff * diff) / fast.auxk_residual_variance(residual)

    def _select(self, pre: torch.Tensor) -> fast.SparseCode:
        return fast.topk_code(pre, self.k)

    def _fast_loss_and_grad(self, x, dead_mask, l1_coeff, kernel) -> LossParts | None:
        if kernel == "dense" or not fast.sparse_supported(x):
            return None  # the autograd reference
        parts, _ = fast.code_step(self, x, self._select, dead_mask)
        return parts


@register_architecture
class BatchTopKSAE(TopKSAE):
    """BatchTopK in training; JumpReLU with the running threshold in eval mode (and in saved files).

    The threshold is one number for all latents (stored per latent, as JumpReLU files want): an
    exponential moving average, over training batches (``loss`` / ``loss_and_grad`` in training mode),
    of the smallest activation the batch kept; the first batch sets it. Before any training batch it is
    0, and eval-mode encoding is then plain ReLU. A JumpReLU file from elsewhere loads with its own
    per-latent thresholds.
    """

    architecture: ClassVar[str] = "batchtopk"
    saelens_architecture: ClassVar[str] = "jumprelu"

    threshold: torch.Tensor
    threshold_updates: torch.Tensor

    def __init__(self, d_in: int, d_sae: int, **kwargs: Any) -> None:
        super().__init__(d_in, d_sae, **kwargs)
        self.register_buffer("threshold", torch.zeros(d_sae, dtype=self.dtype, device=self.device))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long, device=self.device))
        self.threshold_momentum = THRESHOLD_MOMENTUM

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.relu(pre) * (pre > self.threshold)
        flat, _ = fast.batch_topk_select(pre, self.k * pre.shape[0])
        values = torch.relu(pre.reshape(-1)[flat])
        return torch.zeros_like(pre).reshape(-1).scatter(0, flat, values).reshape(pre.shape)

    def _select(self, pre: torch.Tensor) -> fast.SparseCode:
        return fast.batch_topk_code(pre, self.k * pre.shape[0])

    @torch.no_grad()
    def _observe_training_code(self, z: torch.Tensor) -> None:
        self._update_threshold(z[z > 0])

    @torch.no_grad()
    def _update_threshold(self, kept: torch.Tensor) -> None:
        if kept.numel() == 0:
            return
        smallest = kept.min().to(self.threshold.dtype)
        if int(self.threshold_updates) == 0:
            self.threshold.fill_(smallest)
        else:
            self.threshold.lerp_(smallest.expand_as(self.threshold), self.threshold_momentum)
        self.threshold_updates += 1

    def _fast_loss_and_grad(self, x, dead_mask, l1_coeff, kernel) -> LossParts | None:
        if not self.training or kernel == "dense" or not fast.sparse_supported(x):
            return None  # eval-mode JumpReLU and other dtypes: the autograd reference
        parts, code = fast.code_step(self, x, self._select, dead_mask)
        self._update_threshold(code.val[code.val > 0])
        return parts
