"""The demo: `demo --quick` runs the whole offline pipeline end to end; the shipped demo in weights/demo
meets its size budget, is labelled synthetic, regenerates its phantoms with the recorded checksum, and its
quality figures are re-measured here from the shipped files."""

from __future__ import annotations

import importlib
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_fixtures import linked_demo_cache

from mammo_sae.analysis.frames import AnalysisFrames, AnalysisRecord
from mammo_sae.analysis.localisation import MapThreshold, localise
from mammo_sae.analysis.peaks import pointing_tolerances
from mammo_sae.bundle import Bundle
from mammo_sae.core.metrics import auroc
from mammo_sae.data.phantom import pixel_fingerprint as fingerprint
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.demo import (
    DEMO_DIR,
    DemoError,
    demo_bundle_dir,
    ensure_demo_dataset,
    quality,
    read_demo_manifest,
)
from mammo_sae.demo.build import TOY_WARNING
from mammo_sae.models import load_classifier
from mammo_sae.sae import load_sae

SIZE_BUDGET = 30 * 2**20
COMMAND_NAMES = ("phantom", "finetune", "extract", "train", "analyze")
shipped = pytest.mark.skipif(not (DEMO_DIR / "demo.json").is_file(), reason="no demo built in weights/demo")


@pytest.mark.slow
def test_quick_demo_runs_the_whole_pipeline(tmp_path: Path, capsys) -> None:
    from mammo_sae.demo.__main__ import main

    assert main(["--quick", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    manifest = read_demo_manifest(tmp_path / "out")
    # a toy build says that its targets do not apply: in its output, its demo.json and its bundle
    assert summary["toy_build"] is True and manifest["toy_build"] is True
    assert summary["missed_targets"] and "NOT meant to meet" in summary["warnings"][0]
    assert "NOT meant to meet" in captured.err
    assert TOY_WARNING in Bundle.open(tmp_path / "out" / "bundle").manifest["warnings"]
    assert manifest["synthetic"] and "SYNTHETIC PHANTOMS" in manifest["what"]
    assert set(manifest["stages"]) == {
        "phantom-train",
        "phantom-heldout",
        "finetune",
        "extract",
        "train-relu",
        "analyze",
    }
    assert summary["quality"]["classifier_auroc"].keys() == {"calcification", "mass"}
    # the recorded commands name no folder of the build machine: WORK and OUT stand for them
    recorded = json.dumps(manifest["stages"])
    assert str(tmp_path) not in recorded and str(tmp_path.resolve()) not in recorded
    assert "--out WORK/finetune" in manifest["stages"]["finetune"]["command"]
    assert set(manifest["placeholders"]) == {"WORK", "OUT"}
    bundle = Bundle.open(tmp_path / "out" / "bundle")
    assert bundle.synthetic and bundle.manifest["splits"] == {"analysis": "test", "score": "training"}
    assert quality.measure(bundle) == manifest["quality"]
    assert not list((tmp_path / "out").rglob("*.dicom")), "phantom images never land in the shipped folder"
    # rerunning continues (every stage finds its output complete) and changes nothing
    before = (tmp_path / "out" / "bundle" / "manifest.json").read_text()
    assert main(["--quick", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 0
    assert (tmp_path / "out" / "bundle" / "manifest.json").read_text() == before
    rerun = read_demo_manifest(tmp_path / "out")
    # --rebuild STAGE redoes that stage and the later ones; the earlier ones are kept as they are
    work = tmp_path / "work"
    kept = (work / "finetune" / "checkpoint.pt").stat().st_mtime_ns
    redone = (work / "sae-relu" / "cfg.json").stat().st_mtime_ns
    argv = ["--quick", "--out", str(tmp_path / "out"), "--work", str(work), "--rebuild", "train-relu"]
    assert main(argv) == 0
    assert "deleting" in capsys.readouterr().err
    assert (work / "finetune" / "checkpoint.pt").stat().st_mtime_ns == kept
    assert (work / "sae-relu" / "cfg.json").stat().st_mtime_ns > redone
    rebuilt = read_demo_manifest(tmp_path / "out")
    kept_timing, rerun_timing = rebuilt["stages"]["finetune"], rerun["stages"]["finetune"]
    assert kept_timing["command"] == rerun_timing["command"]
    assert kept_timing["seconds"] >= rerun_timing["seconds"]  # a kept stage's time adds up, never restarts
    assert rebuilt["quality"] == manifest["quality"]  # same seeds, same SAE, same figures


@shipped
def test_shipped_demo_is_within_budget_and_labelled_synthetic() -> None:
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert total <= SIZE_BUDGET, f"weights/demo holds {total / 2**20:.1f} MB"
    assert not list(DEMO_DIR.rglob("*.dicom")) and not list(DEMO_DIR.rglob("*.png.dicom"))
    manifest = read_demo_manifest()
    assert manifest["synthetic"] and manifest["missed_targets"] == quality.failures(manifest["quality"])
    machine = set(manifest["machine"])  # what the weights came from
    assert {"torch", "cpu_threads", "cpu_native_bf16"} <= machine
    bundle = Bundle.open(demo_bundle_dir())
    assert bundle.synthetic and "SYNTHETIC PHANTOM DATA" in bundle.report_text()
    for shipped_file in (DEMO_DIR / "demo.json", DEMO_DIR / "bundle" / "manifest.json"):
        text = shipped_file.read_text()
        assert "/tmp" not in text and "../" not in text, f"{shipped_file.name} names a build-machine folder"


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory, demo_phantoms: Path) -> Path:
    return linked_demo_cache(demo_phantoms, tmp_path_factory.mktemp("cache")) / demo_phantoms.name


@shipped
@pytest.mark.slow
def test_shipped_quality_figures_are_remeasured_from_the_shipped_files(heldout: Path) -> None:
    manifest = read_demo_manifest()
    bundle = Bundle.open(demo_bundle_dir(), data_root=heldout)
    assert bundle.stale_reasons(heldout) == []
    # the classifier on the regenerated phantoms gives the stored logits
    index = VindrIndex.load(heldout)
    paths = index.images.set_index("image_id")["path"]
    records = [
        AnalysisRecord(i, image_id, paths[image_id]) for i, image_id in enumerate(bundle.images["image_id"])
    ]
    frames = AnalysisFrames(records, bundle.frame_size)
    classifier = load_classifier(DEMO_DIR / "classifier.safetensors")
    sae = load_sae(DEMO_DIR / "sae")
    logits = {task: [] for task in bundle.tasks}
    sse = sst_parts = 0.0
    fired = np.zeros(sae.d_sae, dtype=bool)
    sums, squares, count = 0.0, 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(frames), 16):
            pixels = torch.stack([frames[i][1] for i in range(start, min(start + 16, len(frames)))])
            fmap = classifier.forward_features(pixels)
            for task, value in classifier.forward_head(fmap).items():
                logits[task].append(value.double().numpy().ravel())
            x = fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]).double()
            z = sae.encode(x.float())
            sse += float(((sae.decode(z).double() - x) ** 2).sum())
            fired |= (z > 0).any(0).numpy()
            sums, squares, count = sums + x.sum(0), squares + (x * x).sum(0), count + len(x)
    sst_parts = float((squares - sums**2 / count).sum())
    measured = {}
    for task in bundle.tasks:
        values = np.concatenate(logits[task])
        # another CPU rounds a few phantom pixels and the network's sums differently: up to 2.4e-3 measured
        assert np.abs(values - bundle.images[f"logit_{task}_original"].to_numpy()).max() < 5e-3
        measured[task] = auroc(bundle.images[task].to_numpy(), values)
        assert measured[task] == pytest.approx(manifest["quality"]["classifier_auroc"][task], abs=1e-3)
    assert sse / sst_parts == pytest.approx(manifest["quality"]["sae"]["fvu"], abs=2e-3)
    assert 1 - fired.mean() == pytest.approx(manifest["quality"]["sae"]["dead_fraction"], abs=2e-3)
    # the pointing game of each top class-1 latent, from its maps and the regenerated truth boxes
    for task in ("calcification", "mass"):
        latent = manifest["quality"]["top_latent"][task]
        boxes = bundle.boxes[bundle.boxes["kind"] == task]
        positions = sorted(boxes["position"].unique())
        gt = [
            boxes[boxes["position"] == p][["frame_x0", "frame_y0", "frame_x1", "frame_y1"]].to_numpy()
            for p in positions
        ]
        tolerance = pointing_tolerances(boxes, bundle.manifest["config"]["pointing_tolerance"])
        tolerances = [tuple(tolerance[boxes["position"] == p].iloc[0]) for p in positions]  # (x, y) frame px
        maps = [bundle.latent_map(int(p), latent) for p in positions]
        result = localise(maps, gt, bundle.frame_size, MapThreshold(), tolerances=tolerances)
        assert result.pointing == pytest.approx(manifest["quality"]["pointing_top_latent"][task])
    assert quality.measure(bundle) == manifest["quality"]


@shipped
def test_shipped_demo_meets_every_quality_target() -> None:
    assert quality.failures(read_demo_manifest()["quality"]) == []


@shipped
@pytest.mark.slow  # regenerates the held-out phantoms (minutes on two cores)
def test_a_generator_that_changes_pixels_fails_until_the_demo_is_rebuilt(
    tmp_path: Path, heldout: Path
) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    manifest = read_demo_manifest()
    record = manifest["datasets"]["heldout"]
    record["pixel_checksum"] = "0" * 64  # what a changed generator would meet: other pixels,
    record["pixel_fingerprint"] = fingerprint.encode(fingerprint.decode(record["pixel_fingerprint"]) + 1.0)
    (demo / "demo.json").write_text(json.dumps(manifest))
    with pytest.raises(
        DemoError, match=r"100\.0% of the block means moved.*by 1\.\d+ on average.*rebuild the demo"
    ):
        ensure_demo_dataset(demo, cache=tmp_path / "cache")
    manifest["generator_version"] = "0.0.1"
    (demo / "demo.json").write_text(json.dumps(manifest))
    with pytest.raises(DemoError, match=r"generator 0\.0\.1"):
        ensure_demo_dataset(demo, cache=tmp_path / "cache")


@shipped
@pytest.mark.slow  # regenerates the held-out phantoms (minutes on two cores)
def test_a_cached_dataset_is_reused_and_a_damaged_one_is_not(heldout: Path, tmp_path: Path) -> None:
    from mammo_sae.demo.dataset import dataset_ready

    assert ensure_demo_dataset(cache=heldout.parent) == heldout  # ready: nothing regenerated
    record = read_demo_manifest()["datasets"]["heldout"]
    assert dataset_ready(heldout, record)
    copy = tmp_path / heldout.name
    shutil.copytree(heldout, copy)
    (copy / ".phantom-in-progress").write_text("interrupted")
    assert not dataset_ready(copy, record), "an interrupted generation is regenerated"
    (copy / ".phantom-in-progress").unlink()
    manifest = json.loads((copy / "phantom.json").read_text())
    manifest["pixel_checksum"]["value"] = "f" * 64
    (copy / "phantom.json").write_text(json.dumps(manifest))
    assert dataset_ready(copy, record), (
        "another CPU's rounding (same fingerprint, other checksum) is the same set"
    )
    means_ngg = fingerprint.decode(manifest["pixel_fingerprint"]["value"])
    means_ngg[:, 1, 2] += 2 * fingerprint.TOLERANCE  # one block of every image drawn differently
    manifest["pixel_fingerprint"]["value"] = fingerprint.encode(means_ngg)
    (copy / "phantom.json").write_text(json.dumps(manifest))
    assert not dataset_ready(copy, record), "a dataset with other pixels is regenerated"
    with pytest.raises(DemoError, match="no demo"):
        read_demo_manifest(tmp_path)


def test_a_plan_with_crops_pre_trains_then_continues_on_whole_frames(tmp_path: Path) -> None:
    from dataclasses import replace

    from mammo_sae.demo.build import QUICK, stages

    plan = replace(QUICK, crop="64x64", crop_epochs=2)
    by_name = {stage.name: stage.config for stage in stages(plan, tmp_path / "work", tmp_path / "out", 0)}
    assert list(by_name)[2:4] == ["finetune-crops", "finetune"]
    crops, whole = by_name["finetune-crops"], by_name["finetune"]
    assert crops.crop == (64, 64) and crops.epochs == 2
    assert whole.init == str(tmp_path / "work" / "finetune-crops" / "classifier.safetensors")
    assert whole.crop is None
    plain = [stage.name for stage in stages(QUICK, tmp_path / "work", tmp_path / "out", 0)]
    assert "finetune-crops" not in plain and "finetune" in plain


def test_rebuild_names_a_stage_of_the_plan(tmp_path: Path, capsys) -> None:
    from dataclasses import replace

    from mammo_sae.demo.__main__ import STAGE_NAMES, main
    from mammo_sae.demo.build import QUICK, stages

    for plan in (QUICK, replace(QUICK, crop="64x64", crop_epochs=1, topk=True)):
        names = [stage.name for stage in stages(plan, tmp_path / "work", tmp_path / "out", 0)]
        assert [name for name in STAGE_NAMES if name in names] == names  # every stage, in build order
    argv = ["--quick", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    assert main([*argv, "--rebuild", "finetune-crops"]) == 2  # the quick plan has no crop stage
    assert "this plan's stages are phantom-train, phantom-heldout, finetune," in capsys.readouterr().err
    assert main([*argv, "--rebuild", "sae"]) == 2
    assert "invalid choice: 'sae'" in capsys.readouterr().err
    assert not (tmp_path / "work" / "phantoms-train").exists(), "a refused rebuild runs nothing"


def test_rebuild_discards_the_work_folders_and_timings_from_its_stage_on(tmp_path: Path) -> None:
    from mammo_sae.demo.build import QUICK, discard_from, stages

    work, out = tmp_path / "work", tmp_path / "out"
    planned = stages(QUICK, work, out, 0)
    for stage in planned:
        (stage.output / "done").mkdir(parents=True)
    timings = {stage.name: {"command": stage.command_line, "seconds": 1.0} for stage in planned}
    said: list[str] = []
    discard_from(planned, "extract", work, timings, said.append)
    assert list(timings) == ["phantom-train", "phantom-heldout", "finetune"]
    assert [s.output.exists() for s in planned] == [True, True, True, False, False, True]
    assert planned[-1].name == "analyze" and planned[-1].config.overwrite  # the shipped bundle
    assert " --overwrite" in planned[-1].command_line
    assert len(said) == 2 and all("deleting" in line for line in said)


def test_every_stage_records_the_command_line_that_gives_back_its_config(tmp_path: Path) -> None:
    """The demo is config objects passed to the library; the command recorded for each stage is generated
    from its config and parses back to the same config."""
    from dataclasses import replace

    from mammo_sae.demo.build import FULL, QUICK, stages

    commands = {name: importlib.import_module(f"mammo_sae.{name}").COMMAND for name in COMMAND_NAMES}
    for plan in (QUICK, FULL, replace(QUICK, crop="64x64", crop_epochs=1, topk=True)):
        for stage in stages(plan, tmp_path / "work", tmp_path / "out", 2):
            words = shlex.split(stage.command_line)
            assert words[:3] == ["python", "-m", f"mammo_sae.{stage.command}"]
            assert commands[stage.command].parse(words[3:]) == stage.config, stage.name


def test_only_a_toy_build_records_the_toy_warning_in_its_bundle(tmp_path: Path) -> None:
    from mammo_sae.demo.build import FULL, QUICK, stages

    quick = stages(QUICK, tmp_path / "work", tmp_path / "out", 0)[-1].config
    full = stages(FULL, tmp_path / "work", tmp_path / "out", 0)[-1].config
    assert quick.warning == (TOY_WARNING,) and "not meant to meet" in TOY_WARNING
    assert full.warning == ()


def test_demo_without_out_builds_in_the_cache_never_into_the_shipped_demo(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from mammo_sae.demo.__main__ import COMMAND, main

    monkeypatch.setenv("MAMMO_SAE_CACHE", str(tmp_path / "cache"))
    default = COMMAND.parse([])
    assert default.out_dir() == tmp_path / "cache" / "demo-full"
    assert default.work_dir() == tmp_path / "cache" / "demo-full-work"
    assert COMMAND.parse(["--quick"]).out_dir() == tmp_path / "cache" / "demo-quick"
    shipped = {p: p.stat().st_mtime_ns for p in DEMO_DIR.rglob("*")} if DEMO_DIR.exists() else {}
    work = ["--work", str(tmp_path / "work")]
    assert main(["--out", str(DEMO_DIR), *work]) == 2
    assert "add --replace-shipped" in capsys.readouterr().err
    assert main(["--quick", "--out", str(DEMO_DIR), "--replace-shipped", *work]) == 2
    assert "--quick never writes into the shipped demo" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "cache").exists(), (
        "a refused build runs nothing"
    )
    assert shipped == ({p: p.stat().st_mtime_ns for p in DEMO_DIR.rglob("*")} if DEMO_DIR.exists() else {})
    assert COMMAND.parse(["--out", str(DEMO_DIR), "--replace-shipped"]).out_dir() == DEMO_DIR
