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


def centred_input(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """``x - b_dec`` [B, d] in a kept buffer."""
    return torch.sub(x, sae.b_dec, out=sae.workspace("fast.bd1", tuple(x.shape), x))


def encoder_forward(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one dense product every kernel keeps: ``x - b_dec`` and the pre-activations, in kept buffers."""
    xc = centred_input(sae, x)
    pre = sae.workspace("fast.bh0", (x.shape[0], sae.d_sae), x)
    torch.mm(xc, sae.W_enc, out=pre).add_(sae.b_enc)
    return xc, pre


# --- the ReLU SAE ------------------------------------------------------------------------------------


def relu_step(sae: SparseAutoencoder, x: torch.Tensor, l1_coeff: float, kernel: str) -> LossParts:
    """Loss and gradients of the ReLU SAE; ``kernel`` "dense", "sparse" or "auto" (by this step's L0).

    Two [B, d_sae] buffers: z (later dz / dpre) and the firing mask as floats (sign(z); float passes are
    vectorised, bool ones are several times slower), whose column sums give z_count and L0.
    """
    B, d = x.shape
    h = sae.d_sae
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    gW_enc, gb_enc, gW_dec, gb_dec = (sae.grad_target(p) for p in (W_enc, b_enc, W_dec, b_dec))
    xc, z = encoder_forward(sae, x)
    z.relu_()
    mask = torch.sign(z, out=sae.workspace("fast.bh1", (B, h), x))  # 1.0 where z > 0
    z_count_f = mask.sum(dim=0)
    active = z_count_f.sum()
    sparse = kernel == "sparse"
    if kernel == "auto" and sparse_supported(x):
        sparse = float(active) < sae.sparse_l0_fraction * B * h
    sae.last_kernel = "sparse" if sparse else "dense"
    c = l1_coeff / B  # d(l1 * mean_b sum_j z)/dz where z > 0
    if sparse:
        code = SparseCode.from_dense(z)
        l1_sum = code.val.sum()
        x_hat = code.decode(W_dec, b_dec)
    else:
        l1_sum = z.sum()
        x_hat = torch.addmm(b_dec, z, W_dec, out=sae.workspace("fast.bd0", (B, d), x))
    err = x_hat.sub_(x)
    stats = batch_stats(x, err, active, z_count_f.long())
    mse = stats["sse"] / (B * d)
    sparsity = l1_coeff * l1_sum / B
    g = err.mul_(2.0 / (B * d))
    if sparse:
        code.add_decoder_grad(gW_dec, g, accumulate=False)
        dval = code.sampled_dots(g, W_dec).add_(c)
        code.add_encoder_grad(gW_enc, xc, dval, accumulate=False)
        code.latent_sums(dval, out=gb_enc, accumulate=False)
    else:
        torch.mm(z.T, g, out=gW_dec)
        dpre = torch.mm(g, W_dec.T, out=z)  # z is spent: its buffer takes dz
        dpre.add_(c).mul_(mask)
        torch.mm(xc.T, dpre, out=gW_enc)
        torch.sum(dpre, dim=0, out=gb_enc)
    torch.addmv(g.sum(dim=0), W_enc, gb_enc, alpha=-1, out=gb_dec)
    return LossParts(total=mse + sparsity, mse=mse, sparsity=sparsity, aux=x.new_zeros(()), **stats)


# --- the TopK family ---------------------------------------------------------------------------------


def topk_code(pre: torch.Tensor, k: int) -> SparseCode:
    """TopK_k(ReLU(pre)) per token as a sparse code (k entries per token, zeros kept explicit)."""
    val, idx = pre.topk(k, dim=1, sorted=False)
    return SparseCode.from_rows(idx, val.relu_(), pre.shape[1])


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


def batch_topk_code(pre: torch.Tensor, n_keep: int) -> SparseCode:
    flat, val = batch_topk_select(pre, n_keep)
    return SparseCode.from_flat(flat, val.relu_(), pre.shape[0], pre.shape[1])


def auxk_residual_variance(r: torch.Tensor) -> torch.Tensor:
    centred = r - r.mean(dim=0)
    return torch.sum(centred * centred).clamp_min(torch.finfo(r.dtype).tiny)


def _aux_step(
    sae: SparseAutoencoder,
    xc: torch.Tensor,
    pre: torch.Tensor,
    residual: torch.Tensor,
    dead_mask: torch.Tensor,
    grads: list[torch.Tensor],
) -> torch.Tensor:
    """AuxK: the dead latents' top ``aux_k`` (ReLU) pre-activations reconstruct the residual; adds the
    weighted term's gradients to ``grads`` (W_enc, b_enc, W_dec) and returns the weighted term."""
    gW_enc, gb_enc, gW_dec = grads
    W_dec = sae.W_dec
    dead = dead_mask.nonzero().squeeze(1)
    n_dead = dead.numel()
    if n_dead == 0:
        return xc.new_zeros(())
    k_aux = min(sae.aux_k, n_dead)
    variance = auxk_residual_variance(residual)
    if k_aux * AUX_PAIRS_RATIO < n_dead:  # sparse among the dead latents: pairs
        masked = sae.workspace("fast.bh1", tuple(pre.shape), pre)
        masked.copy_(pre).masked_fill_(~dead_mask, float("-inf"))
        code = topk_code(masked, k_aux)
        diff = code.decode(W_dec, None).sub_(residual)
        aux = sae.aux_coeff * torch.sum(diff * diff) / variance
        ga = diff.mul_(2 * sae.aux_coeff / variance)
        code.add_decoder_grad(gW_dec, ga, accumulate=True)
        dval = code.sampled_dots(ga, W_dec).mul_(code.val_t > 0)
        code.add_encoder_grad(gW_enc, xc, dval, accumulate=True)
        code.latent_sums(dval, out=gb_enc, accumulate=True)
        return aux
    pre_dead = pre.index_select(1, dead)  # dense among the dead latents: their columns
    if k_aux < n_dead:
        val, idx = pre_dead.topk(k_aux, dim=1, sorted=False)
        a = torch.zeros_like(pre_dead).scatter_(1, idx, val.relu_())
    else:
        a = pre_dead.relu_()
    w_dead = W_dec.index_select(0, dead)
    diff = (a @ w_dead).sub_(residual)
    aux = sae.aux_coeff * torch.sum(diff * diff) / variance
    ga = diff.mul_(2 * sae.aux_coeff / variance)
    gW_dec.index_add_(0, dead, a.T @ ga)
    da = (ga @ w_dead.T).mul_(a > 0)
    gW_enc.index_add_(1, dead, xc.T @ da)
    gb_enc.index_add_(0, dead, da.sum(dim=0))
    return aux


def code_step(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    select: Callable[[torch.Tensor], SparseCode],
    dead_mask: torch.Tensor | None,
) -> tuple[LossParts, SparseCode]:
    """Loss and gradients of a TopK-family SAE whose code ``select(pre)`` picks; returns the code too."""
    B, d = x.shape
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    gW_enc, gb_enc, gW_dec, gb_dec = (sae.grad_target(p) for p in (W_enc, b_enc, W_dec, b_dec))
    xc, pre = encoder_forward(sae, x)
    code = select(pre)
    sae.last_kernel = "sparse"
    x_hat = code.decode(W_dec, b_dec)
    err = x_hat.sub_(x)
    z_count, active = code.fired()
    stats = batch_stats(x, err, active, z_count)
    mse = stats["sse"] / (B * d)
    residual = -err if dead_mask is not None else None  # x - x_hat, before err becomes the gradient
    g = (err * (2.0 / (B * d))) if residual is not None else err.mul_(2.0 / (B * d))
    code.add_decoder_grad(gW_dec, g, accumulate=False)
    dval = code.sampled_dots(g, W_dec).mul_(code.val_t > 0)
    code.add_encoder_grad(gW_enc, xc, dval, accumulate=False)
    code.latent_sums(dval, out=gb_enc, accumulate=False)
    aux = x.new_zeros(())
    if residual is not None:
        aux = _aux_step(sae, xc, pre, residual, dead_mask, [gW_enc, gb_enc, gW_dec])
    torch.addmv(g.sum(dim=0), W_enc, gb_enc, alpha=-1, out=gb_dec)
    parts = LossParts(total=mse + aux, mse=mse, sparsity=x.new_zeros(()), aux=aux, **stats)
    return parts, code
