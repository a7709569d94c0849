"""Mixed precision: fp16 on CUDA, bf16 only on CPUs that compute it natively, fp32 elsewhere; a bf16
fine-tune keeps fp32 weights and writes the same classifier format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mammo_sae import finetune as finetune_cli
from mammo_sae.core import precision
from mammo_sae.finetuning import loop
from mammo_sae.models import load_classifier

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def fake_cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_native_bf16_means_avx512_bf16_or_amx(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    fake_cpu(monkeypatch, avx512_bf16, amx)
    assert precision.cpu_has_native_bf16() is native
    assert precision.autocast_dtype(CPU, amp=True) == (torch.bfloat16 if native else None)


def test_a_torch_without_the_probes_trains_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert precision.cpu_has_native_bf16() is False
    assert precision.autocast_dtype(CPU, amp=True) is None


def test_cuda_uses_fp16_and_no_amp_means_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, True, True)
    assert precision.autocast_dtype(CUDA, amp=True) == torch.float16
    assert precision.autocast_dtype(CUDA, amp=False) is None
    assert precision.autocast_dtype(CPU, amp=False) is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_autocast_runs_convolutions_in_the_chosen_dtype(dtype: torch.dtype | None) -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    with precision.autocast(CPU, dtype):
        out = conv(torch.randn(1, 3, 8, 8))
    assert out.dtype == (dtype or torch.float32)
    assert conv.weight.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_finetune_in_either_precision_saves_fp32_weights(
    finetune_phantoms: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    dtype: torch.dtype | None,
) -> None:
    chosen = []

    def forced(device: torch.device, amp: bool) -> torch.dtype | None:
        chosen.append((device.type, amp))
        return dtype

    monkeypatch.setattr(loop, "autocast_dtype", forced)
    argv = [
        "--data", str(finetune_phantoms), "--out", str(tmp_path), "--backbone", "timm:resnet10t",
        "--frame-size", "128x80", "--epochs", "1", "--batch-size", "4", "--workers", "0",
        "--validation-fraction", "0.34", "--box-weight", "1", "--no-progress",
    ]  # fmt: skip
    assert finetune_cli.main(argv) == 0
    assert chosen == [("cpu", True)]
    log = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert torch.isfinite(torch.tensor(log["train_loss"]))
    classifier = load_classifier(tmp_path / "classifier.safetensors")
    weights = classifier.state_dict()
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    capsys.readouterr()
