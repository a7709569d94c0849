"""Matryoshka BatchTopK: its groups, its files, its loss with one group (BatchTopK's), and the nesting property:
on a planted dictionary of frequent parents and rarer children, its first group alone reconstructs the
input, which the same prefix of a BatchTopK SAE does not. (Its gradients against autograd are checked with
every architecture's in test_sae_fast.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mammo_sae.sae import SAEError, create_sae, load_sae, save_sae
from mammo_sae.sae.config import TrainConfig
from mammo_sae.sae.matryoshka import MatryoshkaConfig, default_group_sizes, parse_group_sizes
from mammo_sae.sae.registry import sae_from_knobs

D_IN, PARENTS, CHILDREN = 16, 4, 28
D_SAE = PARENTS + CHILDREN


def test_groups_default_parse_and_refuse() -> None:
    assert default_group_sizes(16384) == (1024, 1024, 2048, 4096, 8192)
    assert sum(default_group_sizes(100)) == 100 and default_group_sizes(3) == (1, 1, 1)
    assert parse_group_sizes("4,28", 32) == (4, 28)
    config = MatryoshkaConfig(d_in=8, d_sae=32, k=2, group_sizes=(4, 12, 16))
    assert config.widths == (4, 16, 32)
    assert json.loads(json.dumps(config.hparams()))["group_sizes"] == [4, 12, 16]
    for bad in ("4,20", "0,32", "a,b", ""):
        with pytest.raises(SAEError, match="group sizes"):
            parse_group_sizes(bad, 32)


def test_the_training_knob_reaches_the_architecture() -> None:
    knobs = TrainConfig(store="s", out="o", arch="matryoshka", k=3, matryoshka_groups="8,24").__dict__
    sae = sae_from_knobs("matryoshka", D_IN, D_SAE, knobs)
    assert sae.widths == (8, 32) and sae.k == 3


def test_files_round_trip_with_the_saelens_widths(tmp_path: Path) -> None:
    sae = create_sae("matryoshka", D_IN, D_SAE, k=2, group_sizes=(4, 28))
    sae.loss_and_grad(torch.randn(64, D_IN))  # sets the running threshold
    folder = save_sae(sae, tmp_path / "m")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["matryoshka_widths"] == [4, 32]
    loaded = load_sae(folder)
    assert type(loaded) is type(sae) and loaded.widths == (4, 32)
    torch.testing.assert_close(loaded.threshold, sae.threshold)


def test_with_one_group_the_loss_is_batchtopk_s() -> None:
    x = torch.randn(48, D_IN, generator=torch.Generator().manual_seed(1))
    one = create_sae("matryoshka", D_IN, D_SAE, k=3, group_sizes=(D_SAE,), dtype=torch.float64)
    plain = create_sae("batchtopk", D_IN, D_SAE, k=3, dtype=torch.float64)
    torch.testing.assert_close(one.loss(x.double()).total, plain.loss(x.double()).total)
    nested = create_sae("matryoshka", D_IN, D_SAE, k=3, group_sizes=(4, 28), dtype=torch.float64)
    assert float(nested.loss(x.double()).mse) > float(plain.loss(x.double()).mse), "a prefix term is added"


def _planted() -> tuple[torch.Tensor, callable]:
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(D_SAE, D_IN, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)

    def tokens(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        parent = torch.randint(0, PARENTS, (n,), generator=g)  # every token has one frequent parent
        child = PARENTS + torch.randint(0, CHILDREN, (n,), generator=g)  # and one rarer, weaker child
        a = torch.rand(n, generator=g) + 1.0
        b = torch.rand(n, generator=g) * 0.6 + 0.2
        return a[:, None] * atoms[parent] + b[:, None] * atoms[child]

    return atoms, tokens


def _trained(arch: str, tokens, **hparams) -> torch.nn.Module:
    torch.manual_seed(0)
    sae = create_sae(arch, D_IN, D_SAE, k=2, **hparams)
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
    for step in range(1000):
        sae.loss_and_grad(tokens(256, step))
        sae.before_optimizer_step()
        optimizer.step()
        sae.after_optimizer_step()
    return sae.eval()


def _fvu(sae, x: torch.Tensor, width: int) -> float:
    """Fraction of variance the first ``width`` latents leave unexplained, on their own."""
    with torch.no_grad():
        z = sae.encode(x)
        x_hat = z[:, :width] @ sae.W_dec[:width] + sae.b_dec
        return float(((x_hat - x) ** 2).sum() / ((x - x.mean(dim=0)) ** 2).sum())


def test_each_prefix_reconstructs_on_its_own_on_a_planted_dictionary() -> None:
    _, tokens = _planted()
    held_out = tokens(4000, 10**6)  # seeds never seen in training
    nested = _trained("matryoshka", tokens, group_sizes=(PARENTS, CHILDREN))
    flat = _trained("batchtopk", tokens)
    assert _fvu(nested, held_out, D_SAE) < 0.15 and _fvu(flat, held_out, D_SAE) < 0.15, "both reconstruct"
    nested_prefix, flat_prefix = _fvu(nested, held_out, PARENTS), _fvu(flat, held_out, PARENTS)
    assert nested_prefix < 0.3, f"the first group alone explains the parents: FVU {nested_prefix:.3f}"
    assert flat_prefix > 3 * nested_prefix, (flat_prefix, nested_prefix)
