"""The app's caches follow the data: a bundle rewritten in the same folder, a dataset regenerated in place
and an image file replaced are all seen on the next rerun (Streamlit leaves arguments that start with
``_`` out of a cache key, so a stamp so named would never invalidate anything)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from mammo_sae.bundle import Bundle
from mammo_sae.bundle.format import IMAGES, write_manifest
from mammo_sae.core.hashing import file_record
from mammo_sae.data.dicom import read_mammogram, write_mammogram
from mammo_sae.data.phantom import PhantomConfig, generate_dataset

APP = Path(__file__).resolve().parents[1] / "app"
HOME = str(APP / "Home.py")


def accessors():
    """The app's accessors module, imported as the app imports it."""
    sys.path.insert(0, str(APP))
    import accessors as module

    return module


@pytest.fixture()
def bundle_dir(analysis_bundle_path: Path, tmp_path: Path) -> Path:
    """A private copy of the analysis bundle and its inputs (tests here rewrite it)."""
    source = analysis_bundle_path.parent
    for name in ("bundle", "phantoms", "classifier.safetensors", "sae-relu"):
        src = source / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path / "bundle"


def rewrite_bundle(folder: Path, *, l0: float, logit_shift: float) -> None:
    """Rewrite the bundle in place as a new analysis would: another L0 in the summary and every original
    logit shifted (a valid bundle: its file records match the new table)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    images = pd.read_parquet(folder / IMAGES)
    for task in manifest["tasks"]:
        images[f"logit_{task}_original"] += logit_shift
    images.to_parquet(folder / IMAGES)
    manifest["files"][IMAGES] = file_record(folder / IMAGES)
    manifest["summary"]["sae"]["l0"] = l0
    write_manifest(folder, manifest)


def start(monkeypatch: pytest.MonkeyPatch, bundle: Path, page: str | None = None) -> AppTest:
    monkeypatch.setenv("MAMMO_SAE_BUNDLE", str(bundle))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    if page:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [e.value for e in app.exception]
    return app


def shown_l0(app: AppTest) -> str:
    return next(m.value for m in app.metric if m.label.startswith("L0"))


def mass_column(app: AppTest) -> list[str]:
    """The Findings panel's mass probabilities, one per hung view (R CC first): "0.42 (raw 0.37)"."""
    scores = next(d.value for d in app.dataframe if "view" in d.value and "mass" in d.value)
    return scores["mass"].tolist()


def test_a_bundle_rewritten_in_the_same_folder_shows_its_new_numbers(
    monkeypatch: pytest.MonkeyPatch, bundle_dir: Path
) -> None:
    app = start(monkeypatch, bundle_dir, "overview")
    before = float(shown_l0(app))
    rewrite_bundle(bundle_dir, l0=before + 7.0, logit_shift=0.0)
    app.run()
    assert not app.exception, app.exception
    assert float(shown_l0(app)) == pytest.approx(before + 7.0, abs=0.05), "the new manifest is read"

    app.switch_page("views/case_review.py").run()
    old_lines = mass_column(app)
    assert len(old_lines) == 4
    rewrite_bundle(bundle_dir, l0=before, logit_shift=3.0)
    app.run()
    assert not app.exception, app.exception
    new_lines = mass_column(app)
    study = next(s for s in app.selectbox if s.key == "study").value
    images = Bundle.open(bundle_dir).images
    right_cc = images[
        (images["study_id"] == study) & (images["laterality"] == "R") & (images["view"] == "CC")
    ]
    expected = 1 / (1 + np.exp(-float(right_cc["logit_mass_original"].iloc[0])))
    assert new_lines != old_lines and f"(raw {expected:.2f})" in new_lines[0], (old_lines, new_lines)


def test_a_dataset_regenerated_in_place_is_indexed_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "phantoms"
    generate_dataset(root, PhantomConfig(studies=3, seed=5, height=256, width=208), workers=1)
    monkeypatch.setenv("MAMMO_SAE_DATA", str(root))
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    app.switch_page("views/dataset.py").run()
    assert not app.exception, app.exception
    assert app.metric[0].value == "12"
    generate_dataset(root, PhantomConfig(studies=2, seed=6, height=256, width=208), workers=1, overwrite=True)
    app.run()
    assert not app.exception, app.exception
    assert app.metric[0].value == "8", "the regenerated tables are read, not the cached index"


def test_a_replaced_image_file_is_read_and_rendered_again(tmp_path: Path) -> None:
    root = tmp_path / "phantoms"
    generate_dataset(root, PhantomConfig(studies=1, seed=5, height=256, width=208), workers=1)
    path = next((root / "images").rglob("*.dicom"))
    app = accessors()
    first = app.mammogram(path)
    shown = app.rendered_view(str(path), "full range", False, (), (), 128)
    flat = np.full_like(first.stored, int(first.stored.max()) // 2)
    write_mammogram(path, flat, laterality="L", view="CC")
    assert np.array_equal(app.mammogram(path).stored, read_mammogram(path).stored)
    assert not np.array_equal(app.mammogram(path).stored, first.stored), "the new file is read"
    again = app.rendered_view(str(path), "full range", False, (), (), 128)
    assert not np.array_equal(again, shown), "the new pixels are rendered, not the cached view"
