"""The VinDr-Mammo index on small hand-made CSV pairs: tables, labels per image and per row, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammo_sae.core.errors import DataError
from mammo_sae.data.vindr import BREAST_COLUMNS, BREAST_CSV, FINDING_COLUMNS, FINDING_CSV, VindrIndex

NO_BOX = ("", "", "", "")


def image(
    study: str, image_id: str, laterality="L", view="CC", split="training", birads=1, density="C"
) -> dict:
    return {
        "study_id": study,
        "series_id": f"se-{study}",
        "image_id": image_id,
        "laterality": laterality,
        "view_position": view,
        "height": 3518,
        "width": 2800,
        "breast_birads": f"BI-RADS {birads}",
        "breast_density": f"DENSITY {density}",
        "split": split,
    }


def finding(img: dict, categories: str = "['No Finding']", birads: str = "", box=NO_BOX) -> dict:
    row = {name: img[name] for name in BREAST_COLUMNS}
    row |= {"finding_categories": categories, "finding_birads": birads}
    row |= dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return row


def write(root: Path, images: list[dict], findings: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(images, columns=BREAST_COLUMNS).to_csv(root / BREAST_CSV, index=False)
    pd.DataFrame(findings, columns=FINDING_COLUMNS).to_csv(root / FINDING_CSV, index=False)
    return root


BOX = (100.5, 200.0, 300.25, 400.0)
A = image("s1", "a", "L", "CC", birads=4)  # one Mass row and one Focal Asymmetry row
B = image("s1", "b", "L", "MLO", birads=4)  # one row with two categories
C = image("s1", "c", "R", "CC")  # No Finding
D = image("s2", "d", "R", "MLO", split="test", birads=5, density="B")  # two Mass rows + an unknown category


@pytest.fixture
def root(tmp_path: Path) -> Path:
    findings = [
        finding(A, "['Mass']", "BI-RADS 4", BOX),
        finding(A, "['Focal Asymmetry']", "BI-RADS 3", BOX),
        finding(B, "['Suspicious Calcification', 'Mass']", "BI-RADS 4", BOX),
        finding(C),
        finding(D, "['Mass']", "BI-RADS 5", BOX),
        finding(D, "['Mass']", "BI-RADS 4", BOX),
        finding(D, "['Weird New Sign']", "BI-RADS 3", BOX),
    ]
    return write(tmp_path / "vindr", [A, B, C, D], findings)


def test_image_table_has_one_parsed_row_per_image(root: Path) -> None:
    index = VindrIndex.load(root)
    images = index.images.set_index("image_id")
    assert list(images.index) == ["a", "b", "c", "d"]
    assert images.loc["a", "view"] == "CC" and images.loc["d", "laterality"] == "R"
    assert images["breast_birads"].tolist() == [4, 4, 1, 5]
    assert str(images["breast_birads"].dtype) == "Int8"
    assert images["breast_density"].tolist() == ["C", "C", "C", "B"]
    assert list(images["breast_density"].cat.categories) == ["A", "B", "C", "D"]
    assert images["height"].tolist() == [3518] * 4 and images.loc["a", "width"] == 2800
    assert images.loc["a", "path"] == str(root / "images" / "s1" / "a.dicom")
    assert images["n_findings"].tolist() == [2, 1, 0, 3]
    assert images["n_rows"].tolist() == [2, 1, 1, 3]
    assert images.loc["a", "series_id"] == "se-s1", "extra columns are kept"


def test_findings_table_has_one_row_per_csv_row(root: Path) -> None:
    findings = VindrIndex.load(root).findings
    assert findings["csv_row"].tolist() == list(range(7))
    assert findings["categories"].iloc[2] == ("Suspicious Calcification", "Mass")
    assert findings["finding_birads"].tolist()[:3] == [4, 3, 4]
    no_finding = findings.iloc[3]
    assert (
        not no_finding["has_box"] and pd.isna(no_finding["finding_birads"]) and np.isnan(no_finding["xmin"])
    )
    assert findings.loc[0, ["xmin", "ymin", "xmax", "ymax"]].tolist() == list(BOX)
    assert findings["has_box"].sum() == 6


def test_every_category_gets_a_label_column_unknown_ones_snake_cased(root: Path) -> None:
    index = VindrIndex.load(root)
    assert index.categories == ("mass", "calcification", "focal_asymmetry", "weird_new_sign")
    assert "no_finding" not in index.images.columns


def test_labels_per_image_are_any_of_the_rows(root: Path) -> None:
    labels = VindrIndex.load(root).labels().set_index("image_id")
    assert labels["mass"].to_dict() == {"a": 1, "b": 1, "c": 0, "d": 1}
    assert labels["calcification"].to_dict() == {"a": 0, "b": 1, "c": 0, "d": 0}
    assert labels["focal_asymmetry"].to_dict() == {"a": 1, "b": 0, "c": 0, "d": 0}
    assert labels["weird_new_sign"].to_dict() == {"a": 0, "b": 0, "c": 0, "d": 1}


def test_boxes_of_an_image_carry_their_kind(root: Path) -> None:
    index = VindrIndex.load(root)
    assert index.boxes("a")["kind"].tolist() == ["mass", "focal_asymmetry"]
    assert index.boxes("b")["kind"].tolist() == ["mass"]
    assert index.boxes("d")["kind"].tolist() == ["mass", "mass", "weird_new_sign"]
    assert index.boxes("c").empty
    assert index.boxes("a").iloc[0][["xmin", "ymin", "xmax", "ymax"]].tolist() == list(BOX)


def test_labels_per_row_count_multi_finding_images_more_than_once(root: Path) -> None:
    index = VindrIndex.load(root)
    rows = index.labels("row")
    assert rows["mass"].tolist() == [1, 0, 1, 0, 1, 1, 0]
    assert rows["focal_asymmetry"].tolist() == [0, 1, 0, 0, 0, 0, 0]
    assert rows["calcification"].tolist() == [0, 0, 1, 0, 0, 0, 0]
    test_rows = index.labels("row", split="test", categories=["Mass"])
    assert list(test_rows.columns) == [
        "csv_row",
        "study_id",
        "image_id",
        "laterality",
        "view",
        "split",
        "mass",
    ]
    assert test_rows["mass"].sum() == 2 and index.labels("image", split="test")["mass"].sum() == 1


def test_conflicts_flag_images_whose_rows_disagree(root: Path) -> None:
    index = VindrIndex.load(root)
    conflicts = index.conflicts().set_axis(index.images["image_id"])
    assert conflicts["mass"].to_dict() == {"a": True, "b": False, "c": False, "d": True}
    assert conflicts["calcification"].sum() == 0 and conflicts["any"].sum() == 2
    summary = index.summary()
    assert summary["conflicting_images"]["training"] == {
        "mass": 1,
        "calcification": 0,
        "mass_or_calcification": 1,
    }


def test_labels_reject_unknown_split_category_and_level(root: Path) -> None:
    index = VindrIndex.load(root)
    with pytest.raises(DataError, match="unknown split 'validation'"):
        index.labels(split="validation")
    with pytest.raises(DataError, match="unknown categories"):
        index.labels(categories=["Nodule"])
    with pytest.raises(DataError, match="level"):
        index.labels("study")  # type: ignore[arg-type]


def test_missing_images_are_reported_not_fatal(root: Path) -> None:
    (root / "images" / "s1").mkdir(parents=True)
    (root / "images" / "s1" / "a.dicom").write_bytes(b"")
    (root / "images" / "s1" / "c.dcm").write_bytes(b"")  # wrong suffix: does not count
    index = VindrIndex.load(root)
    assert index.images["exists"].tolist() == [True, False, False, False]
    assert index.missing == [
        str(root / "images" / name) for name in ("s1/b.dicom", "s1/c.dicom", "s2/d.dicom")
    ]
    missing = index.summary(max_listed=2)["missing_files"]
    assert missing == {"checked": True, "count": 3, "first": ["images/s1/b.dicom", "images/s1/c.dicom"]}
    assert VindrIndex.load(root, image_suffix=".dcm").images["exists"].tolist() == [False, False, True, False]


def test_file_check_can_be_skipped(root: Path) -> None:
    index = VindrIndex.load(root, check_files=False)
    assert index.images["exists"].isna().all() and index.missing == []
    assert index.summary()["missing_files"] == {"checked": False, "count": 0, "first": []}


def test_images_dir_is_configurable(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "dicoms" / "s2"
    elsewhere.mkdir(parents=True)
    (elsewhere / "d.dicom").write_bytes(b"")
    index = VindrIndex.load(root, images_dir=tmp_path / "dicoms")
    assert index.images["exists"].tolist() == [False, False, False, True]
    assert index.summary()["missing_files"]["first"][0] == str(tmp_path / "dicoms" / "s1" / "a.dicom")


def test_missing_columns_are_listed_with_the_file(root: Path) -> None:
    frame = pd.read_csv(root / FINDING_CSV, dtype=str).drop(columns=["finding_birads", "ymax"])
    frame.to_csv(root / FINDING_CSV, index=False)
    with pytest.raises(
        DataError, match=r"finding_annotations\.csv lacks the required column\(s\) finding_birads, ymax"
    ):
        VindrIndex.load(root)


def test_extra_columns_are_kept(root: Path) -> None:
    breast = pd.read_csv(root / BREAST_CSV, dtype=str).assign(age="054Y")
    breast.to_csv(root / BREAST_CSV, index=False)
    findings = pd.read_csv(root / FINDING_CSV, dtype=str).assign(reader="r1")
    findings.to_csv(root / FINDING_CSV, index=False)
    index = VindrIndex.load(root)
    assert (index.images["age"] == "054Y").all() and (index.findings["reader"] == "r1").all()


def test_malformed_category_string_names_the_row(tmp_path: Path) -> None:
    root = write(
        tmp_path, [A], [finding(A, "['Mass']", "BI-RADS 4", BOX), finding(A, "['Mass'", "BI-RADS 4", BOX)]
    )
    with pytest.raises(
        DataError, match=r"finding_annotations\.csv data row 1 \(line 3, image_id a\).*finding_categories"
    ):
        VindrIndex.load(root)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("breast_birads", "BI-RADS 7", "bad breast_birads 'BI-RADS 7'"),
        ("breast_density", "DENSITY E", "bad breast_density"),
        ("laterality", "X", "laterality 'X' is not one of L, R"),
        ("view_position", "ML", "view_position 'ML' is not one of CC, MLO"),
        ("height", "tall", "height 'tall' is not an integer"),
        ("split", "", "split is empty"),
    ],
)
def test_bad_breast_level_cells_name_the_row(tmp_path: Path, column: str, value: str, message: str) -> None:
    bad = C | {column: value}
    root = write(tmp_path, [A, bad], [finding(A), finding(bad)])
    with pytest.raises(DataError, match=rf"breast-level_annotations\.csv data row 1 .*{message}"):
        VindrIndex.load(root)


def test_bad_box_names_the_row(tmp_path: Path) -> None:
    root = write(tmp_path, [A], [finding(A, "['Mass']", "BI-RADS 4", ("1", "2", "three", "4"))])
    with pytest.raises(DataError, match=r"data row 0 .*xmax 'three' is not a number"):
        VindrIndex.load(root)


@pytest.mark.parametrize(
    ("column", "value"),
    [("laterality", "L"), ("split", "test"), ("study_id", "s9"), ("view_position", "MLO")],
)
def test_rows_disagreeing_across_csvs_are_refused(tmp_path: Path, column: str, value: str) -> None:
    root = write(tmp_path, [A, C], [finding(A), finding(C) | {column: value}])
    with pytest.raises(DataError, match=rf"data row 1 \(line 3, image_id c\): {column} '{value}' disagrees"):
        VindrIndex.load(root)


def test_finding_for_an_unlisted_image_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path, [A], [finding(A), finding(C)])
    with pytest.raises(DataError, match=r"image_id is not in breast-level_annotations\.csv"):
        VindrIndex.load(root)


def test_duplicate_image_ids_are_refused(tmp_path: Path) -> None:
    root = write(tmp_path, [A, A], [finding(A)])
    with pytest.raises(DataError, match="lists image_id a more than once"):
        VindrIndex.load(root)


def test_absent_empty_or_headless_csvs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        VindrIndex.load(tmp_path / "nowhere")
    root = write(tmp_path, [A], [finding(A)])
    (root / FINDING_CSV).unlink()
    with pytest.raises(
        DataError, match=r"finding annotations not found: .*finding_annotations\.csv.*Point ROOT"
    ):
        VindrIndex.load(root)
    (root / FINDING_CSV).write_text("")
    with pytest.raises(DataError, match="is empty"):
        VindrIndex.load(root)
    (root / FINDING_CSV).write_text(",".join(FINDING_COLUMNS) + "\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        VindrIndex.load(root)


def test_summary_is_json_ready(root: Path) -> None:
    import json

    summary = VindrIndex.load(root).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["images"] == {"training": 3, "test": 1, "total": 4}
    assert summary["positives"]["row"]["test"] == {"mass": 2, "calcification": 0}
    assert summary["positives"]["image"]["test"] == {"mass": 1, "calcification": 0}
    assert summary["categories_image_level"]["total"]["weird_new_sign"] == 1
    assert summary["breast_density"]["test"] == {"A": 0, "B": 1, "C": 0, "D": 0}
    assert summary["breast_birads"]["training"] == {"1": 1, "2": 0, "3": 0, "4": 2, "5": 0}


def mammo_clip_rows(folds: dict[str, int]) -> pd.DataFrame:
    """A Mammo-CLIP style CSV for the fixture: one row per finding, in the finding CSV's order."""
    rows = []
    for image_id, study, n in (("a", "s1", 2), ("b", "s1", 1), ("c", "s1", 1), ("d", "s2", 3)):
        for k in range(n):
            boxed = image_id != "c"
            rows.append(
                {
                    "patient_id": study,
                    "image_id": f"{image_id}.png",
                    "laterality": {"a": "L", "b": "L", "c": "R", "d": "R"}[image_id],
                    "split": "test" if image_id == "d" else "training",
                    "fold": folds[image_id],
                    "resized_xmin": 10.0 * k if boxed else "",
                    "resized_ymin": 20.0 if boxed else "",
                    "resized_xmax": 30.0 if boxed else "",
                    "resized_ymax": 40.0 + k if boxed else "",
                    "Mass": 0,
                    "Suspicious_Calcification": 0,
                }
            )
    return pd.DataFrame(rows)


def test_mammo_clip_csv_and_pngs_are_attached_when_found(root: Path) -> None:
    folder = root / "mammo_clip"
    (folder / "images_png" / "s2").mkdir(parents=True)
    (folder / "images_png" / "s2" / "d.png").write_bytes(b"")
    mammo_clip_rows({"a": 1, "b": 2, "c": 3, "d": 0}).to_csv(
        folder / "vindr_detection_v1_folds.csv", index=False
    )
    index = VindrIndex.load(root)
    images = index.images.set_index("image_id")
    assert images["fold"].tolist() == [1, 2, 3, 0]
    assert images.loc["d", "png_path"] == str(folder / "images_png" / "s2" / "d.png")
    assert images["png_exists"].tolist() == [False, False, False, True]
    findings = index.findings
    assert findings["resized_xmin"].tolist()[4:] == [0.0, 10.0, 20.0], "matched by order within the image"
    assert findings["resized_ymax"].tolist()[:2] == [40.0, 41.0] and np.isnan(
        findings["resized_xmin"].iloc[3]
    )
    assert index.mammo_clip == {
        "csv": str(folder / "vindr_detection_v1_folds.csv"),
        "rows": 7,
        "images_matched": 4,
        "rows_with_unknown_image": 0,
        "finding_rows_matched": 7,
    }
    assert index.summary()["mammo_clip"] == index.mammo_clip
    assert index.sources["png_dir"] == str(folder / "images_png")


def test_mammo_clip_inputs_are_optional_and_configurable(root: Path, tmp_path: Path) -> None:
    index = VindrIndex.load(root)
    assert (
        index.mammo_clip is None and "png_path" not in index.images and "resized_xmin" not in index.findings
    )
    elsewhere = tmp_path / "derived.csv"
    mammo_clip_rows({"a": 1, "b": 1, "c": 1, "d": 0}).iloc[:3].to_csv(elsewhere, index=False)
    (root / "pngs").mkdir()
    index = VindrIndex.load(root, mammo_clip_csv=elsewhere, png_dir="pngs")
    assert index.images["fold"].isna().tolist() == [False, False, True, True]
    assert index.images["png_path"].iloc[0] == str(root / "pngs" / "s1" / "a.png")
    assert index.mammo_clip["finding_rows_matched"] == 3
    assert VindrIndex.load(root, mammo_clip_csv=None, png_dir=None).mammo_clip is None
    with pytest.raises(DataError, match=r"Mammo-CLIP CSV .*nope\.csv is not a file"):
        VindrIndex.load(root, mammo_clip_csv="nope.csv")


def test_mammo_clip_rows_disagreeing_with_vindr_are_refused(root: Path) -> None:
    rows = mammo_clip_rows({"a": 1, "b": 1, "c": 1, "d": 0})
    rows.loc[4, "patient_id"] = "s7"
    rows.to_csv(root / "vindr_detection_v1_folds.csv", index=False)
    with pytest.raises(DataError, match=r"data row 4 .*patient_id 's7' disagrees with the VinDr CSVs"):
        VindrIndex.load(root)


def test_csv_saved_with_a_byte_order_mark_still_loads(root: Path) -> None:
    text = (root / BREAST_CSV).read_text()
    (root / BREAST_CSV).write_text(text, encoding="utf-8-sig")
    assert len(VindrIndex.load(root).images) == 4


def test_the_table_writer_keeps_the_release_columns_and_refuses_stray_keys(root: Path) -> None:
    from mammo_sae.data.csv_tables import table_text

    rows = pd.read_csv(root / BREAST_CSV, dtype=str, keep_default_na=False).to_dict("records")
    text = table_text(BREAST_COLUMNS, rows)
    assert text.splitlines()[0] == ",".join(BREAST_COLUMNS) and len(text.splitlines()) == len(rows) + 1
    with pytest.raises(AssertionError, match="row keys differ"):
        table_text(BREAST_COLUMNS, [{k: v for k, v in rows[0].items() if k != "split"}])
