"""The SAE architectures: the written formulas, initialisation, decoder-norm bookkeeping, BatchTopK's
threshold, AuxK, b_dec initialisation, latent restarts and folding of input normalisation."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from sae_train_helpers import arch_kwargs

from mammo_sae.sae import ARCHITECTURES, BatchTopKSAE, SAEError, SparseAutoencoder, create_sae
from mammo_sae.sae.fast import batch_topk_select

D_IN, D_SAE, K = 12, 48, 4
F64 = torch.float64


def make(arch: str, **kwargs) -> SparseAutoencoder:
    sae = create_sae(
        arch, D_IN, D_SAE, seed=kwargs.pop("seed", 0), dtype=F64, **arch_kwargs(arch, k=K, **kwargs)
    )
    with torch.no_grad():  # move away from the symmetric init so that every term is exercised
        gen = torch.Generator().manual_seed(7)
        sae.b_enc.copy_(0.1 * torch.randn(D_SAE, generator=gen, dtype=F64))
        sae.b_dec.copy_(0.3 * torch.randn(D_IN, generator=gen, dtype=F64))
    return sae


def batch(n: int = 32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, D_IN, generator=gen, dtype=F64) * 1.5 + 0.5


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_parameters_have_saelens_shapes_and_the_stated_init(arch: str) -> None:
    sae = create_sae(arch, D_IN, D_SAE, seed=3, **arch_kwargs(arch, k=K))
    assert sae.architecture == arch and (sae.d_in, sae.d_sae) == (D_IN, D_SAE)
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert sae.b_enc.shape == (D_SAE,) and sae.b_dec.shape == (D_IN,)
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in sae.parameters())
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert not sae.b_enc.any() and not sae.b_dec.any()
    assert torch.equal(create_sae(arch, D_IN, D_SAE, seed=3, **arch_kwargs(arch, k=K)).W_dec, sae.W_dec)
    assert not torch.equal(create_sae(arch, D_IN, D_SAE, seed=4, **arch_kwargs(arch, k=K)).W_dec, sae.W_dec)
    assert sae.hparams["seed"] == 3


def test_hparams_keep_what_each_architecture_uses() -> None:
    assert create_sae("relu", 8, 16, l1_coeff=1e-3).hparams == {"l1_coeff": 1e-3, "seed": 0}
    topk = create_sae("topk", 8, 16, k=3)
    assert topk.hparams == {"k": 3, "aux_k": 4, "aux_coeff": 1 / 32, "seed": 0}  # aux_k = d_in // 2
    assert create_sae("batchtopk", 8, 16, k=3, aux_k=5).hparams["aux_k"] == 5


def test_bad_names_and_arguments_are_refused_clearly() -> None:
    with pytest.raises(SAEError, match="did you mean 'topk'"):
        create_sae("topK", 8, 16)
    with pytest.raises(SAEError, match="k=17 is larger than d_sae=16"):
        create_sae("topk", 8, 16, k=17)
    with pytest.raises(SAEError, match="d_sae must be a positive integer"):
        create_sae("relu", 8, 0)
    with pytest.raises(SAEError, match="l1_coeff"):
        create_sae("relu", 8, 16, l1_coeff=-1.0)
    sae = create_sae("relu", 8, 16)
    with pytest.raises(SAEError, match="d_in=8"):
        sae.encode(torch.zeros(3, 9))
    with pytest.raises(SAEError, match="dead_mask"):
        sae.loss(torch.zeros(3, 8), dead_mask=torch.zeros(16))


def test_relu_encode_decode_and_loss_are_the_paper_formula() -> None:
    sae, x = make("relu", l1_coeff=0.01), batch()
    z = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    x_hat = z @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(sae.encode(x), z)
    torch.testing.assert_close(sae.decode(z), x_hat)
    got_x_hat, got_z = sae(x)
    torch.testing.assert_close(got_x_hat, x_hat)
    torch.testing.assert_close(got_z, z)
    parts = sae.loss(x)
    mse = ((x_hat - x) ** 2).mean()
    torch.testing.assert_close(parts.mse, mse)
    torch.testing.assert_close(parts.sparsity, 0.01 * z.abs().sum(dim=1).mean())
    torch.testing.assert_close(parts.total, parts.mse + parts.sparsity)
    assert parts.total.requires_grad and not parts.mse.requires_grad
    torch.testing.assert_close(sae.loss(x, sparsity_coeff=0.0).total, mse)  # the trainer's L1 warm-up
    assert torch.equal(parts.z_count, (z > 0).sum(dim=0))
    torch.testing.assert_close(parts.l0, (z > 0).sum(dim=1).double().mean())
    torch.testing.assert_close(parts.sse, ((x_hat - x) ** 2).sum())
    torch.testing.assert_close(parts.sst, ((x - x.mean(dim=0)) ** 2).sum())
    torch.testing.assert_close(parts.explained_variance, 1 - parts.sse / parts.sst)
    assert parts.n_tokens == len(x)


def test_encode_keeps_leading_dimensions() -> None:
    sae = make("relu")
    x = batch(24).reshape(2, 3, 4, D_IN)
    z = sae.encode(x)
    assert z.shape == (2, 3, 4, D_SAE)
    torch.testing.assert_close(sae.decode(z), sae.decode(z.reshape(-1, D_SAE)).reshape(2, 3, 4, D_IN))


def test_topk_keeps_the_k_largest_positive_pre_activations_of_each_token() -> None:
    sae, x = make("topk"), batch()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    z = sae.encode(x)
    assert ((z != 0).sum(dim=1) <= K).all()
    kept = pre.topk(K, dim=1)
    expected = torch.zeros_like(pre).scatter(1, kept.indices, kept.values.relu())
    torch.testing.assert_close(z, expected)
    assert sae.loss(x).sparsity == 0


def test_batch_topk_selection_is_the_exact_top_of_the_whole_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(64, 200, generator=gen, dtype=F64)
    pre[3] += 5.0  # one token holds far more than its share: exercises the re-scan of full rows
    pre[10, :150] += 3.0
    for n_keep in (1, 64 * 4, 64 * 30, 64 * 200):
        flat, values = batch_topk_select(pre, n_keep)
        want = pre.flatten().topk(n_keep)
        assert torch.equal(flat, want.indices.sort().values)
        assert torch.equal(values, pre.flatten()[flat])


def test_batchtopk_keeps_k_times_batch_in_training_and_its_threshold_carries_to_eval() -> None:
    sae = make("batchtopk")
    assert isinstance(sae, BatchTopKSAE) and sae.training
    x = batch(64)
    z = sae.encode(x)
    assert int((z > 0).sum()) == K * len(x)  # more than K*B pre-activations are positive here
    pre = sae.pre_activations(x)
    flat = pre.relu().flatten().topk(K * len(x)).indices
    assert torch.equal((z.flatten() > 0).nonzero().squeeze(1), flat.sort().values)
    assert int(sae.threshold_updates) == 0
    for seed in range(30):  # training batches from one distribution: the threshold settles
        sae.loss(batch(64, seed=100 + seed))
    assert int(sae.threshold_updates) == 30
    assert (sae.threshold == sae.threshold[0]).all() and sae.threshold[0] > 0
    sae.eval()
    l0 = float((sae.encode(batch(512, seed=999)) > 0).sum(dim=1).double().mean())
    assert 0.5 * K < l0 < 2 * K  # roughly the training sparsity
    pre = sae.pre_activations(x)
    torch.testing.assert_close(sae.encode(x), pre.relu() * (pre > sae.threshold))  # JumpReLU


def test_auxk_is_zero_without_dead_latents_and_only_moves_dead_latents() -> None:
    sae, x = make("topk", aux_k=6), batch()
    none = torch.zeros(D_SAE, dtype=torch.bool)
    assert sae.loss(x).aux == 0 and sae.loss(x, dead_mask=none).aux == 0
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::5] = True
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    without = torch.autograd.grad(sae.loss(x).total, params)
    parts = sae.loss(x, dead_mask=dead)
    assert parts.aux > 0
    torch.testing.assert_close(parts.total, parts.mse + parts.aux)
    aux_grads = [a - b for a, b in zip(torch.autograd.grad(parts.total, params), without, strict=True)]
    gW_enc, gb_enc, gW_dec, _ = aux_grads
    assert not gW_dec[~dead].any() and gW_dec[dead].any()
    assert not gW_enc[:, ~dead].any() and gW_enc[:, dead].any()
    assert not gb_enc[~dead].any()
    # the written formula: the dead latents' top aux_k ReLU pre-activations reconstruct the residual
    pre = sae.pre_activations(x).detach()
    kept = pre.masked_fill(~dead, float("-inf")).topk(6, dim=1)
    a = torch.zeros_like(pre).scatter(1, kept.indices, kept.values.relu())
    residual = x - sae(x)[0].detach()
    want = ((a @ sae.W_dec - residual) ** 2).sum() / ((residual - residual.mean(0)) ** 2).sum()
    torch.testing.assert_close(parts.aux, sae.aux_coeff * want.detach())


def test_parallel_gradient_removal_keeps_only_the_perpendicular_part() -> None:
    sae, x = make("relu"), batch()
    sae.loss_and_grad(x)
    before = sae.W_dec.grad.clone()
    sae.before_optimizer_step()
    after = sae.W_dec.grad
    w = sae.W_dec.detach()
    torch.testing.assert_close((after * w).sum(dim=1), torch.zeros(D_SAE, dtype=F64), atol=1e-12, rtol=0)
    removed = before - after  # parallel to each row: zero after removing the row direction
    unit = w / w.norm(dim=1, keepdim=True)
    residue = removed - (removed * unit).sum(dim=1, keepdim=True) * unit
    torch.testing.assert_close(residue, torch.zeros_like(residue), atol=1e-12, rtol=0)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_decoder_rows_stay_unit_norm_through_adam_steps(arch: str) -> None:
    sae = create_sae(arch, D_IN, D_SAE, **arch_kwargs(arch, k=K))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for step in range(5):
        x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(step)) + 1.0
        opt.zero_grad(set_to_none=True)
        sae.loss_and_grad(x, dead_mask=torch.arange(D_SAE) < 8 if arch != "relu" else None)
        sae.before_optimizer_step()
        opt.step()
        sae.after_optimizer_step()
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-6, rtol=0)
    assert not torch.equal(sae.W_enc, sae.W_dec.T)  # it did train


def test_init_b_dec_zeros_mean_and_geometric_median() -> None:
    sae = make("relu")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(200, D_IN, generator=gen, dtype=F64)
    x[:20] += 50.0  # outliers pull the mean, not the median
    sae.init_b_dec(x, "mean")
    torch.testing.assert_close(sae.b_dec.detach(), x.mean(dim=0))
    sae.init_b_dec(x, "geometric_median")
    m = sae.b_dec.detach()
    unit = (x - m) / (x - m).norm(dim=1, keepdim=True)
    assert float(unit.sum(dim=0).norm()) < 1e-3 * len(x)  # the median's optimality condition
    assert float(m.norm()) < float(x.mean(dim=0).norm()) / 3
    sae.init_b_dec(x, "zeros")
    assert not sae.b_dec.any()
    with pytest.raises(SAEError, match="geometric_median"):
        sae.init_b_dec(x, "median")


def test_reinit_latents_sets_the_stated_rows_columns_and_biases() -> None:
    sae = make("relu")
    idx = torch.tensor([2, 7, 30])
    directions = torch.randn(3, D_IN, generator=torch.Generator().manual_seed(2), dtype=F64) * 4
    others = [i for i in range(D_SAE) if i not in idx.tolist()]
    W_enc_before = sae.W_enc.detach().clone()
    sae.reinit_latents(idx, directions, encoder_norm=torch.tensor([0.2, 0.3, 0.4]))
    unit = directions / directions.norm(dim=1, keepdim=True)
    torch.testing.assert_close(sae.W_dec[idx].detach(), unit)
    torch.testing.assert_close(sae.W_enc[:, idx].detach(), (unit * torch.tensor([[0.2], [0.3], [0.4]])).T)
    assert not sae.b_enc[idx].any()
    assert torch.equal(sae.W_enc[:, others].detach(), W_enc_before[:, others])
    sae.reinit_latents(idx[:1], directions[:1], encoder_norm=0.5)
    torch.testing.assert_close(sae.W_enc[:, 2].norm().detach(), torch.tensor(0.5, dtype=F64))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("per_feature", [False, True])
def test_fold_normalisation_gives_the_same_code_and_raw_reconstruction(arch: str, per_feature: bool) -> None:
    sae = make(arch)
    for seed in range(3):  # give BatchTopK a threshold, then compare in eval mode
        sae.loss(batch(64, seed=seed))
    sae.eval()
    gen = torch.Generator().manual_seed(9)
    mean = torch.randn(D_IN, generator=gen, dtype=F64) * 3
    scale = torch.rand(D_IN, generator=gen, dtype=F64) + 0.5 if per_feature else 0.37
    raw = batch(40) * 2 + mean
    x_hat_n, z_n = sae((raw - mean) * scale)
    folded = copy.deepcopy(sae)
    folded.fold_normalisation(mean, scale)
    x_hat, z = folded(raw)
    torch.testing.assert_close(z, z_n)
    torch.testing.assert_close(x_hat, x_hat_n / scale + mean)


def test_pickling_drops_the_fast_path_buffers() -> None:
    sae = make("relu")
    sae.loss_and_grad(batch())
    assert sae._workspace
    clone = pickle.loads(pickle.dumps(sae))
    assert clone._workspace == {} and sae._workspace
    torch.testing.assert_close(clone.encode(batch()), sae.encode(batch()))
