"""Weight files: safetensors bytes depend only on their content (in every process), and checkpoints carry
a sha256 that catches the flipped byte torch's own reader lets through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mammo_sae.core.errors import TrainError
from mammo_sae.core.weightfiles import load_checked, safetensors_bytes, save_checked


def example() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16)}
    return tensors, {"format": "x", "format_version": "1", "config": "{}", "zeta": "z"}


def test_safetensors_bytes_are_the_same_in_every_process() -> None:
    script = (
        f"import hashlib, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_weightfiles import example, safetensors_bytes; "
        "print(hashlib.sha256(safetensors_bytes(*example())).hexdigest())"
    )
    run = [sys.executable, "-c", script]
    digests = {subprocess.run(run, capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(digests) == 1, "safetensors wrote the metadata in a process-dependent order"


def test_safetensors_bytes_load_back_with_sorted_metadata(tmp_path: Path) -> None:
    tensors, metadata = example()
    data = safetensors_bytes(tensors, dict(reversed(metadata.items())))
    assert data == safetensors_bytes(tensors, metadata)
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert (
            torch.equal(handle.get_tensor("w"), tensors["w"])
            and handle.get_tensor("b").dtype == torch.float16
        )
    header = data[8 : 8 + int.from_bytes(data[:8], "little")]
    assert header.index(b'"config"') < header.index(b'"format"') < header.index(b'"zeta"')


def test_a_checked_checkpoint_round_trips_and_refuses_damage(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    state = {"w": torch.randn(1000), "step": 7}
    save_checked(state, path)
    loaded = load_checked(path, repair="REPAIR", error=TrainError)
    assert loaded["step"] == 7 and torch.equal(loaded["w"], state["w"])
    assert torch.load(path, weights_only=True)["step"] == 7  # still an ordinary torch file
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    path.write_bytes(bytes(flipped))
    assert torch.load(path, weights_only=True)["step"] == 7, "torch alone does not notice"
    with pytest.raises(
        TrainError, match=r"checkpoint\.pt is damaged: its bytes do not match the sha256.*; REPAIR"
    ):
        load_checked(path, repair="REPAIR", error=TrainError)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainError, match=r"checkpoint\.pt is damaged: it is not a readable torch file"):
        load_checked(path, repair="REPAIR", error=TrainError)


def test_a_checkpoint_without_a_digest_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"step": 3}, path)
    assert load_checked(path, repair="", error=TrainError) == {"step": 3}
