"""The Mammo-SAE architecture: a ReLU SAE with an L1 penalty and unit-norm decoder rows (FACTS 5).

    z     = ReLU((x - b_dec) @ W_enc + b_enc)
    x_hat = z @ W_dec + b_dec
    loss  = mean_{b, i} (x_hat - x)^2  +  l1_coeff * mean_b sum_j |z_bj|

The L1 term is not scaled by decoder norms: the rows are kept at unit norm (gradient component parallel
to each row removed before, rows renormalised after every optimiser step). Dead latents are resampled
by the trainer (the recipe's Anthropic-style restarts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from mammo_sae.sae import fast
from mammo_sae.sae.arch_config import SAEConfig, check_positive
from mammo_sae.sae.base import LossParts, SparseAutoencoder
from mammo_sae.sae.registry import register


@dataclass(frozen=True)
class ReLUConfig(SAEConfig):
    """``l1_coeff``: the weight lambda of the L1 penalty (paper: 3e-5)."""

    l1_coeff: float = 3e-5

    knob_names: ClassVar[Mapping[str, str]] = {"l1_coeff": "l1"}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("l1_coeff", self.l1_coeff, integer=False)
        self._set("l1_coeff", float(self.l1_coeff))


class ReLUSAE(SparseAutoencoder):
    architecture: ClassVar[str] = "relu"
    saelens_architecture: ClassVar[str | None] = "standard"
    default_for_saelens: ClassVar[bool] = True
    resamples_dead_latents: ClassVar[bool] = True

    cfg: ReLUConfig

    def __init__(
        self, cfg: ReLUConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> None:
        super().__init__(cfg, dtype=dtype, device=device)
        self.l1_coeff = cfg.l1_coeff
        # loss_and_grad(kernel="auto") goes sparse below this fraction of non-zero code entries
        self.sparse_l0_fraction = fast.SPARSE_L0_FRACTION

    @property
    def sparsity_coeff(self) -> float | None:
        return self.l1_coeff

    def activation(self, pre_bs: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre_bs)

    def _extra_terms(self, x_bd, pre_bs, z_bs, x_hat_bd, dead_mask_s, sparsity_coeff):
        coeff = self.l1_coeff if sparsity_coeff is None else float(sparsity_coeff)
        return coeff * z_bs.abs().sum(dim=1).mean(), x_bd.new_zeros(())

    def _fast_loss_and_grad(self, x_bd, dead_mask_s, sparsity_coeff, kernel) -> LossParts | None:
        if kernel == "sparse" and not fast.sparse_supported(x_bd):
            kernel = "dense"
        coeff = self.l1_coeff if sparsity_coeff is None else float(sparsity_coeff)
        return fast.relu_step(self, x_bd, coeff, kernel)


register("relu", ReLUSAE, ReLUConfig)
