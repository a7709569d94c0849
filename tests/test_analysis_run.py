"""End to end: `analyze` on phantoms writes a complete bundle whose numbers the tests recompute, and the
exact shortcut equals the full forward pass with the SAE spliced into the feature map."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from analysis_fixtures import FRAME_HW, Setting, analyze_args, model_inputs

from mammo_sae import analyze as analyze_cli
from mammo_sae.analysis.frames import AnalysisFrames, AnalysisRecord
from mammo_sae.analysis.interventions import scale_vector
from mammo_sae.analysis.localisation import MapThreshold, localise
from mammo_sae.analysis.splice import sae_in_features
from mammo_sae.bundle import Bundle, BundleError, BundleStaleError
from mammo_sae.bundle.writing import work as work_module
from mammo_sae.core.metrics import auroc
from mammo_sae.data.frames import transform_from_json
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.models import load_classifier
from mammo_sae.sae import load_sae


@pytest.fixture(scope="module")
def setting(analysis_setting: Setting) -> Setting:
    return analysis_setting


@pytest.fixture(scope="module")
def bundle_path(analysis_bundle_path: Path) -> Path:
    return analysis_bundle_path


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> Bundle:
    return Bundle.open(bundle_path, verify=True)


def test_bundle_is_complete_and_labelled_synthetic(bundle: Bundle) -> None:
    manifest = bundle.manifest
    assert manifest["synthetic"] and manifest["dataset_kind"] == "synthetic phantoms"
    assert set(bundle.tasks) == {"mass", "calcification"}
    assert len(bundle.images) == len(bundle.mean_latents) == bundle.codes.n_images
    assert bundle.codes.grid == tuple(manifest["grid"])
    assert "SYNTHETIC PHANTOM DATA" in bundle.report_text()
    assert not (bundle.path / "work").exists(), "the chunks of a finished run are removed"


def test_shortcut_equals_full_forward_with_the_sae_spliced_in(setting: Setting, bundle: Bundle) -> None:
    classifier = load_classifier(setting.classifier)
    sae = load_sae(setting.sae)
    pixels = model_inputs(setting, bundle, 4)
    ids = bundle.images["image_id"].tolist()[:4]
    order = [classifier.tasks.index(t) for t in bundle.tasks]
    rng = np.random.default_rng(0)
    scales = {
        "reconstruction": None,
        "keep top-5": scale_vector(bundle.d_sae, keep=bundle.topk_union("calcification", 5)),
        "suppress top-5": scale_vector(bundle.d_sae, suppress=bundle.topk_union("mass", 5)),
        "random scales": rng.uniform(0, 2, bundle.d_sae).astype(np.float32),
    }
    for name, scale in scales.items():
        for add_error in (False, True):
            with torch.inference_mode(), sae_in_features(classifier, sae, scale, add_error=add_error):
                logits = classifier(pixels)
            full = torch.cat([logits[t] for t in classifier.tasks], dim=1).double().numpy()[:, order]
            shortcut = bundle.logits(scale, ids, error_term=add_error)
            assert np.abs(full - shortcut).max() <= 1e-4, f"{name}, error term {add_error}"
    with torch.inference_mode():
        plain = classifier(pixels)
    original = np.stack([plain[t].reshape(-1).double().numpy() for t in bundle.tasks], axis=1)
    stored = bundle.images[[f"logit_{t}_original" for t in bundle.tasks]].to_numpy()[:4]
    assert np.abs(original - stored).max() <= 1e-4
    recon_plus_error = bundle.images[[f"logit_{t}_sae_error" for t in bundle.tasks]].to_numpy()
    assert np.allclose(
        recon_plus_error, bundle.images[[f"logit_{t}_original" for t in bundle.tasks]], atol=1e-4
    )


def test_mean_latents_match_the_stored_codes(bundle: Bundle) -> None:
    from_codes = bundle.codes.mean_latents()
    assert np.allclose(from_codes, bundle.mean_latents, rtol=2e-3, atol=1e-4)  # codes are fp16


def test_contributions_sum_to_the_logit(bundle: Bundle) -> None:
    image = bundle.images["image_id"].iloc[1]
    for h, task in enumerate(bundle.tasks):
        table = bundle.contributions(image, task)
        total = table["contribution"].sum() + table.attrs["const"]
        assert total == pytest.approx(bundle.images[f"logit_{task}_sae"].iloc[1], abs=1e-6)
        assert total == pytest.approx(bundle.logits(None, [image])[0, h], abs=1e-6)


def test_baselines_and_curves_recompute(bundle: Bundle) -> None:
    images = bundle.images
    for task in bundle.tasks:
        y = images[task].to_numpy()
        if y.min() == y.max():
            continue
        for variant in ("original", "sae"):
            stored = bundle.baselines.query("head == @task and unit == 'image' and variant == @variant")[
                "auroc"
            ]
            assert float(stored.iloc[0]) == pytest.approx(
                auroc(y, images[f"logit_{task}_{variant}"].to_numpy())
            )
        curve = bundle.curves.query(
            "head == @task and concept == @task and unit == 'image' and not error_term"
        )
        for mode in ("keep", "suppress"):
            row = curve[(curve["mode"] == mode) & (curve["k_label"] == "5")].iloc[0]
            union = bundle.topk_union(task, 5)
            scale = scale_vector(bundle.d_sae, **{mode: union})
            logits = bundle.logits(scale)[:, bundle.tasks.index(task)]
            assert float(row["auroc"]) == pytest.approx(auroc(y, logits))


def test_concept_scores_equal_brute_force(setting: Setting, bundle: Bundle) -> None:
    """Recompute the training-split class means by running the models image by image."""
    classifier = load_classifier(setting.classifier)
    sae = load_sae(setting.sae)
    index = VindrIndex.load(setting.data)
    train = index.images[index.images["split"] == "training"]
    records = [AnalysisRecord(i, r.image_id, r.path) for i, r in enumerate(train.itertuples())]
    dataset = AnalysisFrames(records, FRAME_HW)
    zbar, zmax = [], []
    with torch.inference_mode():
        for i in range(len(dataset)):
            fmap = classifier.forward_features(dataset[i][1][None])
            z = sae.encode(fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]))
            zbar.append(z.mean(0).double().numpy())
            zmax.append(z.amax(0).double().numpy())
    zbar, zmax = np.stack(zbar), np.stack(zmax)
    for concept in bundle.concepts:
        y = train[concept].to_numpy()
        for cls in (0, 1):
            if not np.any(y == cls):
                continue
            expected = zbar[y == cls].mean(0) - zbar.mean(0)
            stored = bundle.scores.query("concept == @concept and cls == @cls").sort_values("latent")
            assert np.allclose(stored["deviation"].to_numpy(), expected, atol=1e-5)
            peak = zmax[y == cls].mean(0) - zmax.mean(0)
            assert np.allclose(stored["peak_deviation"].to_numpy(), peak, atol=1e-5)


def test_top_patches_equal_brute_force(bundle: Bundle) -> None:
    dense = bundle.codes.dense().reshape(bundle.codes.n_images, -1, bundle.d_sae)
    patches = bundle.patches
    for latent in patches["latent"].unique()[:20]:
        best = dense[:, :, latent].max(axis=1)
        images = np.flatnonzero(best > 0)
        images = images[np.lexsort((images, -best[images]))][: bundle.manifest["config"]["top_patches"]]
        got = patches[patches["latent"] == latent].sort_values("rank")
        assert got["image"].tolist() == images.tolist()
        assert np.allclose(got["value"], best[images])


def test_patch_regions_are_in_original_pixels(bundle: Bundle) -> None:
    row = bundle.patches.iloc[0]
    transform = transform_from_json(bundle.images["transform"].iloc[int(row["image"])])
    frame_box = np.array([[row["frame_x0"], row["frame_y0"], row["frame_x1"], row["frame_y1"]]])
    original = transform.boxes_to_original(frame_box)[0]
    assert np.allclose(original, [row["orig_x0"], row["orig_y0"], row["orig_x1"], row["orig_y1"]], atol=1e-2)
    height, width = transform.original_shape
    assert (
        0 <= row["orig_x0"] < row["orig_x1"] <= width + 1
        and 0 <= row["orig_y0"] < row["orig_y1"] <= height + 1
    )


def test_localisation_recomputes_from_codes_and_boxes(bundle: Bundle) -> None:
    table = bundle.localisation
    assert not table.empty
    row = table.iloc[0]
    boxes = bundle.boxes[bundle.boxes["kind"] == row["target"]]
    positions = sorted(boxes["position"].unique())
    gt = [
        boxes[boxes["position"] == p][["frame_x0", "frame_y0", "frame_x1", "frame_y1"]].to_numpy()
        for p in positions
    ]
    maps = [bundle.latent_map(int(p), int(row["latent"])) for p in positions]
    result = localise(maps, gt, bundle.frame_size, MapThreshold()).as_dict()
    for key in ("pointing", "mean_iou", "ap30", "ap50"):
        assert result[key] == pytest.approx(row[key], nan_ok=True)


def test_curve_chart_and_report_files(bundle: Bundle) -> None:
    records = json.loads((bundle.path / "curves.json").read_text())
    assert len(records) == len(bundle.curves) and {r["k"] for r in records if r["k_label"] == "all"} == {None}
    spec = json.loads((bundle.path / "curves.vl.json").read_text())
    assert "$schema" in spec
    assert (bundle.path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = bundle.report_text()
    assert "Mammo-SAE paper" in report and "| calcification | image |" in report


def test_rerun_of_a_complete_bundle_does_nothing(setting: Setting, bundle_path: Path, capsys) -> None:
    before = (bundle_path / "manifest.json").read_text()
    assert analyze_cli.main(analyze_args(setting, bundle_path)) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == "already complete"
    assert (bundle_path / "manifest.json").read_text() == before


def test_interrupted_run_resumes_to_the_same_bundle(setting: Setting, bundle: Bundle, monkeypatch) -> None:
    out = setting.root / "interrupted"
    real = work_module.run_chunk
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while the second chunk runs
        return real(*args, **kwargs)

    monkeypatch.setattr(work_module, "run_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        analyze_cli.main(analyze_args(setting, out))
    with pytest.raises(BundleError, match="rerun the same analyze command"):
        Bundle.open(out)
    monkeypatch.setattr(work_module, "run_chunk", real)
    assert analyze_cli.main(analyze_args(setting, out)) == 0
    resumed = Bundle.open(out)
    assert np.array_equal(resumed.mean_latents, bundle.mean_latents)
    for name in ("images", "latents", "patches", "localisation", "curves", "scores"):
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(bundle, name), check_exact=False)


def test_changed_inputs_make_the_bundle_stale(setting: Setting, bundle_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(setting.root, copy, ignore=shutil.ignore_patterns("stores", "interrupted"))
    moved = Bundle.open(copy / "bundle")  # inputs recorded relative to the bundle: the copy is not stale
    assert moved.stale_reasons() == []
    classifier = copy / "classifier.safetensors"
    classifier.write_bytes(classifier.read_bytes()[:-1] + b" ")
    with pytest.raises(BundleStaleError, match=r"classifier file .* changed") as error:
        Bundle.open(copy / "bundle")
    assert "python -m mammo_sae.analyze" in str(error.value)
    table = copy / "bundle" / "latents.parquet"
    table.write_bytes(table.read_bytes()[:-3])
    with pytest.raises(BundleError, match="damaged"):
        Bundle.open(copy / "bundle", check_inputs=False)


def test_bad_arguments_are_rejected_before_any_work(setting: Setting, tmp_path: Path, capsys) -> None:
    assert analyze_cli.main([*analyze_args(setting, tmp_path / "a"), "--concepts", "tumour"]) == 2
    assert "not label columns" in capsys.readouterr().err
    assert analyze_cli.main([*analyze_args(setting, tmp_path / "b"), "--backbone", "timm:resnet34"]) == 2
    assert "carries its own encoder" in capsys.readouterr().err
    assert analyze_cli.main([*analyze_args(setting, tmp_path / "c"), "--ks", "1,five"]) == 2
    assert "--ks" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_scores_can_come_from_another_root(setting: Setting, bundle: Bundle, tmp_path: Path) -> None:
    """--score-data ranks the latents on another dataset's training split (the demo ranks on its training
    phantoms and analyses held-out ones)."""
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    other_root = tmp_path / "score-phantoms"
    config = PhantomConfig(
        studies=3, seed=9, height=256, width=208, test_fraction=0.0, mass_rate=0.6, calcification_rate=0.6
    )
    generate_dataset(other_root, config, workers=1)
    out = tmp_path / "bundle"
    assert analyze_cli.main([*analyze_args(setting, out), "--score-data", str(other_root)]) == 0
    other = Bundle.open(out)
    expected = VindrIndex.load(other_root).images[["mass", "calcification"]].sum()
    scores = other.scores
    for concept in ("mass", "calcification"):
        n_positive = scores.query("concept == @concept and cls == 1")["n_images"].iloc[0]
        assert n_positive == expected[concept], "class counts come from the score root"
    assert not np.allclose(other.scores["zbar"], bundle.scores["zbar"], equal_nan=True)
    assert np.array_equal(other.mean_latents, bundle.mean_latents), "the analysed split is unchanged"
    assert other.manifest["inputs"]["score_dataset"]["kind"] == "synthetic phantoms"
    csv = other_root / "breast-level_annotations.csv"
    csv.write_text(csv.read_text() + "\n")
    with pytest.raises(BundleStaleError, match="differs from the one analysed"):
        Bundle.open(out)
