"""No partial or damaged file is ever used: a truncated or corrupted store shard, training checkpoint, SAE
weights file or bundle table is refused, by the command or loader that meets it, with a message that names
the file and the command that repairs it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sae_train_helpers import dictionary_store

from mammo_sae import train
from mammo_sae.bundle import Bundle, BundleError
from mammo_sae.sae import SAEError, load_sae
from mammo_sae.store import StoreError, open_store


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def flip(path: Path) -> None:
    """One flipped bit in the middle of the file: same size, so only a checksum can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {"truncated": truncate, "flipped": flip}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reader, _ = dictionary_store(
        tmp_path_factory.mktemp("damage") / "stores", n_images=16, images_per_shard=4
    )
    return reader.path


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("damage-run") / "sae"
    argv = ["--store", str(store), "--out", str(out), "--expansion", "2", "--batch-size", "64"]
    assert train.main([*argv, "--max-steps", "6", "--checkpoint-every", "3", "--no-progress"]) == 0
    return out


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_store_shard_stops_training_with_the_file_and_the_repair(
    store: Path, tmp_path: Path, capsys, damage: str
) -> None:
    broken = copy(store, tmp_path)
    DAMAGE[damage](broken / "shard-00001.npy")
    argv = ["--store", str(broken), "--out", str(tmp_path / "sae"), "--batch-size", "64", "--max-steps", "2"]
    argv += ["--validation-fraction", "0", "--no-progress"]  # every shard is read for training
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "shard-00001.npy" in err and "Traceback" not in err
    assert f"rm -f {broken}/shard-00001.*" in err and "run the extraction command again" in err


def test_a_damaged_index_table_is_refused_with_the_repair(store: Path, tmp_path: Path) -> None:
    broken = copy(store, tmp_path)
    flip(broken / "shard-00002.index.parquet")
    reader = open_store(broken)  # sizes match: opening is cheap and does not see it
    with pytest.raises(StoreError, match=r"shard-00002\.index\.parquet does not match its sha256") as error:
        reader.index()
    assert f"rm -f {broken}/shard-00002.*" in str(error.value)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_refused_on_resume_with_the_repair(
    run: Path, tmp_path: Path, capsys, damage: str
) -> None:
    broken = copy(run, tmp_path)
    DAMAGE[damage](broken / "checkpoint.pt")
    argv = [
        "--config",
        str(broken / "train_config.toml"),
        "--out",
        str(broken),
        "--resume",
        "--max-steps",
        "8",
    ]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{broken}/checkpoint.pt is damaged: " in err and "Traceback" not in err
    reason = "do not match the sha256" if damage == "flipped" else "not a readable torch file"
    assert reason in err
    assert f"rm -f {broken}/checkpoint.pt" in err and "python -m mammo_sae.train --config" in err


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_sae_weights_are_refused_with_the_command_that_rewrites_them(
    run: Path, tmp_path: Path, damage: str
) -> None:
    broken = copy(run, tmp_path)
    DAMAGE[damage](broken / "sae_weights.safetensors")
    with pytest.raises(SAEError, match=r"sae_weights\.safetensors does not match the weights hash") as error:
        load_sae(broken)
    assert f"python -m mammo_sae.train --config {broken}/train_config.toml --resume" in str(error.value)
    assert train.main(["--config", str(broken / "train_config.toml"), "--out", str(broken), "--resume"]) == 0
    load_sae(broken)  # the repair command rewrote them from the checkpoint


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("latents.parquet", lambda b: b.latents),
        ("mean_latents.npy", lambda b: b.mean_latents),
        ("codes/codes_value.npy", lambda b: b.codes),
        ("heads.npz", lambda b: b.heads),
    ],
)
def test_a_damaged_bundle_file_is_refused_when_loaded_with_the_rebuild_command(
    analysis_bundle_path: Path, tmp_path: Path, name: str, load: Callable[[Bundle], object]
) -> None:
    broken = copy(analysis_bundle_path, tmp_path)
    flip(broken / name)
    bundle = Bundle.open(broken, check_inputs=False)  # same size: only its first load hashes it
    with pytest.raises(BundleError, match=f"{name} does not match its sha256") as error:
        load(bundle)
    assert "rebuild it with:\n  python -m mammo_sae.analyze " in str(error.value)
    assert str(error.value).endswith("--overwrite")
    truncate(broken / name)
    with pytest.raises(BundleError, match=f"{name} has \\d+ bytes, the manifest says"):
        Bundle.open(broken, check_inputs=False)
