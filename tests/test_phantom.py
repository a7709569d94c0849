"""The phantom generator: VinDr layout, consistent labels, honest ground truth, determinism, CLI safety."""

from __future__ import annotations

import ast
import csv
import json
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mammo_sae.data.dicom import display_image, list_presets, read_mammogram
from mammo_sae.data.dicom.write import intensity_to_stored, write_mammogram
from mammo_sae.data.phantom import (
    BREAST_COLUMNS,
    FINDING_COLUMNS,
    METADATA_COLUMNS,
    TRUTH_COLUMNS,
    OutputNotEmptyError,
    PhantomConfig,
    PhantomConfigError,
    generate_dataset,
    is_phantom_dataset,
    load_manifest,
    plan_dataset,
    render_image,
    verify_dataset,
)
from mammo_sae.data.phantom.encoding import build_encoding
from mammo_sae.data.preprocess import preprocess
from mammo_sae.phantom import main

SIZE = dict(height=256, width=208)
# High prevalence so a handful of studies holds masses, clusters, benign structures and both labels.
CONFIG = PhantomConfig(
    studies=5,
    seed=11,
    **SIZE,
    mass_rate=0.5,
    calcification_rate=0.5,
    benign_rate=0.5,
    confounder_rate=1.0,
    confounder_finding="calcification",
)
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def read_dicom(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        return pydicom.dcmread(path)


def intensity01(path: Path) -> np.ndarray:
    """Decoded pixels as display intensity in [0, 1], bright = dense, whatever the photometric."""
    image = read_mammogram(path)
    stored = image.stored.astype(np.float64) / ((1 << image.bits_stored) - 1)
    return 1.0 - stored if image.photometric == "MONOCHROME1" else stored


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "ds"
    generate_dataset(root, CONFIG, workers=1)
    return root


@pytest.fixture(scope="module")
def tables(dataset: Path) -> dict[str, list[dict[str, str]]]:
    return {
        name: read_csv(dataset / f"{name}.csv")[1]
        for name in ("breast-level_annotations", "finding_annotations", "metadata", "phantom_truth")
    }


def image_path(root: Path, row: dict[str, str]) -> Path:
    return root / "images" / row["study_id"] / f"{row['image_id']}.dicom"


# ------------------------------------------------------------------ layout and values


def test_layout_matches_vindr_release(dataset: Path) -> None:
    for name, columns in (
        ("breast-level_annotations.csv", BREAST_COLUMNS),
        ("finding_annotations.csv", FINDING_COLUMNS),
        ("metadata.csv", METADATA_COLUMNS),
        ("phantom_truth.csv", TRUTH_COLUMNS),
    ):
        header, _ = read_csv(dataset / name)
        assert tuple(header) == columns, name
    assert list(BREAST_COLUMNS) == [
        "study_id", "series_id", "image_id", "laterality", "view_position",
        "height", "width", "breast_birads", "breast_density", "split",
    ]  # fmt: skip
    assert list(FINDING_COLUMNS) == [*BREAST_COLUMNS[:-1], "finding_categories", "finding_birads",
                                     "xmin", "ymin", "xmax", "ymax", "split"]  # fmt: skip
    dicoms = sorted(p.relative_to(dataset) for p in (dataset / "images").rglob("*"))
    files = [p for p in dicoms if (dataset / p).is_file()]
    assert len(files) == 4 * CONFIG.studies
    assert all(len(p.parts) == 3 and p.suffix == ".dicom" for p in files)
    assert (dataset / "phantom.json").is_file() and not (dataset / ".phantom-in-progress").exists()


def test_breast_level_values_and_ids(dataset: Path, tables) -> None:
    rows = tables["breast-level_annotations"]
    assert len(rows) == 4 * CONFIG.studies
    studies: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        for key in ("study_id", "series_id", "image_id"):
            assert HEX32.match(row[key]), row[key]
        assert row["laterality"] in ("L", "R") and row["view_position"] in ("CC", "MLO")
        assert row["split"] in ("training", "test")
        assert row["breast_birads"] in {f"BI-RADS {k}" for k in range(1, 6)}
        assert row["breast_density"] in {f"DENSITY {d}" for d in "ABCD"}
        ds = read_dicom(image_path(dataset, row))
        assert (int(row["height"]), int(row["width"])) == (ds.Rows, ds.Columns) == (256, 208)
        assert ds.ImageLaterality == row["laterality"] and ds.ViewPosition == row["view_position"]
        studies.setdefault(row["study_id"], []).append(row)
    assert len({r["image_id"] for r in rows}) == len(rows)
    for views in studies.values():
        assert sorted((r["laterality"], r["view_position"]) for r in views) == [
            ("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")
        ]  # fmt: skip
        assert len({r["breast_density"] for r in views}) == 1  # patient-level density
        assert len({r["split"] for r in views}) == 1  # split by study
    assert {r["split"] for r in rows} == {"training", "test"}


def test_finding_rows_follow_vindr_conventions(tables) -> None:
    breast = {r["image_id"]: r for r in tables["breast-level_annotations"]}
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in tables["finding_annotations"]:
        by_image.setdefault(row["image_id"], []).append(row)
        for key in BREAST_COLUMNS:
            assert row[key] == breast[row["image_id"]][key]
    assert set(by_image) == set(breast)
    for image_id, rows in by_image.items():
        categories = [ast.literal_eval(r["finding_categories"]) for r in rows]
        if categories == [["No Finding"]]:
            row = rows[0]
            assert (
                row["finding_birads"] == "" and row["xmin"] == row["ymin"] == row["xmax"] == row["ymax"] == ""
            )
            assert breast[image_id]["breast_birads"] in ("BI-RADS 1", "BI-RADS 2")
            continue
        birads = []
        for row, cats in zip(rows, categories, strict=True):
            assert cats and set(cats) <= {"Mass", "Suspicious Calcification"}
            assert row["finding_birads"] in ("BI-RADS 3", "BI-RADS 4", "BI-RADS 5")
            birads.append(int(row["finding_birads"][-1]))
            x0, y0, x1, y1 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 0 <= x0 < x1 <= int(row["width"]) and 0 <= y0 < y1 <= int(row["height"])
        assert breast[image_id]["breast_birads"] == f"BI-RADS {max(birads)}"


def test_labels_agree_between_csv_truth_and_manifest(dataset: Path, tables) -> None:
    manifest = load_manifest(dataset)
    csv_labels = {r["image_id"]: set() for r in tables["breast-level_annotations"]}
    for row in tables["finding_annotations"]:
        cats = ast.literal_eval(row["finding_categories"])
        csv_labels[row["image_id"]] |= {{"Mass": "mass", "Suspicious Calcification": "calcification"}[c] for c in cats if c != "No Finding"}  # fmt: skip
    truth_labels = {image_id: set() for image_id in csv_labels}
    for row in tables["phantom_truth"]:
        if row["kind"] in ("mass", "calcification"):
            truth_labels[row["image_id"]].add(row["kind"])
    manifest_labels = {e["image_id"]: {k for k, v in e["labels"].items() if v} for e in manifest["images"]}
    assert csv_labels == truth_labels == manifest_labels
    counts = manifest["counts"]
    assert counts["mass_positive_images"] == sum("mass" in v for v in csv_labels.values()) > 0
    assert (
        counts["calcification_positive_images"] == sum("calcification" in v for v in csv_labels.values()) > 0
    )
    assert any(r["kind"] == "benign" for r in tables["phantom_truth"])


def test_findings_appear_on_both_views_of_their_breast(tables) -> None:
    views: dict[str, set[str]] = {}
    for row in tables["phantom_truth"]:
        if row["kind"] in ("mass", "calcification", "benign"):
            assert (
                row["lesion_id"].startswith(row["study_id"]) and f"-{row['laterality']}-" in row["lesion_id"]
            )
            views.setdefault(row["lesion_id"], set()).add(row["view_position"])
    assert views and all(v == {"CC", "MLO"} for v in views.values())


def test_synthetic_labelling_in_every_file(dataset: Path, tables) -> None:
    for row in tables["breast-level_annotations"]:
        ds = read_dicom(image_path(dataset, row))
        assert str(ds.PatientName) == "SYNTHETIC^PHANTOM"
        assert ds.Manufacturer == "mammo-sae phantom"
        assert ds.ImageComments == "SYNTHETIC PHANTOM - NOT PATIENT DATA"
        assert ds.PresentationIntentType == "FOR PRESENTATION" and ds.Modality == "MG"
        assert ds.SOPInstanceUID == row["image_id"] and ds.StudyInstanceUID == row["study_id"]
        assert 2 <= len(ds.WindowCenterWidthExplanation) <= 3
    manifest = load_manifest(dataset)
    assert manifest["synthetic"] is True and "NOT PATIENT DATA" in manifest["notice"]
    assert manifest["parameters"] == CONFIG.to_dict()


# ------------------------------------------------------------------ ground truth is real structure


def _ring_mean(img: np.ndarray, box: tuple[int, int, int, int], pad: int) -> float:
    x0, y0, x1, y1 = box
    outer = img[max(y0 - pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad].astype(np.float64)
    inner_sum = img[y0:y1, x0:x1].sum()
    return (outer.sum() - inner_sum) / max(outer.size - (y1 - y0) * (x1 - x0), 1)


def test_boxes_surround_bright_structure(dataset: Path, tables) -> None:
    images = {r["image_id"]: intensity01(image_path(dataset, r)) for r in tables["breast-level_annotations"]}
    checked = {"mass": 0, "calcification": 0, "marker": 0, "benign": 0}
    for row in tables["phantom_truth"]:
        img = images[row["image_id"]]
        box = tuple(round(float(row[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        inside = img[y0:y1, x0:x1]
        if row["kind"] == "mass":
            assert inside.mean() > _ring_mean(img, box, 4) + 0.02, row
        elif row["kind"] == "calcification":
            assert int(row["n_specks"]) >= 3
            assert inside.max() > _ring_mean(img, box, 4) + 0.1, row  # bright specks inside the box
        elif row["kind"] == "benign":
            assert inside.max() > _ring_mean(img, box, 4) + 0.1, row
        else:  # burned-in text: near white
            assert inside.max() > 0.8, row
        checked[row["kind"]] += 1
    assert all(checked.values()), checked


def test_density_d_has_more_dense_tissue_than_a() -> None:
    plans = plan_dataset(replace(CONFIG, studies=2, mass_rate=0, calcification_rate=0, benign_rate=0))
    for plan in plans[:4]:
        plan = replace(plan, marker=False)
        a = render_image(replace(plan, density="A"), (256, 208)).intensity
        d = render_image(replace(plan, density="D"), (256, 208)).intensity
        breast = a > 0.1
        assert (d[breast] > 0.6).mean() > (a[breast] > 0.6).mean() + 0.2
        assert d[breast].mean() > a[breast].mean() + 0.05


def test_orientation_chest_wall_and_pectoral() -> None:
    for plan in plan_dataset(replace(CONFIG, studies=1, mass_rate=0, calcification_rate=0))[:4]:
        img = render_image(replace(plan, marker=False), (256, 208)).intensity
        mid = img[96:160]
        left, right = mid[:, :8].mean(), mid[:, -8:].mean()
        if plan.laterality == "L":
            assert left > 0.2 > right, "left breast: chest wall at the left edge"
        else:
            assert right > 0.2 > left, "right breast: chest wall at the right edge"
        if plan.view == "MLO":  # pectoral muscle: bright in the upper chest-wall corner
            corner = img[:20, :12] if plan.laterality == "L" else img[:20, -12:]
            assert corner.mean() > np.median(img[img > 0.1])


def test_markers_and_findings_survive_the_mammo_clip_crop(dataset: Path, tables) -> None:
    """The burned-in marker sits beside the breast, inside the box Mammo-CLIP's extraction keeps."""
    boxes: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
    for row in tables["phantom_truth"]:
        box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.setdefault(row["image_id"], []).append((row["kind"], box))
    n_markers = 0
    for row in tables["breast-level_annotations"]:
        image = read_mammogram(image_path(dataset, row))
        frame = preprocess(image.stored, image.photometric).transform
        for kind, (x0, y0, x1, y1) in boxes.get(row["image_id"], []):
            if kind == "benign":
                continue
            kept_x = frame.x.kept + frame.x.offset
            kept_y = frame.y.kept + frame.y.offset
            assert kept_x[0] <= x0 and x1 <= kept_x[-1] + 1, (kind, row["image_id"])
            assert kept_y[0] <= y0 and y1 <= kept_y[-1] + 1, (kind, row["image_id"])
            n_markers += kind == "marker"
    assert n_markers > 0


# ------------------------------------------------------------------ encodings


def test_monochrome1_is_inverted_with_the_same_appearance(dataset: Path, tables, tmp_path: Path) -> None:
    plans = {p.image_id: p for p in plan_dataset(CONFIG)}
    meta = [r for r in tables["metadata"] if r["photometric_interpretation"] == "MONOCHROME1"]
    assert meta, "the generator guarantees at least one MONOCHROME1 file"
    for row in meta:
        image = read_mammogram(image_path(dataset, row))
        plan = plans[row["image_id"]]
        rendered = render_image(plan, (256, 208)).intensity  # rendering is a pure function of the plan
        twin_plan = replace(plan, encoding=replace(plan.encoding, photometric="MONOCHROME2"))
        twin_encoding = build_encoding(twin_plan.encoding, rendered)
        twin_stored = intensity_to_stored(rendered, twin_encoding)
        max_stored = (1 << image.bits_stored) - 1
        np.testing.assert_array_equal(image.stored, max_stored - twin_stored)  # decodes to inverted values
        twin_path = tmp_path / f"{row['image_id']}.dicom"
        write_mammogram(
            twin_path, twin_stored, laterality=plan.laterality, view=plan.view, encoding=twin_encoding
        )
        twin = read_mammogram(twin_path)
        assert list_presets(image) == list_presets(twin)
        for preset in [*list_presets(image), "FULL RANGE"]:  # same appearance under every preset
            shown, twin_shown = display_image(image, preset), display_image(twin, preset)
            assert np.abs(shown.astype(int) - twin_shown).max() <= 1  # at most a rounding tie apart


def test_encodings_vary_and_jpeg2000_is_compressed(dataset: Path, tables) -> None:
    meta = tables["metadata"]
    assert {r["bits_stored"] for r in meta} <= {"12", "16"}
    assert {r["presentation_intent"] for r in meta} == {"FOR PRESENTATION"}
    j2k = [r for r in meta if r["transfer_syntax"] == "jpeg2000-lossless"]
    assert j2k, "the generator guarantees at least one JPEG 2000 file"
    for row in j2k:
        path = image_path(dataset, row)
        ds = read_dicom(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
        assert path.stat().st_size < 0.8 * ds.Rows * ds.Columns * 2
        assert ds.pixel_array.shape == (256, 208)
    for row in meta:
        assert row["voi_lut_function"] in ("", "SIGMOID")
        assert len(row["window_center"].split("\\")) == len(row["window_explanation"].split("\\")) in (2, 3)


# ------------------------------------------------------------------ determinism and checksums


def test_manifest_checksums_match_the_files(dataset: Path) -> None:
    assert verify_dataset(dataset) == []


def test_same_seed_same_bytes_any_worker_count(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    summary = generate_dataset(again, CONFIG, workers=2)
    first, second = load_manifest(dataset), load_manifest(again)
    assert summary["pixel_checksum"] == first["pixel_checksum"]["value"] == second["pixel_checksum"]["value"]
    assert first["files"] == second["files"]
    assert (dataset / "phantom.json").read_bytes() == (again / "phantom.json").read_bytes()


def test_workers_do_not_rerun_the_callers_script(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Streamlit the page is ``__main__``: spawned workers must not import and run it again."""
    import sys
    import types

    ran = tmp_path / "the page ran again"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(ran)!r}, 'w').close()\nimport a_module_only_the_app_has\n")
    script_main = types.ModuleType("__main__")
    script_main.__file__ = str(page)  # as Streamlit's script runner installs a page: a file, no spec
    monkeypatch.setitem(sys.modules, "__main__", script_main)
    summary = generate_dataset(tmp_path / "pool", replace(CONFIG, studies=1), workers=2)
    assert not ran.exists(), "a worker re-ran the page"
    assert sys.modules["__main__"] is script_main, "and the caller's main module is put back"
    assert summary["images"] == 4


def test_different_seed_different_pixels(dataset: Path, tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path / "other", replace(CONFIG, seed=12, studies=1), workers=1)
    assert summary["pixel_checksum"] != load_manifest(dataset)["pixel_checksum"]["value"]


def test_study_plans_do_not_depend_on_dataset_size() -> None:
    small, large = plan_dataset(replace(CONFIG, studies=3)), plan_dataset(replace(CONFIG, studies=6))
    for a, b in zip(small, large[:12], strict=True):
        assert (a.image_id, a.objects, a.density, a.marker) == (b.image_id, b.objects, b.density, b.marker)


# ------------------------------------------------------------------ confounder


def test_confounder_rate_one_marks_exactly_the_positives(dataset: Path, tables) -> None:
    markers = {r["image_id"] for r in tables["phantom_truth"] if r["kind"] == "marker"}
    positive = {r["image_id"] for r in tables["phantom_truth"] if r["kind"] == "calcification"}
    assert markers == positive and positive
    for row in tables["metadata"]:
        assert row["burned_in_annotation"] == ("YES" if row["image_id"] in markers else "NO")
    for entry in load_manifest(dataset)["images"]:
        assert entry["marker"] == entry["labels"]["calcification"] == (entry["marker_box"] is not None)


@pytest.mark.parametrize("rate", [0.0, 0.6])
def test_confounder_rate_sets_marker_probabilities(rate: float) -> None:
    plans = plan_dataset(replace(CONFIG, studies=600, confounder_rate=rate, confounder_finding="mass"))
    pos = np.array([p.marker for p in plans if p.has("mass")])
    neg = np.array([p.marker for p in plans if not p.has("mass")])
    assert len(pos) > 300 and len(neg) > 300
    assert abs(pos.mean() - (0.5 + rate / 2)) < 0.07
    assert abs(neg.mean() - (0.5 - rate / 2)) < 0.07


# ------------------------------------------------------------------ CLI and output safety


def test_cli_help_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--confounder-rate" in capsys.readouterr().out
    out = tmp_path / "cli"
    code = main(["--out", str(out), "--studies", "1", "--seed", "3", "--size", "160x128", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and summary["size"] == "160x128" and is_phantom_dataset(out)
    assert load_manifest(out)["parameters"]["confounder_rate"] == 0.0  # CLI default


@pytest.mark.parametrize(
    "args",
    [
        ["--studies", "0"],
        ["--size", "10x10"],
        ["--size", "big"],
        ["--size", "1024x2048"],
        ["--confounder-rate", "1.5"],
        ["--mass-rate", "-0.1"],
        ["--confounder-finding", "distortion"],
        ["--seed", "-1"],
        ["--test-fraction", "1.5"],
        ["--workers", "-2"],
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "bad"
    assert main(["--out", str(out), "--no-progress", *args]) == 2
    assert not out.exists() or not any(out.iterdir())


def test_config_errors_say_what_to_do() -> None:
    with pytest.raises(PhantomConfigError, match=r"\[0, 1\]"):
        PhantomConfig(confounder_rate=2.0).validate()
    with pytest.raises(PhantomConfigError, match=r"e\.g\."):
        PhantomConfig(height=50).validate()


def test_refuses_foreign_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert main(["--out", str(out), "--studies", "1", "--size", "160x128", "--no-progress"]) == 2
    with pytest.raises(OutputNotEmptyError, match="--overwrite"):
        generate_dataset(out, replace(CONFIG, studies=1, height=160, width=128))
    config = ["--out", str(out), "--studies", "1", "--size", "160x128", "--no-progress", "--overwrite"]
    assert main(config) == 0
    assert (out / "notes.txt").read_text() == "precious"  # written into, nothing else deleted


def test_regenerating_a_phantom_folder_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "regen"
    generate_dataset(out, replace(CONFIG, studies=2, height=160, width=128), workers=1)
    generate_dataset(out, replace(CONFIG, studies=1, height=160, width=128, seed=5), workers=1)
    assert len(list((out / "images").rglob("*.dicom"))) == 4  # no stale images from the first run
    assert verify_dataset(out) == []


def test_test_fraction_one_makes_a_held_out_set_of_test_studies() -> None:
    plans = plan_dataset(PhantomConfig(studies=3, seed=4, test_fraction=1.0))
    assert {plan.split for plan in plans} == {"test"}
    mixed = plan_dataset(PhantomConfig(studies=3, seed=4, test_fraction=0.9))
    assert {plan.split for plan in mixed} == {"test", "training"}, "below 1, one study stays in training"


def test_rerunning_the_same_settings_reuses_a_complete_dataset(tmp_path: Path) -> None:
    config = PhantomConfig(studies=1, seed=8, height=256, width=208)
    first = generate_dataset(tmp_path / "p", config, workers=1)
    stamp = (tmp_path / "p" / "phantom.json").stat().st_mtime_ns
    again = generate_dataset(tmp_path / "p", config, workers=1)
    assert again["reused"] and again["pixel_checksum"] == first["pixel_checksum"]
    assert (tmp_path / "p" / "phantom.json").stat().st_mtime_ns == stamp, "nothing was rewritten"
    other = generate_dataset(
        tmp_path / "p", PhantomConfig(studies=1, seed=9, height=256, width=208), workers=1
    )
    assert "reused" not in other and other["pixel_checksum"] != first["pixel_checksum"]
