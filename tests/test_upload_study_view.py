"""An uploaded study through the demo bundle's live models, as the Upload page shows it: the four views hung
in their slots with where their orientation came from, a refused file named, a missing or refused view drawn
empty, the evidence map adding up to the SAE logit, what fires at a token, an intervention, and the
notice beside the probabilities when phantom-trained models score an image that is not a phantom."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from dicom_fixtures import demo_study_export
from pydicom import dcmread

from mammo_sae.bundle import open_bundle
from mammo_sae.bundle import uploaded_study as us
from mammo_sae.bundle.cases import sigmoid
from mammo_sae.bundle.hanging import Overlay
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.study_upload import SLOTS, study_from_uploads
from mammo_sae.demo import demo_bundle_dir

VARIANTS = ("tagged", "text-only", "untagged", "misplaced")
WORDS = {
    "tagged": us.FROM_TAGS,
    "misplaced": us.FROM_TAGS,
    "text-only": us.FROM_TEXT,
    "untagged": us.FROM_IMAGE,
}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, bytes]], pd.DataFrame]:
    """One phantom study at the demo's image size as a PACS export's four files, and what each really is."""
    folder = tmp_path_factory.mktemp("upload-study")
    truth = demo_study_export(folder, seed=5, variants=VARIANTS)
    files = [(Path(f).name, (folder / "export" / f).read_bytes()) for f in truth["source_file"]]
    truth["name"] = [name for name, _ in files]
    return files, truth


@pytest.fixture(scope="module")
def bundle():
    return open_bundle(demo_bundle_dir())


@pytest.fixture(scope="module")
def live(bundle):
    from mammo_sae.bundle.live import LiveModels

    return LiveModels(bundle)


def renamed_manufacturer(data: bytes, manufacturer: str) -> bytes:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        ds = dcmread(io.BytesIO(data))
        ds.Manufacturer = manufacturer
        out = io.BytesIO()
        ds.save_as(out)
    return out.getvalue()


def test_four_views_hang_in_their_slots_with_their_provenance_and_a_bad_file_is_named(
    export, bundle, live
) -> None:
    files, truth = export
    study = study_from_uploads([*files, ("report.txt", b"reported by Dr X")])
    assert [name for name, _ in study.refused] == ["report.txt"]
    assert "not a DICOM file" in study.refused[0][1]
    cases, failed = us.run_study(live, study)
    assert failed == () and list(cases) == list(SLOTS)
    spec = us.uploaded_spec(
        bundle, study, cases, us.study_pixels(study, 2048), overlay=Overlay("evidence", head="mass")
    )
    assert [s["name"] for s in spec["slots"]] == list(SLOTS) and all(s["present"] for s in spec["slots"])
    for row in truth.itertuples():
        slot = f"{row.laterality} {row.view}"
        assert study.views[slot].name == row.name, f"{row.variant} view hung in the wrong slot"
        shown = spec["slots"][SLOTS.index(slot)]
        assert shown["caption"].startswith(WORDS[row.variant]), (row.variant, shown["caption"])
        assert shown["heatmap"] is not None and shown["grid"]["rows"] == bundle.grid[0]
    assert any(s["caption"].startswith(us.FROM_IMAGE) for s in spec["slots"])
    assert spec["legend"][-1]["label"] == "evidence for mass"


def test_a_missing_view_and_one_the_models_refuse_are_drawn_empty(export, bundle, live) -> None:
    files, _ = export
    study = study_from_uploads(files[:3])
    missing = next(s for s in SLOTS if s not in study.views)
    refused = next(iter(study.views))

    def run(view):
        if view.name == study.views[refused].name:
            raise MammoSaeError("no breast for the extraction to keep")
        return live.run_dicom(view.dicom)

    cases, failed = us.run_study(live, study, run)
    assert failed == ((study.views[refused].name, "no breast for the extraction to keep"),)
    spec = us.uploaded_spec(bundle, study, cases, us.study_pixels(study, 512))
    present = {s["name"]: s["present"] for s in spec["slots"]}
    assert present[missing] is False and present[refused] is False and sum(present.values()) == 2
    table = us.view_probabilities(bundle, cases)
    assert table["where"].tolist()[:2] == [s for s in SLOTS if s in cases]
    assert table["where"].iloc[-1] == "exam"
    exam = table.iloc[-1]
    assert exam["mass"] == pytest.approx(table["mass"].iloc[:2].max())


def test_the_maps_and_tables_add_up(export, bundle, live) -> None:
    files, _ = export
    study = study_from_uploads(files)
    cases, _ = us.run_study(live, study)
    case = cases["R CC"]
    heads = bundle.heads
    for h, head in enumerate(bundle.tasks):
        evidence = us.live_evidence(bundle, case, head)
        assert evidence.shape == tuple(bundle.grid)
        assert evidence.sum() + heads.const_h[h] == pytest.approx(case.logits_sae[head], abs=5e-3)
    token = int(np.argmax(np.diff(case.codes.indptr)))  # the token with the most active latents
    fires = us.fires_at(bundle, case, token, top=5)
    assert len(fires) and fires["activation"].is_monotonic_decreasing
    assert set(bundle.tasks) <= set(fires.columns)
    with pytest.raises(MammoSaeError, match="outside"):
        us.fires_at(bundle, case, case.codes.tokens_per_image)
    nothing = us.intervened_probabilities(bundle, cases, np.zeros(bundle.d_sae))
    assert len(nothing) == 4 * len(bundle.tasks)
    for h, head in enumerate(heads.tasks):
        assert np.allclose(nothing[nothing["head"] == head]["after"], sigmoid(heads.const_h[h]))
    kept = us.intervened_probabilities(bundle, cases, np.ones(bundle.d_sae))
    assert np.allclose(kept["change"], 0)


@pytest.mark.parametrize(
    ("models_synthetic", "input_is_phantom", "shown"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
)
def test_the_mismatch_notice_shows_only_for_phantom_models_on_a_real_image(
    models_synthetic: bool, input_is_phantom: bool, shown: bool
) -> None:
    notice = us.mismatch_notice(models_synthetic, input_is_phantom)
    assert (notice is not None) is shown
    if shown:
        assert "trained on synthetic images" in notice and "mean nothing" in notice


def test_a_phantom_is_known_by_its_manufacturer_and_a_png_never_is(export) -> None:
    files, _ = export
    phantoms = study_from_uploads(files)
    assert all(us.is_phantom_image(v) for v in phantoms.views.values()) and us.study_is_phantom(phantoms)
    real = [(files[0][0], renamed_manufacturer(files[0][1], "ACME Imaging")), *files[1:]]
    mixed = study_from_uploads(real)
    assert not us.study_is_phantom(mixed), "one view that is not a phantom makes the study not one"
    picture = np.zeros((400, 300), np.uint8)
    picture[40:360, :180] = 160  # a breast against the left edge
    png = study_from_uploads([("frame.png", cv2.imencode(".png", picture)[1].tobytes())])
    assert png.views and not us.study_is_phantom(png)
    view = next(iter(png.views.values()))
    image = us.view_image(view)
    assert image.photometric == "MONOCHROME2" and image.stored.shape == (400, 300)
    assert us.orientation_words(view) == us.FROM_IMAGE
    assert not us.study_is_phantom(study_from_uploads([]))


def test_an_uploaded_dicom_gets_the_robust_conditioning_and_a_png_the_frame_path() -> None:
    """Uploads come from anywhere (labels, borders, FOR PROCESSING): their DICOMs are conditioned first."""
    from mammo_sae.data.conditioning import ROBUST
    from mammo_sae.data.study_upload import UploadedView

    calls = []

    class Live:
        def run_dicom(self, image, conditioning="mammo-clip"):
            calls.append(("dicom", conditioning))

        def run_png(self, png):
            calls.append(("png", None))

    orientation = None
    us.run_uploaded_view(Live(), UploadedView("a.dcm", orientation, dicom=object()))
    us.run_uploaded_view(Live(), UploadedView("b.png", orientation, png=object()))
    assert calls == [("dicom", ROBUST), ("png", None)]
