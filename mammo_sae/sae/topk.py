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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mammo_sae.sae import fast
from mammo_sae.sae.arch_config import SAEConfig, check_positive
from mammo_sae.sae.base import LossParts, SparseAutoencoder
from mammo_sae.sae.errors import SAEError
from mammo_sae.sae.registry import register

THRESHOLD_MOMENTUM = 0.01  # BatchTopK: weight of each training batch in the running threshold
FOREIGN_JUMPRELU_K = 64  # k of a JumpReLU file from elsewhere (it only matters for further training)


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    """``k`` active latents per token; AuxK with ``aux_k`` dead latents (unset: d_in / 2, as OpenAI)
    weighted by ``aux_coeff``."""

    k: int = 64
    aux_k: int | None = None
    aux_coeff: float = 1 / 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k, integer=True)
        if self.k > self.d_sae:
            raise SAEError(f"k={self.k} is larger than d_sae={self.d_sae}")
        if self.aux_k is None:
            self._set("aux_k", max(self.d_in // 2, 1))  # OpenAI's default (appendix B.1)
        check_positive("aux_k", self.aux_k, integer=True)
        check_positive("aux_coeff", self.aux_coeff, integer=False)
        self._set("aux_coeff", float(self.aux_coeff))

    @classmethod
    def complete_from_saelens(
        cls, hparams: dict[str, Any], cfg: Mapping[str, Any], d_sae: int
    ) -> dict[str, Any]:
        if "k" not in hparams:
            k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
            if k is None:
                raise SAEError("a topk SAE needs 'k' (or activation_fn_kwargs.k) in cfg.json; add it")
            hparams = {**hparams, "k": k}
        return hparams


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    """As TopK: ``k`` is the mean number of active latents per token over a training batch."""

    @classmethod
    def complete_from_saelens(
        cls, hparams: dict[str, Any], cfg: Mapping[str, Any], d_sae: int
    ) -> dict[str, Any]:
        return hparams if "k" in hparams else {**hparams, "k": min(FOREIGN_JUMPRELU_K, d_sae)}


class TopKSAE(SparseAutoencoder):
    architecture: ClassVar[str] = "topk"
    saelens_architecture: ClassVar[str | None] = "topk"
    default_for_saelens: ClassVar[bool] = True
    uses_dead_mask: ClassVar[bool] = True

    cfg: TopKConfig

    def __init__(
        self, cfg: TopKConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> None:
        super().__init__(cfg, dtype=dtype, device=device)
        self.k, self.aux_k, self.aux_coeff = cfg.k, cfg.aux_k, cfg.aux_coeff

    def saelens_fields(self) -> dict[str, Any]:
        # SAELens >= 6 reads "k"; SAELens < 6 reads activation_fn_kwargs
        return {"activation_fn": "topk", "k": self.k, "activation_fn_kwargs": {"k": self.k}}

    def activation(self, pre_bs: torch.Tensor) -> torch.Tensor:
        val_bk, idx_bk = pre_bs.topk(self.k, dim=1)
        return torch.zeros_like(pre_bs).scatter(1, idx_bk, torch.relu(val_bk))

    def _extra_terms(self, x_bd, pre_bs, z_bs, x_hat_bd, dead_mask_s, sparsity_coeff):
        zero = x_bd.new_zeros(())
        if dead_mask_s is None:
            return zero, zero
        n_dead = int(dead_mask_s.sum())
        if n_dead == 0:
            return zero, zero
        val, idx = pre_bs.masked_fill(~dead_mask_s, float("-inf")).topk(min(self.aux_k, n_dead), dim=1)
        a_bs = torch.zeros_like(pre_bs).scatter(1, idx, torch.relu(val))
        residual_bd = (x_bd - x_hat_bd).detach()
        diff_bd = a_bs @ self.W_dec - residual_bd
        return zero, self.aux_coeff * torch.sum(diff_bd * diff_bd) / fast.auxk_residual_variance(residual_bd)

    def _select(self, pre_bs: torch.Tensor) -> fast.SparseCode:
        return fast.topk_code(pre_bs, self.k)

    def _fast_loss_and_grad(self, x_bd, dead_mask_s, sparsity_coeff, kernel) -> LossParts | None:
        if kernel == "dense" or not fast.sparse_supported(x_bd):
            return None  # the autograd reference
        parts, _ = fast.code_step(self, x_bd, self._select, dead_mask_s)
        return parts


class BatchTopKSAE(TopKSAE):
    """BatchTopK in training; JumpReLU with the running threshold in eval mode (and in saved files).

    The threshold is one number for all latents (stored per latent, as JumpReLU files want): an
    exponential moving average, over training batches (``loss`` / ``loss_and_grad`` in training mode),
    of the smallest activation the batch kept; the first batch sets it. Before any training batch it is
    0, and eval-mode encoding is then plain ReLU. A JumpReLU file from elsewhere loads with its own
    per-latent thresholds.
    """

    architecture: ClassVar[str] = "batchtopk"
    saelens_architecture: ClassVar[str | None] = "jumprelu"
    default_for_saelens: ClassVar[bool] = True

    cfg: BatchTopKConfig
    threshold: torch.Tensor
    threshold_updates: torch.Tensor

    def __init__(
        self,
        cfg: BatchTopKConfig,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(cfg, dtype=dtype, device=device)
        self.register_buffer("threshold", torch.zeros(self.d_sae, dtype=self.dtype, device=self.device))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long, device=self.device))
        self.threshold_momentum = THRESHOLD_MOMENTUM

    @classmethod
    def file_tensor_shapes(cls, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
        return {**super().file_tensor_shapes(d_in, d_sae), "threshold": (d_sae,)}

    def saelens_fields(self) -> dict[str, Any]:
        return {"activation_fn": "relu"}

    def after_load(self) -> None:
        self.threshold_updates.fill_(1)  # the file's threshold counts as set

    def activation(self, pre_bs: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.relu(pre_bs) * (pre_bs > self.threshold)
        flat, _ = fast.batch_topk_select(pre_bs, self.k * pre_bs.shape[0])
        values = torch.relu(pre_bs.reshape(-1)[flat])
        return torch.zeros_like(pre_bs).reshape(-1).scatter(0, flat, values).reshape(pre_bs.shape)

    def _select(self, pre_bs: torch.Tensor) -> fast.SparseCode:
        return fast.batch_topk_code(pre_bs, self.k * pre_bs.shape[0])

    @torch.no_grad()
    def _observe_training_code(self, z_bs: torch.Tensor) -> None:
        self._update_threshold(z_bs[z_bs > 0])

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

    def _fast_loss_and_grad(self, x_bd, dead_mask_s, sparsity_coeff, kernel) -> LossParts | None:
        if not self.training or kernel == "dense" or not fast.sparse_supported(x_bd):
            return None  # eval-mode JumpReLU and other dtypes: the autograd reference
        parts, code = fast.code_step(self, x_bd, self._select, dead_mask_s)
        self._update_threshold(code.val[code.val > 0])
        return parts


register("topk", TopKSAE, TopKConfig)
register("batchtopk", BatchTopKSAE, BatchTopKConfig)
