"""Token evidence after a latent intervention: where on the grid a head's logit comes from once latents are
scaled.

With the SAE in place a token's share of head h's logit is ``(sum_i z_ti effect_ih + w_h . b_dec) / N``
(``analysis.evidence``). Scaling latent i by ``s_i`` changes that share by ``sum_i (s_i - 1) z_ti effect_ih
/ N`` and leaves the rest (the decoder bias, the error term) where it was, so

    after_hgw = before_hgw + code_shares(codes, effect_lh * (scale_l - 1))

sums to the intervened logit minus the head's bias. The codes a bundle keeps are each token's strongest
latents in float16, so a map built from them adds up to the exact logit to within that rounding.
"""

from __future__ import annotations

import numpy as np

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.evidence import EvidenceError


def code_shares(codes: TokenCodes, weight_lh: np.ndarray) -> np.ndarray:
    """[heads, gh, gw] float64: ``sum_i z_ti weight_ih / N`` for one image's sparse codes (N = gh * gw)."""
    weight_lh = np.asarray(weight_lh, dtype=np.float64)
    if codes.n_images != 1:
        raise EvidenceError(f"code_shares takes one image's codes, got {codes.n_images} images")
    if weight_lh.ndim != 2 or weight_lh.shape[0] != codes.d_sae:
        raise EvidenceError(f"weights must be [latents = {codes.d_sae}, heads], got {weight_lh.shape}")
    tokens = codes.tokens_per_image
    rows_e, latent_e = codes.entry_rows(), codes.latent.astype(np.int64)
    value_e = codes.value.astype(np.float64)
    share_th = np.zeros((tokens, weight_lh.shape[1]))
    np.add.at(share_th, rows_e, value_e[:, None] * weight_lh[latent_e])
    return (share_th / tokens).T.reshape(-1, *codes.grid)


def intervened_evidence(
    before_hgw: np.ndarray, codes: TokenCodes, effect_lh: np.ndarray, scale_l: np.ndarray
) -> np.ndarray:
    """[heads, gh, gw] float64: the evidence map ``before_hgw`` with every latent i scaled by ``scale_l[i]``
    (one image's ``codes``; ``effect_lh`` = W_dec @ w_h)."""
    before_hgw = np.asarray(before_hgw, dtype=np.float64)
    effect_lh = np.asarray(effect_lh, dtype=np.float64)
    scale_l = np.asarray(scale_l, dtype=np.float64).reshape(-1)
    if scale_l.shape != (codes.d_sae,):
        raise EvidenceError(f"scale must be [d_sae = {codes.d_sae}], got {scale_l.shape}")
    if before_hgw.shape != (effect_lh.shape[1], *codes.grid):
        raise EvidenceError(
            f"the map must be [heads = {effect_lh.shape[1]}, {codes.grid[0]}, {codes.grid[1]}], "
            f"got {before_hgw.shape}"
        )
    changed = scale_l != 1
    if not changed.any():
        return before_hgw.copy()
    return before_hgw + code_shares(codes, effect_lh * (scale_l - 1)[:, None])
