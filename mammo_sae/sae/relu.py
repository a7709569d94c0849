"""The Mammo-SAE architecture: a ReLU SAE with an L1 penalty and unit-norm decoder rows (FACTS 5).

    z     = ReLU((x - b_dec) @ W_enc + b_enc)
    x_hat = z @ W_dec + b_dec
    loss  = mean_{b, i} (x_hat - x)^2  +  l1_coeff * mean_b sum_j |z_bj|

The L1 term is not scaled by decoder norms: the rows are kept at unit norm (gradient component parallel
to each row removed before, rows renormalised after every optimiser step).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mammo_sae.sae import fast
from mammo_sae.sae.base import LossParts, SparseAutoencoder, check_positive, register_architecture


@register_architecture
class ReLUSAE(SparseAutoencoder):
    architecture: ClassVar[str] = "relu"
    saelens_architecture: ClassVar[str] = "standard"
    hparam_names: ClassVar[tuple[str, ...]] = ("l1_coeff",)

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        l1_coeff: float = 3e-5,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(d_in, d_sae, seed=seed, dtype=dtype, device=device)
        check_positive("l1_coeff", l1_coeff, integer=False)
        self.l1_coeff = float(l1_coeff)
        # loss_and_grad(kernel="auto") goes sparse below this fraction of non-zero code entries
        self.sparse_l0_fraction = fast.SPARSE_L0_FRACTION

    @property
    def hparams(self) -> dict[str, Any]:
        return {"l1_coeff": self.l1_coeff, "seed": self.seed}

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def _extra_terms(self, x, pre, z, x_hat, dead_mask, l1_coeff):
        coeff = self.l1_coeff if l1_coeff is None else float(l1_coeff)
        return coeff * z.abs().sum(dim=1).mean(), x.new_zeros(())

    def _fast_loss_and_grad(self, x, dead_mask, l1_coeff, kernel) -> LossParts | None:
        if kernel == "sparse" and not fast.sparse_supported(x):
            kernel = "dense"
        coeff = self.l1_coeff if l1_coeff is None else float(l1_coeff)
        return fast.relu_step(self, x, coeff, kernel)
