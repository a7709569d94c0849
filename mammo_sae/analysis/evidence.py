"""Exact token evidence: where on the token grid each head's logit comes from.

A head is linear over the mean of the N token features, so its logit splits exactly over tokens:
``logit = b + sum_t (w . f_t) / N``. With the SAE in place, ``f_t`` becomes ``x_hat_t = W_dec z_t + b_dec``
and each token's share splits again over latents: ``(sum_i z_ti (W_dec_i . w) + w . b_dec) / N``; the rest,
``w . (f_t - x_hat_t) / N``, is the error term. Every map here sums to its logit minus the head's bias.
Maps live on the token grid [gh, gw]; the app maps them to original pixels as it maps latent maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.models import Classifier, stacked_heads
from mammo_sae.sae import SparseAutoencoder


class EvidenceError(MammoSaeError):
    """Evidence was asked of inputs whose shapes do not fit together."""


def feature_evidence(fmap_dhw: np.ndarray, weight_hd: np.ndarray) -> np.ndarray:
    """[heads, gh, gw] float64: each token's share ``(w_h . f_t) / N`` of each head's logit minus its bias."""
    fmap_dhw = np.asarray(fmap_dhw, dtype=np.float64)
    weight_hd = np.asarray(weight_hd, dtype=np.float64)
    if fmap_dhw.ndim != 3 or weight_hd.ndim != 2 or weight_hd.shape[1] != fmap_dhw.shape[0]:
        raise EvidenceError(
            f"feature map [d, gh, gw] and head weights [heads, d] do not fit: {fmap_dhw.shape}, {weight_hd.shape}"
        )
    d, gh, gw = fmap_dhw.shape
    return np.einsum("hd,dt->ht", weight_hd, fmap_dhw.reshape(d, gh * gw)).reshape(-1, gh, gw) / (gh * gw)


def sae_evidence(
    z_tl: np.ndarray, grid: tuple[int, int], effect_lh: np.ndarray, decoder_bias_h: np.ndarray
) -> np.ndarray:
    """[heads, gh, gw] float64: each token's share of the SAE logit minus the bias,
    ``(z_t @ effect_lh + w_h . b_dec) / N``, with ``effect_lh = W_dec @ w_h`` and ``decoder_bias_h = w_h . b_dec``."""
    z_tl, effect_lh = _codes_and_effects(z_tl, grid, effect_lh)
    decoder_bias_h = np.asarray(decoder_bias_h, dtype=np.float64).reshape(-1)
    if decoder_bias_h.shape != (effect_lh.shape[1],):
        raise EvidenceError(f"decoder_bias_h needs one value per head, got shape {decoder_bias_h.shape}")
    tokens, latents = np.nonzero(z_tl)  # codes are sparse: only the active entries count
    share_th = np.zeros((z_tl.shape[0], effect_lh.shape[1]))
    np.add.at(share_th, tokens, z_tl[tokens, latents, None] * effect_lh[latents])
    return ((share_th + decoder_bias_h) / z_tl.shape[0]).T.reshape(-1, *grid)


def latent_evidence(
    z_tl: np.ndarray, grid: tuple[int, int], effect_lh: np.ndarray, latent: int
) -> np.ndarray:
    """[heads, gh, gw] float64: latent ``latent``'s share of each head's logit at each token,
    ``z_ti (W_dec_i . w_h) / N``; summed over every latent (plus the decoder-bias share) it is the SAE map."""
    z_tl, effect_lh = _codes_and_effects(z_tl, grid, effect_lh)
    if not 0 <= latent < z_tl.shape[1]:
        raise EvidenceError(f"latent {latent} is outside the SAE's {z_tl.shape[1]} latents")
    share_th = np.outer(z_tl[:, latent].astype(np.float64), effect_lh[latent]) / z_tl.shape[0]
    return share_th.T.reshape(-1, *grid)


def _codes_and_effects(
    z_tl: np.ndarray, grid: tuple[int, int], effect_lh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    z_tl = np.asarray(z_tl)  # float32 codes stay float32; products are taken in float64
    effect_lh = np.asarray(effect_lh, dtype=np.float64)
    if z_tl.ndim != 2 or z_tl.shape[0] != grid[0] * grid[1]:
        raise EvidenceError(f"codes must be [tokens = {grid[0]} x {grid[1]}, latents], got {z_tl.shape}")
    if effect_lh.ndim != 2 or effect_lh.shape[0] != z_tl.shape[1]:
        raise EvidenceError(f"effects must be [latents = {z_tl.shape[1]}, heads], got {effect_lh.shape}")
    return z_tl, effect_lh


@dataclass(frozen=True)
class EvidenceMaps:
    """One image's evidence per head on the token grid: ``bias_h + map.sum()`` is the head's logit."""

    tasks: tuple[str, ...]
    original_hgw: np.ndarray  # [heads, gh, gw]: the model's own features
    sae_hgw: np.ndarray  # [heads, gh, gw]: the SAE reconstruction in their place
    bias_h: np.ndarray  # [heads]
    z_tl: np.ndarray  # [tokens, latents] float32: the image's latent codes (token t = row * gw + col)
    effect_lh: np.ndarray  # [latents, heads] float64: W_dec @ w_h

    @property
    def error_hgw(self) -> np.ndarray:
        """The error term's share: original minus SAE, per token."""
        return self.original_hgw - self.sae_hgw

    @property
    def grid(self) -> tuple[int, int]:
        return self.original_hgw.shape[1], self.original_hgw.shape[2]

    def head(self, task: str) -> int:
        if task not in self.tasks:
            raise EvidenceError(f"no head {task!r}; the evidence covers {', '.join(self.tasks)}")
        return self.tasks.index(task)

    def latent(self, task: str, latent: int) -> np.ndarray:
        """[gh, gw]: one latent's share of ``task``'s SAE logit at each token."""
        return latent_evidence(self.z_tl, self.grid, self.effect_lh, latent)[self.head(task)]

    def logits(self, kind: str = "original") -> np.ndarray:
        """[heads]: the logits the maps add up to (``original`` or ``sae``)."""
        maps = {"original": self.original_hgw, "sae": self.sae_hgw}[kind]
        return self.bias_h + maps.sum(axis=(1, 2))


def decoder_effects(sae: SparseAutoencoder, weight_hd: torch.Tensor, rows: int = 4096) -> np.ndarray:
    """[latents, heads] float64 ``W_dec @ w_h``, a block of dictionary rows at a time (no float64 copy of
    the whole dictionary)."""
    w_dec_ld = sae.W_dec.detach()
    blocks = [w_dec_ld[i : i + rows].double() @ weight_hd.T for i in range(0, w_dec_ld.shape[0], rows)]
    return torch.cat(blocks).numpy()


@torch.inference_mode()
def image_evidence(
    classifier: Classifier, sae: SparseAutoencoder, pixels_3hw: torch.Tensor, tasks: tuple[str, ...]
) -> EvidenceMaps:
    """The evidence maps of one model input (3, H, W) for the binary heads ``tasks``."""
    if pixels_3hw.ndim != 3:
        raise EvidenceError(f"expected one model input (3, H, W), got shape {tuple(pixels_3hw.shape)}")
    classifier.eval()
    fmap_dhw = classifier.forward_features(pixels_3hw[None].float())[0].double()
    d, gh, gw = fmap_dhw.shape
    if sae.d_in != d:
        raise EvidenceError(f"the SAE takes {sae.d_in} features but the classifier's feature map has {d}")
    weight_hd, bias_h = stacked_heads([classifier], tasks)
    x_td = fmap_dhw.reshape(d, gh * gw).T.to(sae.dtype)
    z_tl = sae.encode(x_td).float()
    effect_lh = decoder_effects(sae, weight_hd)
    b_dec_d = sae.b_dec.detach().double()
    maps = EvidenceMaps(
        tasks=tuple(tasks),
        original_hgw=feature_evidence(fmap_dhw.numpy(), weight_hd.numpy()),
        sae_hgw=sae_evidence(z_tl.numpy(), (gh, gw), effect_lh, (weight_hd @ b_dec_d).numpy()),
        bias_h=bias_h.numpy(),
        z_tl=z_tl.numpy(),
        effect_lh=effect_lh,
    )
    assert maps.original_hgw.shape == maps.sae_hgw.shape == (len(tasks), gh, gw)
    return maps
