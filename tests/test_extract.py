"""`python -m mammo_sae.extract` end to end on phantoms: stores, resume after kill -9, torchrun, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import constant_feature_classifier
from model_fixtures import lukemelas_state, released_checkpoint, save

from mammo_sae import extract
from mammo_sae.models import Classifier, create_backbone, save_classifier
from mammo_sae.store import open_store

FRAME = "128x80"
TIMM = "timm:resnet18"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    root = tmp_path_factory.mktemp("extract") / "phantoms"
    generate_dataset(root, PhantomConfig(studies=3, seed=2, height=256, width=208), workers=1)
    return root


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = extract.main([*args, "--no-progress"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {}), captured.err


def base_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--frame-size", FRAME, "--workers", "0", *extra]


def store_files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


def test_timm_backbone_store_streams_every_sampled_token(phantoms: Path, tmp_path: Path, capsys) -> None:
    code, summary, err = run(
        base_args(phantoms, tmp_path, "--backbone", TIMM, "--split", "all", "--images-per-shard", "5"), capsys
    )
    assert code == 0, err
    assert summary["d"] == 512 and summary["grid"] == [4, 3] and summary["tokens_per_image"] == 3
    reader = open_store(summary["store"], verify=True)
    assert reader.n_images == 12 and reader.n_tokens == 36 and summary["skipped"] == {}
    streamed = np.concatenate(list(reader.iter_batches(7)))
    assert streamed.shape == (36, 512) and np.isfinite(streamed).all() and streamed.std() > 0
    index = reader.index()
    assert {"image_id", "row", "col", "mass", "calcification"} <= set(index.columns)
    assert index["row"].max() < 4 and index["col"].max() < 3


def test_rerun_resumes_without_redoing_shards(phantoms: Path, tmp_path: Path, capsys) -> None:
    args = base_args(phantoms, tmp_path, "--backbone", TIMM, "--split", "training", "--images-per-shard", "4")
    _, first, _ = run(args, capsys)
    before = store_files(Path(first["store"]))
    _, second, _ = run(args, capsys)
    assert second["store"] == first["store"] and second["shards_this_run"] == 0
    assert second["shards_resumed"] == first["shards_this_run"]
    assert store_files(Path(second["store"])) == before


def test_random_init_is_reproducible_so_stores_are(phantoms: Path, tmp_path: Path, capsys) -> None:
    args = ["--backbone", TIMM, "--split", "test", "--tokens-per-image", "1"]
    _, a, _ = run(base_args(phantoms, tmp_path / "a", *args), capsys)
    _, b, _ = run(base_args(phantoms, tmp_path / "b", *args), capsys)
    assert Path(a["store"]).name == Path(b["store"]).name
    assert store_files(Path(a["store"])) == store_files(Path(b["store"]))


def test_mammoclip_checkpoint_format_extracts_2048_channels(phantoms: Path, tmp_path: Path, capsys) -> None:
    checkpoint = save(released_checkpoint(lukemelas_state(seed=4)), tmp_path / "b5-model-best-epoch-7.tar")
    code, summary, err = run(
        base_args(phantoms, tmp_path / "stores", "--backbone", f"mammoclip-b5:{checkpoint}", "--limit", "2"),
        capsys,
    )
    assert code == 0, err
    assert summary["d"] == 2048 and summary["grid"] == [4, 3] and summary["layer"] == "bn2"
    reader = open_store(summary["store"])
    assert reader.identity["backbone"]["weights_sha256"] and reader.n_images == 2


def test_classifier_file_supplies_its_backbone(phantoms: Path, tmp_path: Path, capsys) -> None:
    classifier = Classifier.create(create_backbone(TIMM), tasks={"mass": 1, "calcification": 1})
    save_classifier(classifier, tmp_path / "clf.safetensors")
    code, summary, err = run(
        base_args(phantoms, tmp_path, "--classifier", str(tmp_path / "clf.safetensors"), "--limit", "2"),
        capsys,
    )
    assert code == 0, err
    assert open_store(summary["store"]).identity["backbone"]["classifier_sha256"]


def test_features_that_are_the_same_for_every_image_are_flagged_in_the_store(
    phantoms: Path, tmp_path: Path, capsys
) -> None:
    clf = constant_feature_classifier(tmp_path / "constant.safetensors")
    code, summary, err = run(
        base_args(phantoms, tmp_path / "broken", "--classifier", str(clf), "--split", "all"), capsys
    )
    assert code == 0, err  # the store is written, with the warning beside its numbers
    assert len(summary["warnings"]) == 1 and "the same for every image" in summary["warnings"][0]
    assert f"warning: {summary['warnings'][0]}" in err
    metadata = json.loads((Path(summary["store"]) / "metadata.json").read_text())
    assert metadata["warnings"] == summary["warnings"]
    features = np.concatenate(list(open_store(summary["store"]).iter_batches(64)))
    assert features.std() > 0, "the features vary over positions, only not across images"
    code, healthy, err = run(
        base_args(phantoms, tmp_path / "healthy", "--backbone", TIMM, "--split", "all"), capsys
    )
    assert code == 0 and healthy["warnings"] == [] and "warning" not in err
    assert "warnings" not in json.loads((Path(healthy["store"]) / "metadata.json").read_text())


def test_images_that_fail_to_decode_are_skipped_and_listed(phantoms: Path, tmp_path: Path, capsys) -> None:
    from mammo_sae.data import VindrIndex

    broken = tmp_path / "phantoms"
    subprocess.run(["cp", "-r", str(phantoms), str(broken)], check=True)
    victim = VindrIndex.load(broken).images.iloc[0]
    Path(victim["path"]).write_bytes(b"DICM but not really")
    code, summary, err = run(base_args(broken, tmp_path / "s", "--backbone", TIMM, "--split", "all"), capsys)
    assert code == 0, err
    assert list(summary["skipped"]) == [victim["image_id"]]
    assert "DICOM" in summary["skipped"][victim["image_id"]]
    assert summary["images_in_store"] == 11


def test_a_run_where_no_image_can_be_read_fails_with_a_clear_message(
    phantoms: Path, tmp_path: Path, capsys
) -> None:
    from mammo_sae.data import VindrIndex

    broken = tmp_path / "phantoms"
    subprocess.run(["cp", "-r", str(phantoms), str(broken)], check=True)
    for path in VindrIndex.load(broken).images["path"]:
        Path(path).write_bytes(b"not a DICOM at all")
    code, _, err = run(base_args(broken, tmp_path / "s", "--backbone", TIMM, "--split", "all"), capsys)
    assert code == 2
    assert "no image could be read (12 skipped" in err and "check --data" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --backbone"),
        (["--backbone", TIMM, "--layer", "layer9"], "layer9"),
        (["--backbone", "timm:no_such_net"], "no_such_net"),
        (["--backbone", TIMM, "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_requests_fail_before_work_with_a_clear_message(
    phantoms: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    code, _, err = run(base_args(phantoms, tmp_path, *extra), capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing is written for a refused request"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mammo_sae.extract", *args, "--no-progress"]


@pytest.mark.slow
def test_torchrun_two_processes_match_a_single_process(phantoms: Path, tmp_path: Path) -> None:
    args = ["--backbone", TIMM, "--split", "all", "--images-per-shard", "3"]
    single = subprocess.run(
        cli(*base_args(phantoms, tmp_path / "one", *args)), capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
    ]
    double = subprocess.run(
        [
            *torchrun,
            "-m",
            "mammo_sae.extract",
            *base_args(phantoms, tmp_path / "two", *args),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    assert json.loads(double.stdout)["processes"] == 2
    one, two = (open_store(next((tmp_path / name).iterdir())) for name in ("one", "two"))
    assert one.path.name == two.path.name
    assert one.index().equals(two.index())
    np.testing.assert_allclose(one.features(), two.features(), rtol=1e-3, atol=1e-3)
