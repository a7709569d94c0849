"""Every dashboard page through Streamlit's AppTest, on a small analysis bundle: pages render, a control
changes a probability by exactly what the library computes, naming a latent persists, a bad upload shows
its error and the session goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mammo_sae.bundle import Bundle
from mammo_sae.bundle.queries import case_intervention, intervention_scale
from mammo_sae.data.vindr import VindrIndex

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
PAGES = ("case_review", "concepts", "interventions", "upload", "training", "overview")


@pytest.fixture(scope="module")
def bundle_copy(analysis_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The analysis bundle, with its inputs, copied so pages may write notes into it."""
    root = tmp_path_factory.mktemp("app-bundle")
    source = analysis_bundle_path.parent
    for name in ("bundle", "phantoms", "classifier.safetensors", "sae-relu"):
        src = source / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root / "bundle"


def start(monkeypatch: pytest.MonkeyPatch, bundle: Path, page: str | None = None) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    if page:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_the_research_banner(monkeypatch, bundle_copy: Path, page: str) -> None:
    app = start(monkeypatch, bundle_copy, page)
    assert any("Research use only" in w.value for w in app.warning)
    assert not app.error, [e.value for e in app.error]


def test_case_review_shows_four_views_and_their_probabilities(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "case_review")
    assert len(app.get("imgs")) + len(app.get("image")) >= 4
    bundle = Bundle.open(bundle_copy)
    study = next(s for s in app.selectbox if s.label.startswith("Study")).value
    shown = [m.value for m in app.markdown if m.value.startswith("**mass**")]
    assert len(shown) == 4
    rows = bundle.images[bundle.images["study_id"] == study].set_index(["laterality", "view"])
    right_cc = rows.loc[("R", "CC")]
    probability = 1 / (1 + np.exp(-right_cc["logit_mass_original"]))
    assert f"**mass** {probability:.2f}" in shown[0], "R CC hangs first"


def test_an_intervention_moves_the_probability_by_what_the_library_computes(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "interventions")
    bundle = Bundle.open(bundle_copy)
    concept_box = next(s for s in app.selectbox if s.label == "Top-k of concept")
    concept_box.set_value("calcification").run()
    assert not app.exception
    study = next(s for s in app.selectbox if s.label == "Case").value
    view = next(r for r in app.radio if r.label == "View").value
    laterality, view_name = view.split()
    row = bundle.images[
        (bundle.images["study_id"] == study)
        & (bundle.images["laterality"] == laterality)
        & (bundle.images["view"] == view_name)
    ]
    scale = intervention_scale(bundle, concept="calcification", k=10, mode="suppress")
    expected = case_intervention(bundle, int(row["position"].iloc[0]), scale).set_index("head")
    shown = {m.label.removesuffix(" probability"): m for m in app.metric if m.label.endswith("probability")}
    for head, metric in shown.items():
        assert float(metric.value) == pytest.approx(expected.loc[head, "after"], abs=5e-4)
        assert float(metric.delta) == pytest.approx(expected.loc[head, "change"], abs=5e-4)
    assert any(abs(expected["change"]) > 1e-4), "the fixture's heads react to suppressing latents"


def test_naming_a_latent_persists_in_the_bundle(monkeypatch, bundle_copy: Path) -> None:
    app = start(monkeypatch, bundle_copy, "concepts")
    latent = int(next(n for n in app.number_input if n.label == "Latent").value)
    form_inputs = [t for t in app.text_input if t.label == "Name"]
    form_inputs[0].set_value("<b>specks</b> & things")
    next(s for s in app.selectbox if s.label == "Category").set_value("calcification")
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception
    saved = json.loads((bundle_copy / "latent_notes.json").read_text())
    assert saved[str(latent)]["name"] == "<b>specks</b> & things"
    assert any("Saved" in s.value for s in app.success)


def test_a_bad_upload_shows_its_error_and_a_good_one_its_probabilities(
    monkeypatch, bundle_copy: Path
) -> None:
    app = start(monkeypatch, bundle_copy, "upload")
    app.file_uploader[0].set_value(("scan.dcm", b"this is not a dicom file" * 10, "application/dicom")).run()
    assert not app.exception
    assert any("not a DICOM file" in e.value for e in app.error)
    root = Bundle.open(bundle_copy).data_root
    path = VindrIndex.load(root).images["path"].iloc[0]
    app.file_uploader[0].set_value(("scan.dcm", Path(path).read_bytes(), "application/dicom")).run()
    assert not app.exception and not app.error
    labels = [m.label for m in app.metric]
    assert "mass probability" in labels and "calcification probability" in labels
    assert not np.any([str(path) in m.value for m in app.markdown])


def test_a_missing_bundle_says_how_to_build_it(monkeypatch, tmp_path: Path) -> None:
    app = start(monkeypatch, tmp_path / "nowhere", "overview")
    assert any("does not exist" in e.value for e in app.error)
    assert any("mammo_sae.analyze" in c.value for c in app.code)


def test_untrusted_text_is_escaped_for_markdown() -> None:
    import sys

    sys.path.insert(0, str(Path(HOME).parent))
    import accessors

    escaped = accessors.md_text("<script>x</script> **b** [l](javascript:1) :red[c] $m$\nline")
    for raw in ("<script>", "**b**", "[l](", ":red[", "$m$", "\n"):
        assert raw not in escaped
    assert escaped.replace("\\", "") == "<script>x</script> **b** [l](javascript:1) :red[c] $m$ line"
