"""The fast path (fast.py) against the plain reference (loss + autograd): same loss parts, same gradients,
every .grad overwritten; the ReLU step's switch between its dense and sparse kernels."""

from __future__ import annotations

import pytest
import torch
from sae_train_helpers import arch_kwargs

from mammo_sae.sae import ARCHITECTURES, SAEError, SparseAutoencoder, create_sae, fast

D_IN, D_SAE, K = 16, 96, 5
F64 = torch.float64


def make(arch: str, dtype: torch.dtype = F64, **kwargs) -> SparseAutoencoder:
    sae = create_sae(arch, D_IN, D_SAE, dtype=dtype, **arch_kwargs(arch, k=K, **kwargs))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(11)
        sae.b_enc.copy_(0.2 * torch.randn(D_SAE, generator=gen))
        sae.b_dec.copy_(0.4 * torch.randn(D_IN, generator=gen))
        sae.W_enc.add_(0.05 * torch.randn(D_IN, D_SAE, generator=gen))  # untie from W_dec^T
    return sae


def batch(n: int = 40, dtype: torch.dtype = F64, seed: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, D_IN, generator=gen) * 1.3 + 0.7).to(dtype)


def reference(sae: SparseAutoencoder, x: torch.Tensor, **kwargs):
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    parts = sae.loss(x, **kwargs)
    return parts, torch.autograd.grad(parts.total, params)


def fast_path(sae: SparseAutoencoder, x: torch.Tensor, **kwargs):
    for p in sae.parameters():  # the fast path must overwrite, not accumulate or leave stale values
        p.grad = torch.full_like(p, float("nan"))
    parts = sae.loss_and_grad(x, **kwargs)
    return parts, [p.grad.clone() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)]


def assert_same(got, want, rtol: float) -> None:
    (parts, grads), (ref_parts, ref_grads) = got, want
    for name in ("total", "mse", "sparsity", "aux", "l0", "sse", "sst"):
        torch.testing.assert_close(getattr(parts, name), getattr(ref_parts, name).detach(), rtol=rtol, atol=0)
    assert torch.equal(parts.z_count, ref_parts.z_count)
    assert not parts.total.requires_grad
    for name, g, r in zip(("W_enc", "b_enc", "W_dec", "b_dec"), grads, ref_grads, strict=True):
        scale = float(r.abs().max())
        assert scale > 0, name
        assert float((g - r).abs().max()) <= rtol * scale, name


# (architecture, kernel, dead latents, aux_k): AuxK by columns (aux_k >= 1/16 of the dead latents; "few":
# all of them) and by sparse pairs ("many": aux_k < 1/16 of them)
CASES = [
    ("relu", "dense", None, None),
    ("relu", "sparse", None, None),
    ("topk", "sparse", None, None),
    ("topk", "sparse", "few", 4),
    ("topk", "sparse", "some", 4),
    ("topk", "sparse", "many", 2),
    ("batchtopk", "sparse", None, None),
    ("batchtopk", "sparse", "some", 4),
    ("batchtopk", "sparse", "many", 2),
    ("matryoshka", "sparse", None, None),
    ("matryoshka", "sparse", "some", 4),
    ("matryoshka", "sparse", "many", 2),
]


def dead_mask(kind: str | None) -> torch.Tensor | None:
    if kind is None:
        return None
    return {"few": torch.arange(D_SAE) < 3, "some": torch.arange(D_SAE) % 7 == 0}.get(
        kind, torch.arange(D_SAE) < 60
    )


@pytest.mark.parametrize(("arch", "kernel", "dead", "aux_k"), CASES)
def test_fast_gradients_equal_autograd_of_the_written_loss(arch, kernel, dead, aux_k) -> None:
    sae = make(arch, aux_k=aux_k, l1_coeff=0.02)
    x, mask = batch(), dead_mask(dead)
    if arch in ("batchtopk", "matryoshka"):  # the reference moves the running threshold too: one state
        sae.loss_and_grad(x)
        state = sae.threshold.clone()
    want = reference(sae, x, dead_mask=mask)
    if arch in ("batchtopk", "matryoshka"):
        sae.threshold.copy_(state)
    got = fast_path(sae, x, dead_mask=mask, kernel=kernel)
    assert sae.last_kernel == kernel
    assert_same(got, want, rtol=1e-11)
    if dead is not None:
        assert got[0].aux > 0


def test_relu_l1_override_reaches_the_fast_path() -> None:
    sae, x = make("relu"), batch()
    for kernel in ("dense", "sparse"):
        assert_same(
            fast_path(sae, x, sparsity_coeff=0.5, kernel=kernel),
            reference(sae, x, sparsity_coeff=0.5),
            rtol=1e-11,
        )


def test_relu_auto_switches_to_sparse_at_low_l0_and_both_kernels_agree_in_float32() -> None:
    sae, x = make("relu", dtype=torch.float32), batch(64, torch.float32)
    sae.loss_and_grad(x)
    assert sae.last_kernel == "dense"  # about half the code fires
    with torch.no_grad():
        pre = sae.pre_activations(x) - sae.b_enc
        sae.b_enc.fill_(-float(pre.flatten().quantile(0.99)))  # ~1 % fires
    parts = sae.loss_and_grad(x)
    assert sae.last_kernel == "sparse" and float(parts.l0) < fast.SPARSE_L0_FRACTION * D_SAE
    sparse = [p.grad.clone() for p in sae.parameters()]
    sae.loss_and_grad(x, kernel="dense")
    for g, r in zip(sparse, [p.grad for p in sae.parameters()], strict=True):
        assert float((g - r).norm() / r.norm()) < 1e-5
    sae.sparse_l0_fraction = 0.0  # the switch is a per-instance setting
    sae.loss_and_grad(x)
    assert sae.last_kernel == "dense"


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_float32_fast_path_agrees_with_autograd(arch: str) -> None:
    sae, x = make(arch, dtype=torch.float32), batch(128, torch.float32)
    mask = None if arch == "relu" else dead_mask("some")
    want = reference(sae, x, dead_mask=mask)
    got = fast_path(sae, x, dead_mask=mask)
    assert sae.last_kernel in ("dense", "sparse")
    assert_same(got, want, rtol=1e-5)


def test_frozen_parameters_keep_no_gradient() -> None:
    sae, x = make("topk"), batch()
    sae.b_dec.requires_grad_(False)
    sae.loss_and_grad(x)
    assert sae.b_dec.grad is None and sae.W_enc.grad is not None
    sae.loss_and_grad(x, kernel="autograd")
    assert sae.b_dec.grad is None


def test_grads_come_back_after_set_to_none_and_unknown_kernels_are_refused() -> None:
    sae, x = make("relu"), batch()
    opt = torch.optim.SGD(sae.parameters(), lr=0.1)
    sae.loss_and_grad(x)
    first = sae.W_enc.grad
    opt.zero_grad(set_to_none=True)
    sae.loss_and_grad(x)
    assert sae.W_enc.grad is not None and sae.W_enc.grad.data_ptr() == first.data_ptr()  # buffer kept
    with pytest.raises(SAEError, match="kernel must be one of"):
        sae.loss_and_grad(x, kernel="fast")


def test_eval_mode_batchtopk_and_half_precision_fall_back_to_autograd() -> None:
    sae, x = make("batchtopk"), batch()
    sae.loss(x)
    sae.eval()
    sae.loss_and_grad(x)
    assert sae.last_kernel == "autograd"
    bf16 = make("relu", dtype=torch.bfloat16)
    bf16.loss_and_grad(batch(dtype=torch.bfloat16), kernel="sparse")
    assert bf16.last_kernel == "dense"
    topk = make("topk", dtype=torch.bfloat16)
    topk.loss_and_grad(batch(dtype=torch.bfloat16))
    assert topk.last_kernel == "autograd"
