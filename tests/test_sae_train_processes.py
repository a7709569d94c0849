"""`python -m mammo_sae.train` under torchrun with two ranks ends with the weights of one single-process run
(SIGKILL then --resume is in test_kill_resume.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from sae_train_helpers import dictionary_store, torchrun_command, train_command

from mammo_sae.sae import load_sae

pytestmark = pytest.mark.slow
ENV = os.environ | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    reader, _ = dictionary_store(tmp_path_factory.mktemp("sae-processes") / "stores")
    return reader


def args(reader, out: Path, *extra: str) -> list[str]:
    return ["--store", str(reader.path), "--out", str(out), "--no-progress", *extra]


def assert_same_weights(one: Path, two: Path, atol: float) -> None:
    first, second = load_sae(one), load_sae(two)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=atol, msg=name)


def metric_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_ranks_match_one_process(store, tmp_path: Path) -> None:
    recipe = [
        "--batch-size", "256", "--epochs", "6", "--lr", "3e-3", "--l1", "1e-2", "--resample-every", "2",
        "--dead-window", "5000", "--normalize", "center-scale", "--grad-clip", "1.0", "--b-dec-init", "mean",
    ]  # fmt: skip
    single = subprocess.run(
        train_command() + args(store, tmp_path / "one", *recipe), capture_output=True, text=True, env=ENV
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        torchrun_command(2, free_port()) + args(store, tmp_path / "two", *recipe),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    one, two = json.loads(single.stdout), json.loads(double.stdout)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["steps"] == two["steps"] and one["resamples"] == two["resamples"] == 2
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-5)  # measured: ~2e-7
    assert two["eval"]["fvu"] == pytest.approx(one["eval"]["fvu"], rel=1e-3)
    assert metric_steps(tmp_path / "one") == metric_steps(tmp_path / "two")
