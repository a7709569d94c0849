"""One pass of images through backbone + SAE, one chunk of a split at a time.

A chunk is a fixed slice of a split's images; its results (sparse codes of every token, per-image mean
latents, head logits and error terms, each token's share of each head's logit (its evidence), where each
token lies in the breast, frame transforms, reconstruction sums) are one ``ChunkResult``, which
the bundle writer commits to disk (``mammo_sae.bundle.writing.work``) so that an interrupted analysis resumes
at the first missing chunk. Chunks are independent: their numbers do not depend on which other chunks ran
in the same process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from mammo_sae.analysis.codes import TokenCodes
from mammo_sae.analysis.frames import AnalysisFrames, AnalysisRecord, collate_analysis
from mammo_sae.data.breast_mask import token_fractions
from mammo_sae.models import Classifier
from mammo_sae.sae import SparseAutoencoder

ENCODE_TOKENS = 4096  # tokens encoded at once (bounds the dense [tokens, d_sae] code block)


@dataclass
class Models:
    """What a chunk runs: the backbone (inside the first classifier), every head, the SAE."""

    feature_model: Classifier  # its backbone makes the features
    heads_w_hd: torch.Tensor  # [heads, d] float64, all binary heads stacked in task order
    heads_b_h: torch.Tensor  # [heads] float64
    sae: SparseAutoencoder
    device: torch.device


@dataclass
class ChunkResult:
    positions: np.ndarray  # [n_ok] positions (in the split's record list) of the images that loaded
    errors: dict[int, str]  # position -> why the image was skipped
    zbar_nl: np.ndarray  # [n_ok, d_sae] float32 mean latents
    zmax_nl: np.ndarray  # [n_ok, d_sae] float32 per-image peak latents (max over tokens)
    logit_original_nh: np.ndarray  # [n_ok, heads] float64
    error_term_nh: np.ndarray  # [n_ok, heads] float64: w . (mean x - mean x_hat)
    codes: TokenCodes | None  # None for score-only chunks
    transforms: list[str]
    recon: np.ndarray  # [3 + 2 d]: tokens, sse, l0 sum, sum x [d], sum x^2 [d] (float64)
    fired_l: np.ndarray | None = (
        None  # [d_sae] int64 tokens on which each latent fired (before any top-n cut)
    )
    nnz: int = 0  # entries of the codes (known without loading them)
    grid: tuple[int, int] | None = None
    evidence_nht: np.ndarray | None = None  # [n_ok, heads, T] float32: (w_h . f_t) / T, the original logit's
    tissue_n3t: np.ndarray | None = None  # [n_ok, 3, T] float16: breast, skin, marker fraction per token


def encode_map(
    fmap_bchw: torch.Tensor, models: Models, keep_codes: bool, top_n: int | None
) -> tuple[torch.Tensor, torch.Tensor, TokenCodes | None, torch.Tensor, torch.Tensor]:
    """Mean and peak latents [B, d_sae], sparse codes and reconstruction sums of a batch's feature maps.

    Tokens are encoded a few whole images at a time, so the dense code block stays bounded."""
    sae = models.sae
    b, d, h, w = fmap_bchw.shape
    tokens = h * w
    x_btd = fmap_bchw.permute(0, 2, 3, 1).reshape(b, tokens, d).to(sae.dtype)
    step = max(1, ENCODE_TOKENS // tokens)
    zbar_bl = torch.empty(b, sae.d_sae, dtype=torch.float32, device=x_btd.device)
    zmax_bl = torch.empty_like(zbar_bl)
    fired_l = torch.zeros(sae.d_sae, dtype=torch.int64, device=x_btd.device)
    parts: list[TokenCodes] = []
    sse = l0 = 0.0
    for start in range(0, b, step):
        x = x_btd[start : start + step].reshape(-1, d)
        z = sae.encode(x)
        zbar_bl[start : start + step] = z.reshape(-1, tokens, sae.d_sae).mean(dim=1)
        zmax_bl[start : start + step] = z.reshape(-1, tokens, sae.d_sae).amax(dim=1)
        err = sae.decode(z) - x
        sse += float(torch.sum(err.double() ** 2))
        l0 += float((z > 0).sum())
        fired_l += (z > 0).sum(dim=0)
        if keep_codes:
            parts.append(TokenCodes.from_dense(z.float().cpu(), grid=(h, w), top_n=top_n))
    codes = (TokenCodes.concat(parts) if len(parts) > 1 else parts[0]) if keep_codes else None
    x64 = x_btd.reshape(-1, d).double()
    head = torch.tensor([b * tokens, sse, l0], dtype=torch.float64)
    recon = torch.cat([head, x64.sum(0).cpu(), (x64 * x64).sum(0).cpu()])
    return zbar_bl, zmax_bl, codes, recon, fired_l


@torch.inference_mode()
def run_chunk(
    records: list[AnalysisRecord],
    models: Models,
    frame_size: tuple[int, int],
    *,
    keep_codes: bool,
    top_n: int | None,
    batch_size: int,
    workers: int,
    on_batch: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Run one chunk of images; images that cannot be read are reported, not raised."""
    loader = DataLoader(
        AnalysisFrames(records, frame_size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_analysis,
        persistent_workers=False,
    )
    backbone = models.feature_model.backbone
    sae = models.sae
    positions: list[int] = []
    errors: dict[int, str] = {}
    zbars, zmaxs, logits, error_terms, codes, transforms, recons = [], [], [], [], [], [], []
    evidence, tissue = [], []
    fired_total: np.ndarray | None = None
    for batch in loader:
        errors |= batch.errors
        if batch.pixels is not None:
            pixels = batch.pixels.to(models.device, memory_format=torch.channels_last)
            fmap = backbone.forward_features(pixels)
            zbar, zmax, batch_codes, recon, fired = encode_map(fmap, models, keep_codes, top_n)
            fired_total = fired.cpu().numpy() + (fired_total if fired_total is not None else 0)
            pooled = fmap.double().mean(dim=(2, 3))  # [B, d] mean x
            mean_x_hat = zbar.double() @ sae.W_dec.double() + sae.b_dec.double()
            logits.append((pooled @ models.heads_w_hd.T + models.heads_b_h).cpu().numpy())
            error_terms.append(((pooled - mean_x_hat) @ models.heads_w_hd.T).cpu().numpy())
            if keep_codes:  # the analysed split's maps; a score split needs only the mean latents
                evidence.append(token_evidence(fmap, models.heads_w_hd))
                grid = (fmap.shape[2], fmap.shape[3])
                fractions = [token_fractions(bits, grid).reshape(3, -1) for bits in batch.tissue_bhw]
                tissue.append(np.stack(fractions))
            zbars.append(zbar.cpu().numpy())
            zmaxs.append(zmax.cpu().numpy())
            positions += batch.positions
            transforms += batch.transforms
            recons.append(recon.numpy())
            if batch_codes is not None:
                codes.append(batch_codes)
        if on_batch is not None:
            on_batch(len(batch.positions) + len(batch.errors))
    n_heads, d_sae = models.heads_b_h.shape[0], sae.d_sae
    empty = np.zeros((0, n_heads))
    return ChunkResult(
        positions=np.asarray(positions, dtype=np.int64),
        errors=errors,
        zbar_nl=np.concatenate(zbars) if zbars else np.zeros((0, d_sae), np.float32),
        zmax_nl=np.concatenate(zmaxs) if zmaxs else np.zeros((0, d_sae), np.float32),
        logit_original_nh=np.concatenate(logits) if logits else empty,
        error_term_nh=np.concatenate(error_terms) if error_terms else empty,
        codes=(TokenCodes.concat(codes) if codes else None) if keep_codes else None,
        nnz=sum(c.nnz for c in codes),
        grid=codes[0].grid if codes else None,
        transforms=transforms,
        recon=np.sum(recons, axis=0) if recons else np.zeros(3 + 2 * sae.d_in),
        fired_l=fired_total if fired_total is not None else np.zeros(d_sae, np.int64),
        evidence_nht=np.concatenate(evidence) if evidence else None,
        tissue_n3t=np.concatenate(tissue).astype(np.float16) if tissue else None,
    )


def token_evidence(fmap_bdhw: torch.Tensor, heads_w_hd: torch.Tensor) -> np.ndarray:
    """[B, heads, T] float32: each token's share ``(w_h . f_t) / T`` of each head's logit minus its bias
    (``analysis.evidence.feature_evidence`` for a batch, products in float64)."""
    b, d, h, w = fmap_bdhw.shape
    tokens_bdt = fmap_bdhw.reshape(b, d, h * w).double()
    share_bht = torch.einsum("hd,bdt->bht", heads_w_hd.to(tokens_bdt.device), tokens_bdt) / (h * w)
    return share_bht.float().cpu().numpy()
