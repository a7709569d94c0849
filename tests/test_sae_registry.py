"""The SAE registry: an architecture defined and registered here (a squared-activation penalty SAE that
exists nowhere in the package) trains with the unchanged trainer and round-trips through the SAELens
files; registrations that can not work are refused with what to fix."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from sae_train_helpers import dictionary_store

from mammo_sae.core.errors import TrainError
from mammo_sae.sae import (
    ARCHITECTURES,
    CONFIG_FILE,
    SAEConfig,
    SAEError,
    SparseAutoencoder,
    create_sae,
    load_sae,
    register,
    save_sae,
)
from mammo_sae.sae import registry as sae_registry
from mammo_sae.sae.config import TrainConfig
from mammo_sae.sae.relu import ReLUSAE
from mammo_sae.sae.trainer import train

TOY = "toy-squared"


@dataclass(frozen=True)
class SquaredConfig(SAEConfig):
    """The toy's one hyper-parameter, read from the trainer's ``--l1`` knob."""

    l1_coeff: float = 1e-2

    knob_names: ClassVar[Mapping[str, str]] = {"l1_coeff": "l1"}


class SquaredPenaltySAE(SparseAutoencoder):
    """z = ReLU(pre) (a SAELens "standard" SAE at inference), trained with ``l1_coeff * mean_b sum_j z^2``;
    no fast kernel (the base class's autograd path), no resampling, no AuxK."""

    architecture: ClassVar[str] = TOY
    saelens_architecture: ClassVar[str | None] = "standard"

    @property
    def sparsity_coeff(self) -> float | None:
        return self.cfg.l1_coeff

    def activation(self, pre_bs: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre_bs)

    def _extra_terms(self, x_bd, pre_bs, z_bs, x_hat_bd, dead_mask_s, sparsity_coeff):
        coeff = self.cfg.l1_coeff if sparsity_coeff is None else sparsity_coeff
        return coeff * (z_bs * z_bs).sum(dim=1).mean(), x_bd.new_zeros(())


class NoFileSAE(SquaredPenaltySAE):
    architecture: ClassVar[str] = "toy-no-file"
    saelens_architecture: ClassVar[str | None] = None


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest (and least disturbed by other work) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def toy() -> Iterator[None]:
    register(TOY, SquaredPenaltySAE, SquaredConfig)
    yield
    sae_registry._REGISTRY.pop(TOY, None)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    return dictionary_store(tmp_path_factory.mktemp("registry") / "stores", n_images=16, tokens_per_image=80)


def test_a_registered_toy_architecture_trains_with_the_unchanged_trainer(toy, store, tmp_path: Path) -> None:
    reader, _ = store
    out = tmp_path / "run"
    knobs = {"batch_size": 128, "progress": False, "lr": 3e-3, "log_every": 1, "dead_window": 500}
    config = TrainConfig(
        store=str(reader.path),
        out=str(out),
        arch=TOY,
        l1=2e-3,
        l1_warmup_steps=4,
        epochs=3,
        resample_every=1,
        **knobs,
    )
    summary = train(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the trainer warmed up the penalty the SAE declared, and logged the toy's own loss term
    assert [r["l1_coeff"] for r in records[:5]] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3])
    for record in records:
        assert (
            record["loss"] == pytest.approx(record["mse"] + record["sparsity"], rel=1e-5)
            and record["aux"] == 0
        )
    assert records[-1]["fvu"] < records[0]["fvu"]
    assert summary["arch"] == TOY and summary["resamples"] == 0  # it does not resample, though relu would
    sae = load_sae(out, expect_d_in=reader.d)
    assert type(sae) is SquaredPenaltySAE and sae.hparams == {"l1_coeff": 2e-3, "seed": 0}
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae))  # the base class's unit norm
    relu = train(
        TrainConfig(
            store=str(reader.path),
            out=str(tmp_path / "relu"),
            arch="relu",
            epochs=3,
            resample_every=1,
            **knobs,
        )
    )
    assert relu["resamples"] == 2


def test_the_toy_round_trips_through_saelens_files_or_fails_clearly(toy, tmp_path: Path) -> None:
    sae = create_sae(TOY, 8, 32, l1_coeff=5e-3, seed=4)
    with torch.no_grad():
        sae.b_enc.add_(0.1)
    folder = save_sae(sae, tmp_path / "toy", {"note": "toy"})
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["architecture"] == "standard" and cfg["metadata"]["mammo_sae_architecture"] == TOY
    loaded = load_sae(folder)
    assert (
        type(loaded) is SquaredPenaltySAE
        and loaded.hparams == sae.hparams
        and loaded.metadata == {"note": "toy"}
    )
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    sae.eval()
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])
    # a SAELens reader sees a standard SAE: without our metadata the same file loads as the ReLU SAE
    for key in ("mammo_sae_architecture", "mammo_sae_hparams"):
        del cfg["metadata"][key]
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    plain = load_sae(folder)
    assert type(plain) is ReLUSAE
    torch.testing.assert_close(plain(x)[0], sae(x)[0])
    # once nothing registers the toy, its file is refused with what to do
    save_sae(sae, folder)
    sae_registry._REGISTRY.pop(TOY)
    with pytest.raises(SAEError, match=r"unknown SAE architecture 'toy-squared'.*register"):
        load_sae(folder)


def test_an_architecture_without_a_saelens_layout_is_refused_at_save(tmp_path: Path) -> None:
    register("toy-no-file", NoFileSAE, SquaredConfig)
    try:
        with pytest.raises(SAEError, match="declares no SAELens architecture"):
            save_sae(create_sae("toy-no-file", 8, 16), tmp_path / "x")
        assert not (tmp_path / "x").exists()
    finally:
        sae_registry._REGISTRY.pop("toy-no-file")


def test_registrations_and_keywords_that_can_not_work_are_refused(toy, store, tmp_path: Path) -> None:
    with pytest.raises(SAEError, match="already registered"):
        register(TOY, SquaredPenaltySAE, SquaredConfig)
    with pytest.raises(SAEError, match=r"architecture is 'toy-squared'; set it to 'other'"):
        register("other", SquaredPenaltySAE, SquaredConfig)
    with pytest.raises(SAEError, match="must subclass SAEConfig"):
        register("other", SquaredPenaltySAE, dict)  # type: ignore[arg-type]
    with pytest.raises(SAEError, match="SAELens 'standard' files already load as 'relu'"):
        register(
            "other",
            type("Other", (SquaredPenaltySAE,), {"architecture": "other", "default_for_saelens": True}),
            SquaredConfig,
        )
    # one architecture's keywords are not another's: no union of every architecture's arguments
    with pytest.raises(SAEError, match=r"ReLUConfig has no hyper-parameter 'k'; it takes l1_coeff, seed"):
        create_sae("relu", 8, 16, k=4)
    with pytest.raises(SAEError, match="TopKConfig has no hyper-parameter 'l1_coeff'"):
        create_sae("topk", 8, 16, l1_coeff=1e-3)
    assert list(ARCHITECTURES)[:3] == ["relu", "topk", "batchtopk"] and TOY in ARCHITECTURES
    reader, _ = store
    with pytest.raises(
        TrainError, match=r"--arch nosuch with these settings: unknown SAE architecture 'nosuch'"
    ):
        train(TrainConfig(store=str(reader.path), out=str(tmp_path / "x"), arch="nosuch", progress=False))
