"""`python -m mammo_sae.train` as real processes: SIGKILL then --resume, and torchrun with two ranks, each
ending with the weights of one uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
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


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(store, tmp_path: Path) -> None:
    recipe = [
        "--batch-size", "64", "--epochs", "20", "--lr", "3e-3", "--l1", "1e-2",
        "--resample-every", "3", "--dead-window", "5000", "--checkpoint-every", "100", "--log-every", "50",
    ]  # fmt: skip
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        train_command() + args(store, killed, *recipe),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (killed / "checkpoint.pt").exists() and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoint.pt").exists(), process.stderr.read().decode()
    assert not (killed / "eval.json").exists(), "the run must have been killed before it finished"
    resumed = subprocess.run(
        train_command() + args(store, killed, *recipe, "--resume"), capture_output=True, text=True, env=ENV
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps_this_run"] < json.loads(resumed.stdout)["steps"]
    clean = subprocess.run(
        train_command() + args(store, tmp_path / "clean", *recipe), capture_output=True, text=True, env=ENV
    )
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["resamples"] == json.loads(resumed.stdout)["resamples"] == 6
    assert_same_weights(killed, tmp_path / "clean", atol=1e-6)
    assert metric_steps(killed) == metric_steps(tmp_path / "clean")
    assert not list(killed.glob(".*.tmp"))


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
