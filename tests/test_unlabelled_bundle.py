"""An imported DICOM folder (no labels) analysed into a bundle: everything that needs no labels is there,
the concept ranking comes from a labelled score root, the pages that need labels say so, the orientation's
provenance reaches the app ("inferred from the image"), and no identifying value of the source files
reaches the import, the bundle or a served page."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import Setting, analyze_config
from pydicom import dcmread
from streamlit.testing.v1 import AppTest

from mammo_sae.bundle import Bundle
from mammo_sae.bundle.label_notes import (
    FROM_IMAGE,
    MISMATCH_NOTICE,
    bundle_mismatch_notice,
    orientation_tags,
    unlabelled_notice,
)
from mammo_sae.bundle.queries import case_intervention, intervention_scale
from mammo_sae.bundle.writing.config import AnalyzeError
from mammo_sae.data.folder_import import import_folder
from mammo_sae.data.phantom.pacs_export import IDENTIFYING, write_pacs_export

MARK = "QVZMARK"
HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGES = ("overview", "case_review", "concepts", "interventions", "shortcuts", "training", "dataset")
VENDOR = "ACME Imaging"  # a "real" export: the files are not the phantom generator's


def _as_real_vendor(folder: Path) -> set[str]:
    """Give every mammogram of the export another Manufacturer; return every UID the files hold."""
    uids = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Invalid value for VR UI")
            try:
                ds = dcmread(path)
            except Exception:
                continue
            uids |= {
                str(ds.get(k))
                for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                if ds.get(k)
            }
            if ds.get("Modality") == "MG" and "PixelData" in ds:
                ds.Manufacturer = VENDOR
                ds.save_as(path)
    return uids


@pytest.fixture(scope="module")
def imported(analysis_setting: Setting, tmp_path_factory: pytest.TempPathFactory):
    """The analysis phantoms exported as a PACS would (identifying tags filled with MARK), from a vendor
    that is not the generator, imported into a root."""
    folder = tmp_path_factory.mktemp("pacs")
    truth = write_pacs_export(analysis_setting.data, folder, mark=MARK)
    uids = _as_real_vendor(folder)
    report = import_folder(folder, tmp_path_factory.mktemp("imported") / "root", salt="unlabelled-test")
    return report.root, truth, uids


@pytest.fixture(scope="module")
def bundle_path(analysis_setting: Setting, imported, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mammo_sae.analyze import run as analyze

    root, _, _ = imported
    out = tmp_path_factory.mktemp("unlabelled") / "bundle"
    config = analyze_config(analysis_setting, out, score_data=str(analysis_setting.data))
    config = type(config)(**{**config.__dict__, "data": str(root)})
    analyze(config)
    return out


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> Bundle:
    return Bundle.open(bundle_path, verify=True)


def test_an_unlabelled_root_needs_a_labelled_score_root(
    analysis_setting: Setting, imported, tmp_path: Path
) -> None:
    from mammo_sae.analyze import run as analyze

    root, _, _ = imported
    config = analyze_config(analysis_setting, tmp_path / "b")
    no_scores = type(config)(**{**config.__dict__, "data": str(root)})
    with pytest.raises(AnalyzeError, match="--score-data"):
        analyze(no_scores)
    training = type(config)(
        **{
            **config.__dict__,
            "data": str(root),
            "score_data": str(analysis_setting.data),
            "split": "training",
        }
    )
    with pytest.raises(AnalyzeError, match="--split all"):
        analyze(training)
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_the_bundle_holds_everything_that_needs_no_labels(bundle: Bundle, imported) -> None:
    _, truth, _ = imported
    manifest = bundle.manifest
    assert manifest["labelled"] is False and not bundle.labelled
    assert manifest["dataset_kind"] == "imported DICOM folder" and manifest["splits"]["analysis"] == "all"
    assert manifest["synthetic"] is False and bundle.models_synthetic, (
        "phantom-trained models, real-vendor files"
    )
    assert len(bundle.images) == len(truth) == manifest["summary"]["images"]
    assert bundle.baselines.empty and bundle.curves.empty and bundle.rows.empty, "nothing needs labels here"
    assert bundle.boxes.empty and bundle.images["mass"].isna().all()
    # what needs no labels: codes, maps, evidence, location profiles, top patches, contributions, interventions
    assert bundle.has_evidence and bundle.evidence(0) is not None
    assert {"share_breast", "flags"} <= set(bundle.latents.columns)
    assert len(bundle.patches) > 0 and len(bundle.rankings) > 0, "the ranking comes from the score root"
    scale = intervention_scale(bundle, concept="mass", k=5, mode="suppress")
    result = case_intervention(bundle, 0, scale)
    assert np.isfinite(result["after"]).all() and len(result) == len(bundle.tasks)
    report = (bundle.path / "report.md").read_text()
    assert "no head has labels" in report


def test_where_each_laterality_and_view_came_from_reaches_the_bundle(bundle: Bundle, imported) -> None:
    root, truth, _ = imported
    table = pd.read_csv(root / "breast-level_annotations.csv", dtype=str, keep_default_na=False)
    variant = dict(
        zip(
            table["image_id"],
            truth.set_index("source_file").loc[table["source_file"], "variant"],
            strict=True,
        )
    )
    truth_of = truth.set_index("source_file").loc[table["source_file"]].set_index(table["image_id"])
    hung = bundle.images.set_index("image_id")[["laterality", "view"]]
    expected = truth_of.loc[hung.index, ["laterality", "view"]]
    assert (hung.to_numpy() == expected.to_numpy()).all(), "every view hangs in its true slot"
    orientation = bundle.orientation
    assert orientation is not None and len(orientation) == len(bundle.images)
    for row in orientation.itertuples():
        expected = {"untagged": "image", "text-only": "text"}.get(variant[row.image_id], "tag")
        assert row.laterality_from == row.view_from == expected, (variant[row.image_id], row)
    untagged = [i for i, v in variant.items() if v == "untagged"]
    tags = orientation_tags(bundle, {f"view {n}": image for n, image in enumerate(untagged)})
    assert tags and set(tags.values()) == {FROM_IMAGE}


def test_the_notices_say_what_is_missing_and_what_the_outputs_are_worth(
    bundle: Bundle, analysis_bundle_path: Path
) -> None:
    from mammo_sae.bundle.snapshot import BundleIdentity

    assert bundle_mismatch_notice(bundle) == MISMATCH_NOTICE
    assert BundleIdentity.from_manifest(bundle.manifest).mismatched, "the case snapshot says so too"
    assert not BundleIdentity.from_manifest(Bundle.open(analysis_bundle_path).manifest).mismatched
    assert "Without labels there is no AUROC" in unlabelled_notice(bundle, "AUROC")
    labelled = Bundle.open(analysis_bundle_path)
    assert unlabelled_notice(labelled, "AUROC") is None
    assert bundle_mismatch_notice(labelled) is None, "phantom models on phantoms: no mismatch"


def _page_text(app: AppTest) -> str:
    """Everything the page sends to the browser, as text (every element's message, components included)."""
    parts, stack = [], [app._tree]
    while stack:
        node = stack.pop()
        stack.extend(getattr(node, "children", {}).values())
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
    assert len(parts) > 5, "the page shows something"
    return "\n".join(parts)


def _identifying_values(uids: set[str]) -> list[str]:
    dates = [v for v in IDENTIFYING.values() if v.isdigit()]
    return [MARK, *dates, *uids]


def test_no_identifying_value_reaches_the_import_the_bundle_or_a_page(
    monkeypatch, bundle_path: Path, imported
) -> None:
    root, _, uids = imported
    values = _identifying_values(uids)
    assert len(values) > 10
    for folder in (root, bundle_path):
        for top, _, names in os.walk(folder):
            for name in names:
                path = Path(top) / name
                if path.is_symlink():  # a link to a source file (import without --copy): not written by us
                    continue
                data = path.read_bytes()
                leaked = [v for v in values if v.encode() in data]
                assert not leaked, (path, leaked)
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle_path))
    monkeypatch.setenv("MAMMO_SAE_DATA", str(root))
    app = AppTest.from_file(HOME, default_timeout=90)
    app.run()
    for page in PAGES:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [e.value for e in app.exception])
        text = _page_text(app)
        leaked = [v for v in values if v in text]
        assert not leaked, (page, leaked)
        if page == "case_review":  # the check sees what the browser gets: the hanging viewer's spec too
            assert '\\"slots\\"' in text or '"slots"' in text, "the viewer's spec is in the page"


def test_the_pages_that_need_labels_say_so(monkeypatch, bundle_path: Path, imported) -> None:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle_path))
    app = AppTest.from_file(HOME, default_timeout=90)
    app.run()
    shown = {}
    for page in ("overview", "interventions", "shortcuts", "case_review"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception and not app.error, (page, app.exception, [e.value for e in app.error])
        shown[page] = [e.value for kind in ("info", "warning", "caption", "markdown") for e in app.get(kind)]
    for page in ("overview", "interventions", "shortcuts"):
        assert any(t.startswith("Without labels there is no") for t in shown[page]), page
    assert any("no labels (an imported DICOM study)" in t for t in shown["case_review"])
    assert any(MISMATCH_NOTICE in t for t in shown["case_review"]), "beside the probabilities"
    assert any(MISMATCH_NOTICE in t for t in shown["interventions"])
    assert json.loads((bundle_path / "manifest.json").read_text())["labelled"] is False


def test_the_ranking_can_come_from_a_bundle_of_the_same_sae(
    analysis_setting: Setting, analysis_bundle_path: Path, imported, bundle: Bundle, tmp_path: Path
) -> None:
    """A score bundle's scores rank the latents exactly as scoring its labelled images again would."""
    import shutil

    from mammo_sae.analyze import run as analyze

    root, _, _ = imported
    config = analyze_config(
        analysis_setting, tmp_path / "from-bundle", score_bundle=str(analysis_bundle_path)
    )
    analyze(type(config)(**{**config.__dict__, "data": str(root)}))
    scored = Bundle.open(tmp_path / "from-bundle", verify=True)
    assert (
        scored.manifest["inputs"]["score_bundle"]["run_id"]
        == Bundle.open(analysis_bundle_path).manifest["run_id"]
    )
    pd.testing.assert_frame_equal(scored.rankings, bundle.rankings)
    pd.testing.assert_frame_equal(scored.scores, bundle.scores)
    assert "the bundle bundle" in unlabelled_notice(scored, "AUROC")

    other = tmp_path / "other-sae"
    shutil.copytree(analysis_bundle_path, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["inputs"]["sae"]["weights_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    again = analyze_config(analysis_setting, tmp_path / "refused", score_bundle=str(other))
    with pytest.raises(AnalyzeError, match="another SAE"):
        analyze(type(again)(**{**again.__dict__, "data": str(root)}))
    both = analyze_config(analysis_setting, tmp_path / "both", score_bundle=str(other), score_data=str(root))
    with pytest.raises(AnalyzeError, match="not both"):
        analyze(both)


def _legend_names_boxes(monkeypatch, bundle_path: Path) -> bool:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle_path))
    app = AppTest.from_file(HOME, default_timeout=90)
    app.run()
    app.switch_page("views/case_review.py").run()
    text = _page_text(app).replace("\\", "")
    assert '"legend"' in text, "the viewer's spec is on the page"
    return '"kind": "box"' in text


def test_the_viewer_names_no_ground_truth_on_an_unlabelled_bundle(
    monkeypatch, bundle_path: Path, analysis_bundle_path: Path
) -> None:
    assert _legend_names_boxes(monkeypatch, analysis_bundle_path), "a labelled bundle names its box colours"
    assert not _legend_names_boxes(monkeypatch, bundle_path)


def test_the_case_snapshot_says_which_views_were_read_from_the_image(bundle: Bundle) -> None:
    from mammo_sae.bundle.snapshot import build_case
    from mammo_sae.bundle.viewer import ViewOptions

    inferred = bundle.orientation[bundle.orientation["view_from"] == "image"]
    study = bundle.images.set_index("image_id").loc[inferred["image_id"].iloc[0], "study_id"]
    case = build_case(bundle, study, options=ViewOptions())
    notes = {slot.position: slot.note for slot in case.slots if slot.position is not None}
    for position in bundle.images.loc[bundle.images["study_id"] == study, "position"]:
        from_image = position in set(inferred["position"])
        assert notes[position].startswith(FROM_IMAGE) == from_image, (position, notes[position])
