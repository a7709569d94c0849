"""`train --sweep`: a family trained on one pass of the store is the same family trained one run at a time
(every member sees the same batches), with one folder per member and a sweep index; knobs that decide the
batches are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sae_train_helpers import dictionary_store

from mammo_sae import train as train_cli
from mammo_sae.core.errors import TrainError
from mammo_sae.sae import load_sae
from mammo_sae.sae.config import TrainConfig
from mammo_sae.sae.sweep import SWEEP_INDEX, member_folder, parse_sweep, sweep_members
from mammo_sae.sae.trainer import train

SMALL = {"batch_size": 64, "max_steps": 40, "lr": 3e-3, "progress": False, "validation_fraction": 0.1}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    return dictionary_store(tmp_path_factory.mktemp("sweep") / "stores")


def test_a_sweep_trains_each_member_as_its_own_run_would(store, tmp_path: Path, capsys) -> None:
    reader, _ = store
    args = ["--store", str(reader.path), "--out", str(tmp_path / "sweep"), "--arch", "topk",
            "--sweep", "k=2,4,8", *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items() if k != "progress"],
            "--no-progress"]  # fmt: skip
    assert train_cli.main(args) == 0
    index = json.loads((tmp_path / "sweep" / SWEEP_INDEX).read_text())
    assert index["knob"] == "k" and [m["folder"] for m in index["members"]] == ["k-2", "k-4", "k-8"]
    assert index["steps"] == SMALL["max_steps"] and json.loads(capsys.readouterr().out)["knob"] == "k"
    alone = train(TrainConfig(store=str(reader.path), out=str(tmp_path / "alone"), arch="topk", k=4, **SMALL))
    member = load_sae(tmp_path / "sweep" / "k-4")
    torch.testing.assert_close(member.W_dec, load_sae(tmp_path / "alone").W_dec, rtol=0, atol=0)
    assert index["members"][1]["eval"]["fvu"] == pytest.approx(alone["eval"]["fvu"])
    l0 = [m["eval"]["l0"] for m in index["members"]]
    assert l0 == sorted(l0) and l0[0] < l0[-1], "the swept knob reaches each member"


def test_the_sweep_is_parsed_and_its_limits_said() -> None:
    assert parse_sweep("l1=1e-3, 3e-3") == ("l1", ("1e-3", "3e-3"))
    assert parse_sweep("matryoshka-groups=8,24;16,16") == ("matryoshka_groups", ("8,24", "16,16"))
    assert member_folder("matryoshka_groups", "8,24") == "matryoshka_groups-8_24"
    base = TrainConfig(store="S", out="O", arch="relu")
    members = sweep_members(TrainConfig(**{**base.__dict__, "sweep": "arch=relu,topk"}))
    assert [m.arch for _, m in members] == ["relu", "topk"] and members[1][1].out == str(
        Path("O") / "arch-topk"
    )
    for bad, message in (
        ("l1=1e-3", "two or more values"),
        ("batch_size=64,128", "decides the batches"),
        ("nothing=1,2", "not a train knob"),
        ("l1=a,b", "not a value"),
        ("arch=relu,mine", "not one of"),
        ("k=4,4", "repeats"),
    ):
        with pytest.raises(TrainError, match=message):
            sweep_members(TrainConfig(**{**base.__dict__, "sweep": bad}))
