"""Matryoshka BatchTopK SAE (Bussmann, Nabeshima, Karvonen & Nanda 2025; Nabeshima 2024): nested prefixes of
the dictionary, each of which must reconstruct the input on its own.

    z      = BatchTopK(ReLU(pre)), as BatchTopK (a JumpReLU with the running threshold in eval mode)
    x_hat_m = z[:, :m] @ W_dec[:m] + b_dec            for each nested width m in ``widths`` (the last: d_sae)
    loss   = sum_m mean_{b, i} (x_hat_m - x)^2 + aux_coeff * AuxK

``widths`` are cumulative (e.g. 128, 512, 2048, 8192, 16384), as SAELens writes them (``matryoshka_widths``);
``group_sizes`` (what the training knob takes) are their differences. The early latents must carry the
coarse, frequent concepts on their own; that is what cuts feature absorption (a general latent swallowed by
a more specific one). With one width it is BatchTopK. AuxK is BatchTopK's, on the full reconstruction.

The fast path: latent s of group j enters every prefix from j on, so with e_m = x_hat_m - x its gradient
reads the suffix sum E_j = sum_{m >= j} e_m in place of BatchTopK's single error: one decode, one sampled
product and one decoder-gradient product per group over that group's entries, the same work as BatchTopK's
plus a [B, d] add per group.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mammo_sae.sae import fast
from mammo_sae.sae.base import LossParts, batch_stats
from mammo_sae.sae.errors import SAEError
from mammo_sae.sae.registry import register
from mammo_sae.sae.topk import BatchTopKConfig, BatchTopKSAE

#: the default group sizes as fractions of d_sae: 1/16, 1/16, 1/8, 1/4, 1/2 (widths 1/16, 1/8, 1/4, 1/2, 1)
DEFAULT_FRACTIONS = (1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2)


def default_group_sizes(d_sae: int) -> tuple[int, ...]:
    """Groups of 1/16, 1/16, 1/8, 1/4 and 1/2 of the dictionary (the last takes the rounding), fewer when
    d_sae is too small for five non-empty groups."""
    sizes = [max(1, int(d_sae * f)) for f in DEFAULT_FRACTIONS[:-1]]
    while sizes and sum(sizes) >= d_sae:
        sizes.pop()
    return (*sizes, d_sae - sum(sizes))


def parse_group_sizes(text: str | Sequence[int] | None, d_sae: int) -> tuple[int, ...]:
    """Group sizes from a knob ("128,128,256,512,1024", or a list): positive, summing to d_sae; None: default."""
    if text is None:
        return default_group_sizes(d_sae)
    try:
        sizes = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise SAEError(f"matryoshka group sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or any(v <= 0 for v in sizes) or sum(sizes) != d_sae:
        raise SAEError(
            f"matryoshka group sizes must be positive and add up to d_sae={d_sae}, got {list(sizes)} "
            f"(sum {sum(sizes)}); e.g. {','.join(map(str, default_group_sizes(d_sae)))}"
        )
    return sizes


@dataclass(frozen=True)
class MatryoshkaConfig(BatchTopKConfig):
    """BatchTopK's ``k``, AuxK settings, and ``group_sizes``: the nested groups of the dictionary, in order
    (unset: 1/16, 1/16, 1/8, 1/4, 1/2 of d_sae)."""

    group_sizes: tuple[int, ...] | None = None

    knob_names: ClassVar[Mapping[str, str]] = {"group_sizes": "matryoshka_groups"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set(
            "group_sizes", parse_group_sizes(self.group_sizes, self.d_sae)
        )  # positive, summing to d_sae

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "group_sizes": list(self.group_sizes)}

    @property
    def widths(self) -> tuple[int, ...]:
        """The nested widths (cumulative group sizes; the last is d_sae)."""
        out, total = [], 0
        for size in self.group_sizes:
            total += size
            out.append(total)
        return tuple(out)

    @classmethod
    def complete_from_saelens(
        cls, hparams: dict[str, Any], cfg: Mapping[str, Any], d_sae: int
    ) -> dict[str, Any]:
        hparams = super().complete_from_saelens(hparams, cfg, d_sae)
        widths = cfg.get("matryoshka_widths")
        if "group_sizes" not in hparams and widths:
            edges = [0, *(int(w) for w in widths)]
            hparams = {**hparams, "group_sizes": [b - a for a, b in itertools.pairwise(edges)]}
        return hparams


class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK whose reconstruction loss is summed over nested prefixes of the dictionary."""

    architecture: ClassVar[str] = "matryoshka"
    saelens_architecture: ClassVar[str | None] = "jumprelu"  # as SAELens exports a trained one
    default_for_saelens: ClassVar[bool] = False  # a plain JumpReLU file is BatchTopK's

    cfg: MatryoshkaConfig

    def __init__(self, cfg: MatryoshkaConfig, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.widths = cfg.widths
        assert self.widths[-1] == self.d_sae, (self.widths, self.d_sae)

    def saelens_fields(self) -> dict[str, Any]:
        return {**super().saelens_fields(), "matryoshka_widths": list(self.widths)}

    def _reconstruction_loss(
        self, x_bd: torch.Tensor, z_bs: torch.Tensor, err_bd: torch.Tensor
    ) -> torch.Tensor:
        total = torch.mean(err_bd * err_bd)  # the full width
        partial_bd = self.b_dec - x_bd
        start = 0
        for width in self.widths[:-1]:
            partial_bd = partial_bd + z_bs[:, start:width] @ self.W_dec[start:width]
            total = total + torch.mean(partial_bd * partial_bd)
            start = width
        return total

    def _fast_loss_and_grad(self, x_bd, dead_mask_s, sparsity_coeff, kernel) -> LossParts | None:
        if not self.training or kernel == "dense" or not fast.sparse_supported(x_bd):
            return None  # eval-mode JumpReLU and other dtypes: the autograd reference
        parts, code = nested_code_step(self, x_bd, self._select, dead_mask_s)
        self._update_threshold(code.val[code.val > 0])
        return parts


def _group_codes(code: fast.SparseCode, widths: Sequence[int]) -> list[fast.SparseCode]:
    """The code split into the groups' codes (each keeps every token row; latents stay global)."""
    group = torch.bucketize(code.col, torch.tensor(widths, device=code.col.device), right=True)
    rows = torch.repeat_interleave(torch.arange(code.shape[0], device=code.col.device), code.crow.diff())
    parts = []
    for j in range(len(widths)):
        keep = group == j
        counts = torch.bincount(rows[keep], minlength=code.shape[0])
        crow = torch.zeros(code.shape[0] + 1, dtype=torch.long, device=code.col.device)
        torch.cumsum(counts, dim=0, out=crow[1:])
        parts.append(fast.SparseCode(crow, code.col[keep], code.val[keep], code.shape[1]))
    return parts


def nested_code_step(
    sae: MatryoshkaSAE,
    x_bd: torch.Tensor,
    select: Callable[[torch.Tensor], fast.SparseCode],
    dead_mask_s: torch.Tensor | None,
) -> tuple[LossParts, fast.SparseCode]:
    """Loss and gradients of the Matryoshka loss without autograd (see the module docstring)."""
    B, d = x_bd.shape
    W_enc_ds, b_enc_s, W_dec_sd, b_dec_d = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    gW_enc_ds, gb_enc_s, gW_dec_sd, gb_dec_d = (
        sae.grad_target(p) for p in (W_enc_ds, b_enc_s, W_dec_sd, b_dec_d)
    )
    xc_bd, pre_bs = fast.encoder_forward(sae, x_bd)
    code = select(pre_bs)
    sae.last_kernel = "sparse"
    groups = _group_codes(code, sae.widths)
    scale = 2.0 / (B * d)
    errors_gbd = []  # e_m = x_hat_m - x per prefix
    running_bd = b_dec_d - x_bd
    for group in groups:
        running_bd = running_bd + group.decode(W_dec_sd, None)
        errors_gbd.append(running_bd)
    err_bd = errors_gbd[-1]
    mse = sum(torch.sum(e * e) for e in errors_gbd) / (B * d)
    z_count_s, active = code.fired()
    stats = batch_stats(x_bd, err_bd, active, z_count_s)
    gW_dec_sd.zero_()
    gb_enc_s.zero_()
    suffix_bd = torch.zeros_like(x_bd)
    dval_parts = []
    for group, e_bd in zip(reversed(groups), reversed(errors_gbd), strict=True):
        suffix_bd = suffix_bd + e_bd  # E_j: the errors of every prefix group j enters
        g_bd = suffix_bd * scale
        group.add_decoder_grad(gW_dec_sd, g_bd, accumulate=True)
        dval = group.sampled_dots(g_bd, W_dec_sd).mul_(group.val_t > 0)
        group.latent_sums(dval, out=gb_enc_s, accumulate=True)
        dval_parts.append((group, dval))
    for n, (group, dval) in enumerate(dval_parts):
        group.add_encoder_grad(gW_enc_ds, xc_bd, dval, accumulate=n > 0)
    aux = x_bd.new_zeros(())
    if dead_mask_s is not None:
        aux = fast.aux_step(sae, xc_bd, pre_bs, -err_bd, dead_mask_s, [gW_enc_ds, gb_enc_s, gW_dec_sd])
    g_sum_d = sum(e.sum(dim=0) for e in errors_gbd) * scale  # b_dec is in every prefix
    torch.addmv(g_sum_d, W_enc_ds, gb_enc_s, alpha=-1, out=gb_dec_d)
    parts = LossParts(total=mse + aux, mse=mse, sparsity=x_bd.new_zeros(()), aux=aux, **stats)
    return parts, code


register("matryoshka", MatryoshkaSAE, MatryoshkaConfig)
