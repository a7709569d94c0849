"""A bundle's manifest records its inputs portably (defect 7): no folder of the machine that built it, a
command that rebuilds it on a fresh machine, inputs found by identity; version-1 manifests still open; the
report gives AUPRC beside AUROC (defect 8)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import Setting, analyze_config

from mammo_sae import analyze as analyze_cli
from mammo_sae import phantom as phantom_cli
from mammo_sae.bundle import Bundle, BundleError, BundleStaleError, DatasetNotFoundError
from mammo_sae.bundle.format import without_locations
from mammo_sae.bundle.locations import recall, remember
from mammo_sae.bundle.writing import analyze
from mammo_sae.core.user_data import CACHE_ENV
from mammo_sae.data.phantom import load_manifest

TABLES = ("images", "latents", "scores", "patches", "localisation", "baselines", "curves")


@pytest.fixture(scope="module")
def far_bundle(analysis_setting: Setting, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle written far from its inputs (nothing beside it), so every input is a placeholder."""
    out = tmp_path_factory.mktemp("far") / "runs" / "deep" / "bundle"
    analyze(analyze_config(analysis_setting, out))
    return out


def strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_manifest_names_no_folder_of_the_machine_that_built_it(
    analysis_setting: Setting, far_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (far_bundle / "manifest.json").read_text()
    manifest = strict(text)
    for folder in (analysis_setting.root, far_bundle.parent, Path.cwd()):
        assert str(folder) not in text and str(folder.resolve()) not in text
    assert "../" not in text and '"root"' not in text and '"path"' not in text
    assert (
        manifest["command"]
        == "python -m mammo_sae.analyze --data DATA --classifier CLASSIFIER --sae SAE --out bundle --chunk-images 3"
    )  # generated from the config: every knob that shapes the bundle or its work folder, none that only runs it
    assert set(manifest["placeholders"]) == {"DATA", "CLASSIFIER", "SAE"}
    assert manifest["placeholders"]["DATA"].startswith(
        "the synthetic phantoms made by: python -m mammo_sae.phantom"
    )
    assert manifest["config"]["data"] == "DATA" and manifest["config"]["out"] == "bundle"

    here = Bundle.open(far_bundle)  # the machine that built it remembers where the inputs are
    assert here.data_root == analysis_setting.data.resolve()
    assert here.classifier_paths == [analysis_setting.classifier.resolve()]
    assert str(analysis_setting.data.resolve()) in here.rebuild_command

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "fresh-user"))  # another machine: only the bundle
    monkeypatch.delenv("MAMMO_SAE_DATA", raising=False)
    with pytest.raises(BundleStaleError, match=r"classifier file classifier\.safetensors is missing"):
        Bundle.open(far_bundle)
    fresh = tmp_path / "fresh"
    shutil.copytree(far_bundle, fresh / "bundle")
    shutil.copy(analysis_setting.classifier, fresh / "classifier.safetensors")
    shutil.copytree(analysis_setting.sae, fresh / analysis_setting.sae.name)
    moved = Bundle.open(fresh / "bundle")  # inputs beside the bundle are found by name and hash
    assert moved.find_data_root() is None
    with pytest.raises(DatasetNotFoundError) as error:
        _ = moved.data_root
    assert "python -m mammo_sae.phantom --out DIR" in str(error.value) and "MAMMO_SAE_DATA" in str(
        error.value
    )
    monkeypatch.setenv("MAMMO_SAE_DATA", str(analysis_setting.data))
    assert Bundle.open(fresh / "bundle").data_root == analysis_setting.data.resolve()


@pytest.mark.slow
def test_the_recorded_command_rebuilds_the_bundle_on_a_fresh_machine(
    analysis_setting: Setting, far_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = strict((far_bundle / "manifest.json").read_text())
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "fresh-user"))
    monkeypatch.chdir(fresh)
    generator = manifest["placeholders"]["DATA"].split(": ", 1)[1].replace("DATA", "data")
    assert phantom_cli.main([*shlex.split(generator)[3:], "--workers", "1", "--no-progress"]) == 0
    recorded = manifest["inputs"]["dataset"]["phantom"]["pixel_checksum"]
    assert load_manifest(fresh / "data")["pixel_checksum"]["value"] == recorded, "the same phantoms again"
    shutil.copy(analysis_setting.classifier, fresh / "clf.safetensors")  # any name: the hash identifies it
    shutil.copytree(analysis_setting.sae, fresh / "sae")
    command = manifest["command"].replace("DATA", "data").replace("CLASSIFIER", "clf.safetensors")
    argv = [*shlex.split(command.replace("--sae SAE", "--sae sae"))[3:], "--workers", "0", "--no-progress"]
    assert analyze_cli.main(argv) == 0
    rebuilt, original = Bundle.open(fresh / "bundle"), Bundle.open(far_bundle, check_inputs=False)
    assert without_locations(rebuilt.manifest["inputs"]) == without_locations(original.manifest["inputs"])
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(rebuilt, name), getattr(original, name))


def test_a_version_1_manifest_still_opens(
    analysis_setting: Setting, analysis_bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bundles written before portable manifests recorded paths relative to the bundle (as the shipped demo's
    does): they open, find their inputs there and stay fresh."""
    copy = tmp_path / "old"
    shutil.copytree(analysis_setting.root, copy, ignore=shutil.ignore_patterns("stores", "interrupted"))
    path = copy / "bundle" / "manifest.json"
    manifest = json.loads(path.read_text())
    inputs = manifest["inputs"]
    inputs["dataset"] = {"root": "../phantoms"} | {k: v for k, v in inputs["dataset"].items() if k != "name"}
    inputs["classifiers"] = [
        {"path": "../classifier.safetensors", "sha256": inputs["classifiers"][0]["sha256"]}
    ]
    inputs["sae"] = {"path": f"../{analysis_setting.sae.name}"} | {
        k: v for k, v in inputs["sae"].items() if k != "name"
    }
    for key in ("placeholders", "frames"):
        manifest.pop(key)
    manifest["format_version"] = 1
    path.write_text(json.dumps(manifest, indent=1))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user"))
    old = Bundle.open(copy / "bundle")
    assert old.stale_reasons() == [] and old.data_root == (copy / "phantoms").resolve()
    assert old.sae_dir == (copy / analysis_setting.sae.name).resolve()


def test_the_report_gives_auprc_beside_auroc_for_every_variant(analysis_bundle_path: Path) -> None:
    bundle = Bundle.open(analysis_bundle_path)
    report = bundle.report_text()
    header = next(line for line in report.splitlines() if line.startswith("| head | unit |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for metric in ("AUROC", "AUPRC"):
        for variant in ("original", "with SAE", "SAE + error"):
            assert f"{metric} {variant}" in columns
    baselines = bundle.baselines.set_index(["head", "unit", "variant"])
    for task in bundle.tasks:
        line = next(line for line in report.splitlines() if line.startswith(f"| {task} | image |"))
        cells = dict(zip(columns, [c.strip() for c in line.strip("|").split("|")], strict=True))
        assert cells["AUPRC original"] == f"{baselines.loc[(task, 'image', 'original'), 'auprc']:.3f}"
        assert cells["AUPRC SAE + error"] == f"{baselines.loc[(task, 'image', 'sae_error'), 'auprc']:.3f}"


def test_the_shipped_demo_manifest_names_no_folder_of_its_build_machine() -> None:
    """Defect 7 on the shipped artefact: the demo bundle records its phantoms by identity (regenerated from
    the manifest), its models beside it, and a command that works on a fresh clone."""
    from mammo_sae.demo import demo_bundle_dir

    text = (demo_bundle_dir() / "manifest.json").read_text()
    manifest = strict(text)
    assert "../" not in text and "/tmp" not in text and "/home" not in text and "/root" not in text
    assert manifest["inputs"]["dataset"]["phantom"] and "root" not in manifest["inputs"]["dataset"]
    assert manifest["command"].startswith(
        "python -m mammo_sae.analyze --data DATA --classifier classifier.safetensors"
    )
    assert "python -m mammo_sae.phantom" in manifest["placeholders"]["DATA"]


def test_a_dataset_root_given_by_the_user_is_checked_and_remembered_outside_the_bundle(
    analysis_setting: Setting, far_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    monkeypatch.setenv(CACHE_ENV, str(user))
    monkeypatch.delenv("MAMMO_SAE_DATA", raising=False)
    copy = tmp_path / "copy"
    shutil.copytree(far_bundle, copy / "bundle")
    shutil.copy(analysis_setting.classifier, copy / "classifier.safetensors")
    shutil.copytree(analysis_setting.sae, copy / analysis_setting.sae.name)
    bundle = Bundle.open(copy / "bundle")
    assert bundle.find_data_root() is None
    with pytest.raises(BundleError, match="is not the dataset this bundle analysed"):
        bundle.remember_data_root(tmp_path)
    assert bundle.remember_data_root(analysis_setting.data) == analysis_setting.data.resolve()
    assert Bundle.open(copy / "bundle").data_root == analysis_setting.data.resolve()  # a new session too
    before = (copy / "bundle" / "manifest.json").read_bytes()
    assert [p.parent.name for p in user.rglob("*.json")] == ["input-locations"]
    assert (copy / "bundle" / "manifest.json").read_bytes() == before, "the bundle itself is untouched"
    shutil.rmtree(copy)
    remember(tmp_path / "other", "run", {"dataset": analysis_setting.data})  # the next record prunes
    assert recall(copy / "bundle", bundle.manifest["run_id"]) == {}
    assert len(list(user.rglob("*.json"))) == 0, "records of removed bundle folders are dropped"
