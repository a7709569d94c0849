"""A full disk or a read-only output folder: `extract`, `train` and `analyze` stop with one clear line and
exit code 2, the notes writer with a BundleError, and every artefact that was there before is unchanged
(hashed before and after); once space is back, the same command finishes the work."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from analysis_fixtures import FRAME, Setting, analyze_args
from disk_faults import MESSAGES, file_hashes, full_disk, read_only

from mammo_sae import analyze, extract, train
from mammo_sae.bundle import Bundle, BundleError
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.sae import load_sae

KINDS = ("full disk", "read-only")


def fault(kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> contextlib.AbstractContextManager[str]:
    return full_disk(folder, monkeypatch) if kind == "full disk" else read_only(folder, monkeypatch)


def run_failing(main: Callable[[list[str]], int], argv: list[str], capsys, expected: str) -> str:
    """Run a command that must fail on the file system: exit 2, one error line naming the cause."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert (
        MESSAGES[expected] in errors[0]
        and "check the path, its permissions and the free disk space" in errors[0]
    )
    return errors[0]


def no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob(".*.tmp")], "a failed write left a temporary file"


@contextlib.contextmanager
def unchanged(root: Path) -> Iterator[None]:
    before = file_hashes(root)
    yield
    after = file_hashes(root)
    assert {name: after.get(name) for name in before} == before, "an existing artefact changed"
    no_temporaries(root)


# --- extract ---------------------------------------------------------------------------------------------


def extract_args(setting: Setting, out: Path) -> list[str]:
    return [
        "--data", str(setting.data), "--classifier", str(setting.classifier), "--frame-size", FRAME,
        "--out", str(out), "--split", "test", "--workers", "0", "--images-per-shard", "4",
        "--tokens-per-image", "1.0", "--no-progress",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_extract_into_a_full_or_read_only_folder_keeps_the_stores_there(
    analysis_setting: Setting, tmp_path: Path, monkeypatch, capsys, kind: str
) -> None:
    stores = tmp_path / "stores"
    shutil.copytree(analysis_setting.root / "stores", stores)
    with unchanged(stores), fault(kind, stores, monkeypatch) as expected:
        run_failing(extract.main, extract_args(analysis_setting, stores), capsys, expected)


def test_extract_when_the_disk_fills_mid_run_resumes_once_space_is_back(
    analysis_setting: Setting, tmp_path: Path, monkeypatch, capsys
) -> None:
    stores = tmp_path / "stores"
    shutil.copytree(analysis_setting.root / "stores", stores)
    with unchanged(stores), full_disk(stores, monkeypatch, budget=64 << 10) as expected:
        line = run_failing(extract.main, extract_args(analysis_setting, stores), capsys, expected)
    assert "shard-00000.npy" in line, "the message names the file that could not be written"
    assert extract.main(extract_args(analysis_setting, stores)) == 0
    assert len(list(stores.glob("*/metadata.json"))) == 2


# --- train -----------------------------------------------------------------------------------------------


def resume_args(run: Path, *extra: str) -> list[str]:
    """Continue the fixture's training run (its own train_config.toml) to 40 steps."""
    config = run / "train_config.toml"
    return ["--config", str(config), "--out", str(run), "--resume", "--max-steps", "40", *extra]


@pytest.mark.parametrize("kind", KINDS)
def test_train_into_a_full_or_read_only_folder_keeps_the_run(
    analysis_setting: Setting, tmp_path: Path, monkeypatch, capsys, kind: str
) -> None:
    run = tmp_path / "sae"
    shutil.copytree(analysis_setting.sae, run)
    with unchanged(run), fault(kind, run, monkeypatch) as expected:
        run_failing(train.main, resume_args(run), capsys, expected)
    assert load_sae(run).d_in == 512


def test_a_checkpoint_that_does_not_fit_on_the_disk_keeps_the_last_one(
    analysis_setting: Setting, tmp_path: Path, monkeypatch, capsys
) -> None:
    run = tmp_path / "sae"
    shutil.copytree(analysis_setting.sae, run)
    kept = ("checkpoint.pt", "sae_weights.safetensors", "cfg.json", "eval.json")
    before = {name: (run / name).read_bytes() for name in kept}
    with full_disk(run, monkeypatch, only="*checkpoint.pt*") as expected:
        line = run_failing(train.main, resume_args(run), capsys, expected)
    assert "checkpoint.pt" in line
    assert {name: (run / name).read_bytes() for name in kept} == before
    no_temporaries(run)
    assert train.main(resume_args(run)) == 0  # space is back: the run goes on from the kept checkpoint
    assert '"steps": 40' in capsys.readouterr().out


# --- analyze ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_analyze_over_a_bundle_on_a_full_or_read_only_disk_keeps_the_bundle(
    analysis_setting: Setting, analysis_bundle_path: Path, tmp_path: Path, monkeypatch, capsys, kind: str
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(analysis_bundle_path, bundle)
    argv = analyze_args(analysis_setting, bundle, "--overwrite", "--top-patches", "8")
    with unchanged(bundle), fault(kind, bundle, monkeypatch) as expected:
        run_failing(analyze.main, argv, capsys, expected)
    Bundle.open(bundle, verify=True, check_inputs=False)  # still complete and intact


# --- notes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_notes_on_a_full_or_read_only_disk_fail_clearly_and_keep_the_old_notes(
    tmp_path: Path, monkeypatch, kind: str
) -> None:
    notes = LatentNotes(tmp_path, d_sae=16)
    notes.save(3, "bright dots", "calcification", "clustered")
    with unchanged(tmp_path), fault(kind, tmp_path, monkeypatch) as expected:
        with pytest.raises(BundleError, match=r"the notes in .* were not saved: ") as error:
            notes.save(4, "edge", "artifact / marker")
        assert MESSAGES[expected] in str(error.value) and "\n" not in str(error.value)
        assert notes.get(3)["name"] == "bright dots" and notes.get(4) is None  # reading still works
