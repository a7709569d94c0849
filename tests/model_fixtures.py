"""Fake checkpoints for the model tests: random weights in the exact layouts of the released files.

Nothing here is a real Mammo-CLIP weight; every tensor is seeded noise, with BatchNorm statistics
randomised too so that a wrong running mean or variance would show in the outputs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from torch import nn

from mammo_sae.models import mammoclip

B5 = mammoclip.ARCHS["mammoclip-b5"]
B2 = mammoclip.ARCHS["mammoclip-b2"]
CALIBRATION_FRAME = (295, 199)  # where the random BatchNorm statistics are measured
# The (before, after) pads FACTS.md 1 measured for the reference B5 (image_size 456), per axis.
B5_STATIC_PADS = {
    "conv_stem": (0, 1),
    "blocks.1.0.conv_dw": (0, 1),
    "blocks.2.0.conv_dw": (1, 2),
    "blocks.3.0.conv_dw": (1, 1),
    "blocks.5.0.conv_dw": (2, 2),
}


def randomize_batchnorm(
    model: nn.Module, seed: int, calibrate: Callable[[torch.Tensor], Any] | None = None
) -> nn.Module:
    """Seeded random BatchNorm parameters and running statistics for every BatchNorm of ``model``.

    With ``calibrate`` (the model's feature function), each BatchNorm's running statistics are set,
    during one eval-mode pass over a random frame, to the statistics of the input it actually receives
    (plus a variance floor and a seeded perturbation). Activations then keep a moderate scale through
    all the blocks and the output depends on the input; with arbitrary statistics a deep random
    network's output is nearly constant or explodes, and an equivalence test on it would prove little.
    """
    generator = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def measure(bn: nn.BatchNorm2d, args: tuple) -> None:
        x = args[0]
        var = x.var(dim=(0, 2, 3))
        noise = torch.randn(bn.num_features, generator=generator)
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3)) + 0.1 * noise * var.sqrt())
        scale = torch.exp((torch.rand(bn.num_features, generator=generator) - 0.5) * 0.4)
        bn.running_var.copy_((var + 0.25 * var.mean()) * scale)

    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.num_batches_tracked.fill_(1234)
        if calibrate is not None:
            model.eval()
            handles = [bn.register_forward_pre_hook(measure) for bn in bns]
            try:
                calibrate(torch.randn(1, 3, *CALIBRATION_FRAME, generator=generator))
            finally:
                for handle in handles:
                    handle.remove()
    return model.eval()


def reference_encoder(arch: mammoclip.MammoClipArch = B5, seed: int = 0) -> nn.Module:
    """The reference implementation (efficientnet_pytorch 0.7.1), random weights, eval mode.

    Built as Mammo-CLIP builds it: static "same" padding for the architecture's own image size
    (456 for B5), no classifier on top.
    """
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = efficientnet_pytorch.EfficientNet.from_name(
            arch.reference, image_size=arch.image_size, include_top=False
        )
    return randomize_batchnorm(model, seed + 1, calibrate=model.extract_features)


def lukemelas_state(arch: mammoclip.MammoClipArch = B5, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random encoder state dict in the reference's key names, without needing the reference package."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model(arch.timm_name, pretrained=False, num_classes=0, global_pool="")
    randomize_batchnorm(model, seed + 1, calibrate=model.forward_features)
    theirs = model.state_dict()
    return {
        ours: theirs[timm_key].clone()
        for ours, timm_key in mammoclip.lukemelas_to_timm_keys(arch.stage_depths).items()
    }


def released_checkpoint(
    encoder: dict[str, torch.Tensor], arch: mammoclip.MammoClipArch = B5, seed: int = 0
) -> dict[str, Any]:
    """A dict shaped like ``b5-model-best-epoch-7.tar``: the CLIP model, optimiser, scheduler, config."""
    generator = torch.Generator().manual_seed(seed)

    def small(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    model = {f"image_encoder.{k}": v for k, v in encoder.items()}
    model.update(
        {
            "text_encoder.embeddings.word_embeddings.weight": small(50, 8),
            "text_encoder.encoder.layer.0.attention.self.query.weight": small(8, 8),
            "text_encoder.pooler.dense.bias": small(8),
            "image_projection.projection.weight": small(16, arch.num_features),
            "image_projection.fc.weight": small(16, 16),
            "text_projection.projection.weight": small(16, 8),
            "logit_scale": torch.tensor(2.6592),
        }
    )
    return {
        "model": model,
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "scheduler": {"last_epoch": 7, "base_lrs": [5e-5], "_step_count": 8},
        "config": {
            "model": {
                "image_encoder": {"source": "cnn", "name": arch.encoder_name, "pretrained": True},
                "text_encoder": {"source": "huggingface", "name": "emilyalsentzer/Bio_ClinicalBERT"},
                "projection_head": {"name": "linear", "proj_dim": 512},
            },
            "base": {"seed": 10, "mean": 0.3089279, "std": 0.25053555408335154},
        },
        "epoch": 7,
        "train_loss": 2.375,
    }


def downstream_checkpoint(
    encoder: dict[str, torch.Tensor], n_class: int, num_features: int = B5.num_features, seed: int = 0
) -> dict[str, Any]:
    """A dict shaped like Mammo-CLIP's downstream ``..._best_aucroc_ver084.pth`` (numpy arrays included)."""
    generator = torch.Generator().manual_seed(seed)
    model = {f"image_encoder.{k}": v for k, v in encoder.items()}
    model["classifier.classification_head.weight"] = (
        torch.randn(n_class, num_features, generator=generator) * 0.05
    )
    model["classifier.classification_head.bias"] = torch.randn(n_class, generator=generator)
    rng = np.random.default_rng(seed)
    checkpoint: dict[str, Any] = {
        "model": model,
        "predictions": rng.random((12, n_class)).astype(np.float32),
        "epoch": 3,
    }
    if n_class == 1:
        checkpoint["auroc"] = np.float64(0.81)
    else:
        checkpoint["accuracy"] = np.float64(0.77)
    return checkpoint


def save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Make every weight download path (and any socket connection) fail; record timm.create_model calls."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a test attempted a download or network access: {args[:2]}")

    for target in (
        "timm.models._builder.load_pretrained",
        "timm.models._builder.load_state_dict_from_url",
        "timm.models._builder.load_state_dict_from_hf",
        "timm.models._builder.download_cached_file",
        "timm.models._hub.download_cached_file",
        "timm.models._hub.hf_hub_download",
        "timm.models._hub.load_state_dict_from_hf",
        "torch.hub.load_state_dict_from_url",
        "torch.hub.download_url_to_file",
    ):
        monkeypatch.setattr(target, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    calls: list[dict[str, Any]] = []
    real_create = timm.create_model

    def spy(name: str, *args: Any, **kwargs: Any) -> nn.Module:
        calls.append({"name": name, **kwargs})
        assert kwargs.get("pretrained") is False, f"timm.create_model({name!r}) without pretrained=False"
        return real_create(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    return calls


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference|| (in the reference's dtype); infinite when the shapes differ."""
    if ours.shape != reference.shape:
        return float("inf")
    ours = ours.to(reference.dtype)
    return float((ours - reference).norm() / reference.norm())
