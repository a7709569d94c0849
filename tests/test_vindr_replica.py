"""The index on a replica of the real release CSVs reproduces the published VinDr-Mammo counts (FACTS.md 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import vindr_replica as replica

from mammo_sae.data.__main__ import main
from mammo_sae.data.vindr import VindrIndex


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replica.write_replica(tmp_path_factory.mktemp("vindr-replica"), seed=0)


@pytest.fixture(scope="module")
def index(root: Path) -> VindrIndex:
    return VindrIndex.load(root)


def test_summary_reproduces_the_published_counts(index: VindrIndex) -> None:
    summary = index.summary()
    assert summary["images"] == {"training": 16000, "test": 4000, "total": 20000}
    assert summary["studies"] == {"training": 4000, "test": 1000, "total": 5000}
    assert summary["finding_rows"] == {"training": 16391, "test": 4095, "total": 20486}
    image = summary["positives"]["image"]
    assert image["training"] == {"mass": 894, "calcification": 337}
    assert image["test"] == {"mass": 219, "calcification": 105}
    assert summary["positives"]["row"]["test"] == {"mass": 237, "calcification": 115}
    assert summary["conflicting_images"]["test"]["mass_or_calcification"] == 42


def test_all_replica_images_are_reported_missing_without_failing(index: VindrIndex) -> None:
    missing = index.summary(max_listed=3)["missing_files"]
    assert missing["checked"] and missing["count"] == 20000 and len(missing["first"]) == 3
    assert missing["first"][0].startswith("images/") and missing["first"][0].endswith(".dicom")
    assert len(index.missing) == 20000


def test_row_and_image_labels_give_the_two_published_views(index: VindrIndex) -> None:
    rows = index.labels("row", split="test")
    images = index.labels("image", split="test")
    assert len(rows) == 4095 and len(images) == 4000
    assert rows[["mass", "calcification"]].sum().to_dict() == {"mass": 237, "calcification": 115}
    assert images[["mass", "calcification"]].sum().to_dict() == {"mass": 219, "calcification": 105}
    assert index.conflicts()["any"][index.images["split"] == "test"].sum() == 42


def test_replica_has_the_release_structure(root: Path, index: VindrIndex) -> None:
    findings = pd.read_csv(root / "finding_annotations.csv", dtype=str, keep_default_na=False)
    assert tuple(findings.columns) == replica.FINDING_COLUMNS and len(findings) == 20486
    assert findings["study_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert findings["image_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert (findings["finding_categories"] == "['Suspicious Calcification', 'Mass']").sum() == 40
    assert set(findings["finding_birads"]) == {"", "BI-RADS 3", "BI-RADS 4", "BI-RADS 5"}
    assert set(index.categories) == {
        "mass",
        "calcification",
        "focal_asymmetry",
        "architectural_distortion",
        "asymmetry",
        "suspicious_lymph_node",
        "skin_thickening",
        "global_asymmetry",
        "nipple_retraction",
        "skin_retraction",
    }
    no_finding = index.findings["categories"] == ("No Finding",)
    assert (~index.findings.loc[no_finding, "has_box"]).all() and index.findings.loc[
        no_finding, "finding_birads"
    ].isna().all()
    assert index.images["height"].between(2812, 3580).all() and index.images["width"].nunique() > 3


def test_replica_is_deterministic_per_seed() -> None:
    first, _ = replica.build_replica(seed=3)
    again, _ = replica.build_replica(seed=3)
    other, _ = replica.build_replica(seed=4)  # counts are asserted inside for every seed
    pd.testing.assert_frame_equal(first, again)
    assert not first["image_id"].equals(other["image_id"])


def test_replica_mammo_clip_csv_attaches_to_every_row(tmp_path: Path) -> None:
    root = tmp_path / "vindr"
    breast, finding = replica.build_replica(seed=1)
    root.mkdir()
    breast.to_csv(root / "breast-level_annotations.csv", index=False)
    finding.to_csv(root / "finding_annotations.csv", index=False)
    replica.write_mammo_clip_csv(root, finding)
    index = VindrIndex.load(root, check_files=False)
    assert index.mammo_clip["rows"] == 20486 and index.mammo_clip["finding_rows_matched"] == 20486
    assert index.images["fold"].notna().all()
    boxed = index.findings["has_box"]
    assert index.findings.loc[boxed, "resized_xmax"].between(0, 912).all()
    assert index.findings.loc[~boxed, "resized_xmax"].isna().all()


def test_cli_summary_on_the_replica(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(root), "--no-check-files"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["positives"]["row"]["test"] == {"mass": 237, "calcification": 115}
    assert summary["missing_files"] == {"checked": False, "count": 0, "first": []}
