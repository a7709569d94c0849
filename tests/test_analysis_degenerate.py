"""Degenerate inputs are reported where they are first visible, never passed silently (defect 15): a head whose
split lacks a class reads "undefined (no positives)" in the report, logits that differ only by float noise
and an SAE that reconstructs nothing are warnings in the manifest, and the manifest is strict JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import Setting, analyze_config, constant_feature_classifier

from mammo_sae.analysis import checks
from mammo_sae.bundle import Bundle
from mammo_sae.bundle.writing import analyze
from mammo_sae.bundle.writing.report import baseline_rows


def strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"the manifest holds {token}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def baseline_section(report: str) -> str:
    return report.split("## Classifier AUROC and AUPRC")[1].split("\nFor reference")[0]


def test_a_split_without_a_class_reports_undefined_metrics_and_stays_strict_json(
    analysis_setting: Setting, tmp_path: Path
) -> None:
    out = tmp_path / "one-image"
    summary = analyze(analyze_config(analysis_setting, out, limit=1))  # one image: one class per head
    manifest = strict((out / "manifest.json").read_text())
    bundle = Bundle.open(out)
    section = baseline_section(bundle.report_text())
    assert "_(none)_" not in section
    for task in bundle.tasks:
        line = next(line for line in section.splitlines() if line.startswith(f"| {task} | image |"))
        assert "undefined (no positives)" in line or "undefined (no negatives)" in line
        assert manifest["summary"][task]["original"] is None  # NaN is written as null
        assert any(f"for the {task} head (per image" in w and "undefined" in w for w in manifest["warnings"])
    assert "AUROC undefined (no" in bundle.report_text()  # the curve tables say so too
    assert summary["warnings"] == manifest["warnings"]


@pytest.mark.slow
def test_features_the_same_for_every_image_are_warned_about_in_the_bundle(
    analysis_setting: Setting, tmp_path: Path
) -> None:
    clf = constant_feature_classifier(tmp_path / "constant.safetensors")
    out = tmp_path / "bundle"
    analyze(replace(analyze_config(analysis_setting, out), classifier=(str(clf),)))
    bundle = Bundle.open(out)
    logits = bundle.images[[f"logit_{t}_original" for t in bundle.tasks]].to_numpy()
    assert np.ptp(logits, axis=0).max() < 1e-5, "the setting is degenerate as intended"
    noise = [w for w in bundle.manifest["warnings"] if "float noise" in w]
    assert len(noise) == len(bundle.tasks)
    fvu = bundle.manifest["summary"]["sae"]["fvu"]  # >= 1, or undefined (null) where nothing varies
    assert (fvu is None or fvu >= 1) and len([w for w in bundle.manifest["warnings"] if "FVU" in w]) == 1
    section = baseline_section(bundle.report_text())
    for task in bundle.tasks:
        line = next(line for line in section.splitlines() if line.startswith(f"| {task} | image |"))
        assert "(float noise)" in line


def test_logit_noise_is_told_from_real_spread() -> None:
    rng = np.random.default_rng(0)
    flat_nh = np.stack([0.3 + 1e-10 * rng.standard_normal(50), 12.0 + 1e-9 * rng.standard_normal(50)], axis=1)
    assert [w.split("'")[0] for w in checks.logit_warnings(flat_nh, ("mass", "calc"))] == [
        "the mass head",
        "the calc head",
    ]
    real_nh = rng.standard_normal((50, 2)) * 1e-3  # small but real: 1e-3 is far above float noise
    assert checks.logit_warnings(real_nh, ("mass", "calc")) == []
    assert checks.noise_spread(np.array([5.0])) is None, "one image has no spread to judge"


def test_a_missing_class_and_a_useless_sae_are_named() -> None:
    labels = {
        "image": {"mass": np.zeros(4, int), "calc": np.array([0, 1, 0, 1])},
        "row": {"mass": np.ones(3, int)},
    }
    warnings = checks.class_warnings(labels, ("mass", "calc"), "test")
    assert warnings == [
        "the test split has no positives for the mass head (per image, 4 images): its AUROC is undefined",
        "the test split has no negatives for the mass head (per row, 3 rows): its AUROC is undefined",
    ]
    assert checks.quality_warnings({"fvu": 5834.0, "dead_fraction": 0.995}) == [
        "the SAE reconstructs the analysed features worse than their mean (FVU 5,834 >= 1): it was trained "
        "on other features, or these features are degenerate",
        "99.5% of the SAE's latents never fire on the analysed split",
    ]
    assert checks.quality_warnings({"fvu": 0.08, "dead_fraction": 0.0}) == []


def test_the_report_keeps_every_head_and_says_why_a_metric_is_undefined() -> None:
    rows = [
        {"head": h, "unit": "image", "variant": v, "n": 6, "positives": p, "auroc": a, "auprc": b}
        for h, p, a, b in (("mass", 0, np.nan, np.nan), ("calc", 6, np.nan, 1.0), ("density", 3, 0.77, 0.6))
        for v in ("original", "sae", "sae_error")
    ]
    table = baseline_rows(pd.DataFrame(rows), frozenset({"density"})).set_index("head")
    assert list(table.index) == ["mass", "calc", "density"]
    assert table.loc["mass", "AUROC original"] == "undefined (no positives)"
    assert table.loc["mass", "AUPRC with SAE"] == "undefined (no positives)"
    assert table.loc["calc", "AUROC SAE + error"] == "undefined (no negatives)"
    assert table.loc["calc", "AUPRC original"] == "1.000 (no negatives)"
    assert table.loc["density", "AUROC original"] == "0.770 (float noise)"
    assert table.loc["density", "AUPRC original"] == "0.600"
