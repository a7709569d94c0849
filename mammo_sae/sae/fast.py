"""Hand-written SAE training steps: the loss and every parameter gradient without an autograd graph.

The plain reference is ``SparseAutoencoder.loss`` + autograd; ``tests/test_sae_fast.py`` checks that
these steps give the same gradients. With ``e = x_hat - x``, ``g = 2 e / (B d)`` (the MSE gradient) and
``dpre`` the gradient at the pre-activations:

    dW_dec = z^T g        db_enc = sum_b dpre        dW_enc = (x - b_dec)^T dpre
    dz     = g W_dec^T    db_dec = sum_b g - W_enc db_enc       (a matrix-vector product, not a GEMM)

Three kernels:

- ``relu_step`` dense: 5 GEMMs (encoder, decoder, dW_dec, dz, dW_enc) = 10 d h FLOP per token, into
  kept buffers. Letting autograd differentiate ``x - b_dec`` would add a sixth GEMM for db_dec.
- ``relu_step`` sparsity-aware: taken when this step's L0 (counted on the encoder output) is below
  ``SPARSE_L0_FRACTION`` of d_sae. Only the encoder GEMM stays dense; the code z goes to CSR and the
  decoder, dW_dec, dz (sampled only where z > 0) and dW_enc use sparse-dense products over the active
  (token, latent) pairs.
- ``code_step`` for TopK / BatchTopK: the same sparse products over the k selected pairs per token
  (decode gathers k decoder rows per token; dW_dec and dW_enc only touch the selected latents), plus the
  AuxK term over dead latents: dense over the dead latents' columns when the auxiliary code is dense
  among them, sparse pairs when it is not.

Suffixes name tensor axes: b tokens of the batch, d features (d_in), s latents (d_sae, ``h`` in the
FLOP counts above); ``xc_bd`` is ``x - b_dec``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from mammo_sae.sae.base import LossParts, batch_stats

if TYPE_CHECKING:
    from mammo_sae.sae.base import SparseAutoencoder

# The relu step goes sparse when fewer than this fraction of the [B, d_sae] code is non-zero.
# benchmarks/sae_train.py measures the crossover: on a 2-core AVX-512 CPU the sparse step is ~2.3x faster
# at 1 %, ~1.6x at 3 % and break-even near 5 %.
SPARSE_L0_FRACTION = 0.03
# AuxK uses sparse pairs when it keeps fewer than 1/AUX_PAIRS_RATIO of the dead latents per token.
AUX_PAIRS_RATIO = 16
SPARSE_DTYPES = (torch.float32, torch.float64)


def sparse_supported(x: torch.Tensor) -> bool:
    """Whether the sparse kernels run for this dtype (sparse CSR products cover float32 / float64)."""
    return x.dtype in SPARSE_DTYPES


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silence torch's one-off 'Sparse CSR tensor support is in beta' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with _quiet_csr():
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    crow = torch.zeros(counts.numel() + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts, dim=0, out=crow[1:])
    return crow


class SparseCode:
    """The selected entries of a code z [B, h]: token-major (CSR by token) for decoding, latent-major
    (CSR of z^T, built once) for the gradient products, which then read each decoder / encoder row once.

    ``val`` may hold explicit zeros (a TopK slot whose pre-activation was <= 0); they carry no gradient.
    Gradient values (``dval``) are in latent-major order, the order of ``col_t`` / ``val_t``.
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_latents: int) -> None:
        self.crow, self.col, self.val = crow, col.long(), val
        self.shape = (crow.numel() - 1, n_latents)
        n_tokens = self.shape[0]
        order = torch.argsort(self.col, stable=True)
        rows = torch.repeat_interleave(
            torch.arange(n_tokens, device=col.device), self.crow.diff(), output_size=self.col.numel()
        )
        self.crow_t = _offsets(torch.bincount(self.col, minlength=n_latents))
        self.row_t, self.col_t, self.val_t = rows[order], self.col[order], self.val[order]

    @classmethod
    def from_rows(cls, idx: torch.Tensor, val: torch.Tensor, n_latents: int) -> SparseCode:
        """k entries per token: ``idx``, ``val`` [B, k]."""
        b, k = idx.shape
        crow = torch.arange(0, b * k + 1, k, device=idx.device, dtype=torch.long)
        return cls(crow, idx.reshape(-1), val.reshape(-1), n_latents)

    @classmethod
    def from_dense(cls, z: torch.Tensor) -> SparseCode:
        """The non-zeros of a dense z [B, h]."""
        with _quiet_csr():
            csr = z.to_sparse_csr()
        return cls(csr.crow_indices().long(), csr.col_indices(), csr.values(), z.shape[1])

    @classmethod
    def from_flat(cls, flat: torch.Tensor, val: torch.Tensor, n_tokens: int, n_latents: int) -> SparseCode:
        """Entries at sorted flat indices ``token * h + latent``."""
        rows = torch.div(flat, n_latents, rounding_mode="floor")
        crow = _offsets(torch.bincount(rows, minlength=n_tokens))
        return cls(crow, flat - rows * n_latents, val, n_latents)

    def by_latent(self, values: torch.Tensor) -> torch.Tensor:
        """z^T [h, B] in CSR with latent-major ``values``."""
        return _csr(self.crow_t, self.row_t, values, (self.shape[1], self.shape[0]))

    def decode(self, W_dec: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``z @ W_dec (+ bias)`` [B, d]: a weighted sum of the k decoder rows of each token."""
        out = torch.nn.functional.embedding_bag(
            self.col, W_dec, self.crow, mode="sum", per_sample_weights=self.val, include_last_offset=True
        )
        return out if bias is None else out.add_(bias)

    def add_decoder_grad(self, grad: torch.Tensor, g: torch.Tensor, *, accumulate: bool) -> None:
        """``grad (+)= z^T g`` [h, d]; rows of unselected latents get 0 (or stay, when accumulating)."""
        grad.addmm_(self.by_latent(self.val_t), g, beta=1 if accumulate else 0)

    def sampled_dots(self, g: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        """``(g @ W_dec^T)`` at the selected entries only (dz where it is needed), latent-major [nnz]."""
        pattern = self.by_latent(torch.zeros_like(self.val_t))  # beta=0 still multiplies: no NaN here
        return torch.sparse.sampled_addmm(pattern, W_dec, g.T, beta=0).values()

    def add_encoder_grad(
        self, grad: torch.Tensor, xc: torch.Tensor, dval: torch.Tensor, *, accumulate: bool
    ) -> None:
        """``grad (+)= xc^T dpre`` [d, h], dpre the sparse [B, h] of ``dval``: written as
        ``grad^T (+)= dpre^T xc`` so that each latent's column is one sparse row."""
        grad.T.addmm_(self.by_latent(dval), xc, beta=1 if accumulate else 0)

    def latent_sums(self, dval: torch.Tensor, out: torch.Tensor, *, accumulate: bool) -> torch.Tensor:
        """``out (+)= sum over tokens of dpre`` [h]."""
        if not accumulate:
            out.zero_()
        return out.index_add_(0, self.col_t, dval)

    def fired(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_count [h], number of entries with z > 0)."""
        positive = self.val > 0
        z_count = torch.bincount(self.col[positive], minlength=self.shape[1])
        return z_count, positive.sum()


def centred_input(sae: SparseAutoencoder, x_bd: torch.Tensor) -> torch.Tensor:
    """``x - b_dec`` [B, d] in a kept buffer."""
    return torch.sub(x_bd, sae.b_dec, out=sae.workspace("fast.bd1", tuple(x_bd.shape), x_bd))


def encoder_forward(sae: SparseAutoencoder, x_bd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one dense product every kernel keeps: ``x - b_dec`` [B, d] and the pre-activations [B, s], in
    kept buffers."""
    assert x_bd.dim() == 2 and x_bd.shape[1] == sae.d_in, tuple(x_bd.shape)
    xc_bd = centred_input(sae, x_bd)
    pre_bs = sae.workspace("fast.bh0", (x_bd.shape[0], sae.d_sae), x_bd)
    torch.mm(xc_bd, sae.W_enc, out=pre_bs).add_(sae.b_enc)
    return xc_bd, pre_bs


# --- the ReLU SAE ------------------------------------------------------------------------------------


def relu_step(sae: SparseAutoencoder, x_bd: torch.Tensor, l1_coeff: float, kernel: str) -> LossParts:
    """Loss and gradients of the ReLU SAE; ``kernel`` "dense", "sparse" or "auto" (by this step's L0).

    Two [B, d_sae] buffers: z (later dz / dpre) and the firing mask as floats (sign(z); float passes are
    vectorised, bool ones are several times slower), whose column sums give z_count and L0.
    """
    B, d = x_bd.shape
    s = sae.d_sae
    W_enc_ds, b_enc_s, W_dec_sd, b_dec_d = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    gW_enc_ds, gb_enc_s, gW_dec_sd, gb_dec_d = (
        sae.grad_target(p) for p in (W_enc_ds, b_enc_s, W_dec_sd, b_dec_d)
    )
    xc_bd, z_bs = encoder_forward(sae, x_bd)
    z_bs.relu_()
    mask_bs = torch.sign(z_bs, out=sae.workspace("fast.bh1", (B, s), x_bd))  # 1.0 where z > 0
    z_count_s = mask_bs.sum(dim=0)
    active = z_count_s.sum()
    sparse = kernel == "sparse"
    if kernel == "auto" and sparse_supported(x_bd):
        sparse = float(active) < sae.sparse_l0_fraction * B * s
    sae.last_kernel = "sparse" if sparse else "dense"
    c = l1_coeff / B  # d(l1 * mean_b sum_j z)/dz where z > 0
    if sparse:
        code = SparseCode.from_dense(z_bs)
        l1_sum = code.val.sum()
        x_hat_bd = code.decode(W_dec_sd, b_dec_d)
    else:
        l1_sum = z_bs.sum()
        x_hat_bd = torch.addmm(b_dec_d, z_bs, W_dec_sd, out=sae.workspace("fast.bd0", (B, d), x_bd))
    err_bd = x_hat_bd.sub_(x_bd)
    stats = batch_stats(x_bd, err_bd, active, z_count_s.long())
    mse = stats["sse"] / (B * d)
    sparsity = l1_coeff * l1_sum / B
    g_bd = err_bd.mul_(2.0 / (B * d))
    if sparse:
        code.add_decoder_grad(gW_dec_sd, g_bd, accumulate=False)
        dval = code.sampled_dots(g_bd, W_dec_sd).add_(c)
        code.add_encoder_grad(gW_enc_ds, xc_bd, dval, accumulate=False)
        code.latent_sums(dval, out=gb_enc_s, accumulate=False)
    else:
        torch.mm(z_bs.T, g_bd, out=gW_dec_sd)
        dpre_bs = torch.mm(g_bd, W_dec_sd.T, out=z_bs)  # z is spent: its buffer takes dz
        dpre_bs.add_(c).mul_(mask_bs)
        torch.mm(xc_bd.T, dpre_bs, out=gW_enc_ds)
        torch.sum(dpre_bs, dim=0, out=gb_enc_s)
    torch.addmv(g_bd.sum(dim=0), W_enc_ds, gb_enc_s, alpha=-1, out=gb_dec_d)
    return LossParts(total=mse + sparsity, mse=mse, sparsity=sparsity, aux=x_bd.new_zeros(()), **stats)


# --- the TopK family ---------------------------------------------------------------------------------


def topk_code(pre_bs: torch.Tensor, k: int) -> SparseCode:
    """TopK_k(ReLU(pre)) per token as a sparse code (k entries per token, zeros kept explicit)."""
    val_bk, idx_bk = pre_bs.topk(k, dim=1, sorted=False)
    return SparseCode.from_rows(idx_bk, val_bk.relu_(), pre_bs.shape[1])


def batch_topk_select(pre: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_keep`` largest entries of the whole batch ``pre`` [B, h]: (sorted flat indices, values).

    Exact, without a top-k over all B*h entries: each token's top candidates (twice its average share)
    give a lower bound T on the batch threshold; tokens whose every candidate survived are re-scanned
    for all entries >= T; the top ``n_keep`` of that union is the answer (up to ties).
    """
    B, h = pre.shape
    n_keep = min(int(n_keep), B * h)
    n_cand = min(h, max(1, 2 * -(-n_keep // B)))
    cand_val, cand_idx = pre.topk(n_cand, dim=1, sorted=False)
    top_val, top_pos = cand_val.reshape(-1).topk(n_keep, sorted=False)
    rows = torch.div(top_pos, n_cand, rounding_mode="floor")
    flat = rows * h + cand_idx.reshape(-1)[top_pos]
    if n_cand < h:
        full = torch.bincount(rows, minlength=B) == n_cand
        if bool(full.any()):
            threshold = top_val.min()
            over = full.nonzero().squeeze(1)
            cand_rows = torch.arange(B, device=pre.device).repeat_interleave(n_cand)
            keep = ~full[cand_rows]
            sub = pre.index_select(0, over)
            r, c = (sub >= threshold).nonzero(as_tuple=True)
            all_flat = torch.cat([(cand_rows * h + cand_idx.reshape(-1))[keep], over[r] * h + c])
            all_val = torch.cat([cand_val.reshape(-1)[keep], sub[r, c]])
            top_val, pos = all_val.topk(n_keep, sorted=False)
            flat = all_flat[pos]
    flat, order = flat.sort()
    return flat, top_val[order]


def batch_topk_code(pre_bs: torch.Tensor, n_keep: int) -> SparseCode:
    """The ``n_keep`` largest ReLU(pre) of the whole batch as a sparse code."""
    flat, val = batch_topk_select(pre_bs, n_keep)
    return SparseCode.from_flat(flat, val.relu_(), pre_bs.shape[0], pre_bs.shape[1])


def auxk_residual_variance(r_bd: torch.Tensor) -> torch.Tensor:
    """``||r - mean_b r||^2`` (sums over batch and features), at least the smallest positive float."""
    centred_bd = r_bd - r_bd.mean(dim=0)
    return torch.sum(centred_bd * centred_bd).clamp_min(torch.finfo(r_bd.dtype).tiny)


def aux_step(
    sae: SparseAutoencoder,
    xc_bd: torch.Tensor,
    pre_bs: torch.Tensor,
    residual_bd: torch.Tensor,
    dead_mask_s: torch.Tensor,
    grads: list[torch.Tensor],
) -> torch.Tensor:
    """AuxK: the dead latents' top ``aux_k`` (ReLU) pre-activations reconstruct the residual; adds the
    weighted term's gradients to ``grads`` (W_enc, b_enc, W_dec) and returns the weighted term."""
    gW_enc_ds, gb_enc_s, gW_dec_sd = grads
    W_dec_sd = sae.W_dec
    dead = dead_mask_s.nonzero().squeeze(1)
    n_dead = dead.numel()
    if n_dead == 0:
        return xc_bd.new_zeros(())
    k_aux = min(sae.aux_k, n_dead)
    variance = auxk_residual_variance(residual_bd)
    if k_aux * AUX_PAIRS_RATIO < n_dead:  # sparse among the dead latents: pairs
        masked_bs = sae.workspace("fast.bh1", tuple(pre_bs.shape), pre_bs)
        masked_bs.copy_(pre_bs).masked_fill_(~dead_mask_s, float("-inf"))
        code = topk_code(masked_bs, k_aux)
        diff_bd = code.decode(W_dec_sd, None).sub_(residual_bd)
        aux = sae.aux_coeff * torch.sum(diff_bd * diff_bd) / variance
        ga_bd = diff_bd.mul_(2 * sae.aux_coeff / variance)
        code.add_decoder_grad(gW_dec_sd, ga_bd, accumulate=True)
        dval = code.sampled_dots(ga_bd, W_dec_sd).mul_(code.val_t > 0)
        code.add_encoder_grad(gW_enc_ds, xc_bd, dval, accumulate=True)
        code.latent_sums(dval, out=gb_enc_s, accumulate=True)
        return aux
    pre_dead_bn = pre_bs.index_select(1, dead)  # dense among the n dead latents: their columns
    if k_aux < n_dead:
        val, idx = pre_dead_bn.topk(k_aux, dim=1, sorted=False)
        a_bn = torch.zeros_like(pre_dead_bn).scatter_(1, idx, val.relu_())
    else:
        a_bn = pre_dead_bn.relu_()
    w_dead_nd = W_dec_sd.index_select(0, dead)
    diff_bd = (a_bn @ w_dead_nd).sub_(residual_bd)
    aux = sae.aux_coeff * torch.sum(diff_bd * diff_bd) / variance
    ga_bd = diff_bd.mul_(2 * sae.aux_coeff / variance)
    gW_dec_sd.index_add_(0, dead, a_bn.T @ ga_bd)
    da_bn = (ga_bd @ w_dead_nd.T).mul_(a_bn > 0)
    gW_enc_ds.index_add_(1, dead, xc_bd.T @ da_bn)
    gb_enc_s.index_add_(0, dead, da_bn.sum(dim=0))
    return aux


def code_step(
    sae: SparseAutoencoder,
    x_bd: torch.Tensor,
    select: Callable[[torch.Tensor], SparseCode],
    dead_mask_s: torch.Tensor | None,
) -> tuple[LossParts, SparseCode]:
    """Loss and gradients of a TopK-family SAE whose code ``select(pre)`` picks; returns the code too."""
    B, d = x_bd.shape
    W_enc_ds, b_enc_s, W_dec_sd, b_dec_d = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    gW_enc_ds, gb_enc_s, gW_dec_sd, gb_dec_d = (
        sae.grad_target(p) for p in (W_enc_ds, b_enc_s, W_dec_sd, b_dec_d)
    )
    xc_bd, pre_bs = encoder_forward(sae, x_bd)
    code = select(pre_bs)
    assert code.shape == tuple(pre_bs.shape), (code.shape, tuple(pre_bs.shape))
    sae.last_kernel = "sparse"
    x_hat_bd = code.decode(W_dec_sd, b_dec_d)
    err_bd = x_hat_bd.sub_(x_bd)
    z_count_s, active = code.fired()
    stats = batch_stats(x_bd, err_bd, active, z_count_s)
    mse = stats["sse"] / (B * d)
    residual_bd = -err_bd if dead_mask_s is not None else None  # x - x_hat, before err becomes the gradient
    g_bd = (err_bd * (2.0 / (B * d))) if residual_bd is not None else err_bd.mul_(2.0 / (B * d))
    code.add_decoder_grad(gW_dec_sd, g_bd, accumulate=False)
    dval = code.sampled_dots(g_bd, W_dec_sd).mul_(code.val_t > 0)
    code.add_encoder_grad(gW_enc_ds, xc_bd, dval, accumulate=False)
    code.latent_sums(dval, out=gb_enc_s, accumulate=False)
    aux = x_bd.new_zeros(())
    if residual_bd is not None:
        aux = aux_step(sae, xc_bd, pre_bs, residual_bd, dead_mask_s, [gW_enc_ds, gb_enc_s, gW_dec_sd])
    torch.addmv(g_bd.sum(dim=0), W_enc_ds, gb_enc_s, alpha=-1, out=gb_dec_d)
    parts = LossParts(total=mse + aux, mse=mse, sparsity=x_bd.new_zeros(()), aux=aux, **stats)
    return parts, code
