"""Several uploaded files become one study: the four views placed by their tags, text or pixels, a zip
unpacked in memory, and every file that cannot be a view named with its reason while the rest still show."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread

from mammo_sae.core.errors import DataError
from mammo_sae.data.phantom import PhantomConfig, generate_dataset
from mammo_sae.data.study_upload import MAX_FILES, SLOTS, study_from_uploads


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The four views of one phantom study as uploaded bytes, keyed "R CC" ...; L MLO untagged, R MLO text-only."""
    root = tmp_path_factory.mktemp("phantoms")
    generate_dataset(root, PhantomConfig(studies=2, seed=43, height=320, width=256), workers=1)
    table = pd.read_csv(root / "breast-level_annotations.csv", dtype=str)
    first = table[table["study_id"] == table["study_id"].iloc[0]]
    out = {}
    for row in first.itertuples():
        ds = dcmread(root / "images" / row.study_id / f"{row.image_id}.dicom")
        slot = f"{row.laterality} {row.view_position}"
        if slot in ("L MLO", "R MLO"):
            for keyword in ("ImageLaterality", "ViewPosition", "SeriesDescription", "ImageComments"):
                if keyword in ds:
                    delattr(ds, keyword)
            if slot == "R MLO":
                ds.SeriesDescription = "RIGHT_MLO"
        buffer = io.BytesIO()
        ds.save_as(buffer)
        out[slot] = buffer.getvalue()
    return out


def test_four_files_hang_in_their_slots_with_their_provenance(views: dict[str, bytes]) -> None:
    uploads = [(f"IM{n}", views[slot]) for n, slot in enumerate(("L MLO", "R CC", "R MLO", "L CC"))]
    study = study_from_uploads(uploads)
    assert list(study.views) == list(SLOTS) and study.refused == ()
    assert study.views["R CC"].name == "IM1" and study.views["L MLO"].name == "IM0"
    assert study.views["R CC"].orientation.laterality.source == "ImageLaterality"
    assert study.views["R MLO"].orientation.view.source == "SeriesDescription"
    assert study.views["L MLO"].inferred_from_image and not study.views["R MLO"].inferred_from_image
    assert study.views["L MLO"].orientation.laterality.source == "image"
    assert study.studies == 1
    assert all(view.dicom is not None and view.dicom.stored.ndim == 2 for view in study.views.values())


def test_a_zip_is_unpacked_and_bad_files_are_named_while_the_rest_show(views: dict[str, bytes]) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for slot in ("R CC", "L CC", "R MLO"):
            zipped.writestr(f"exam/{slot.replace(' ', '_')}.dcm", views[slot])
        zipped.writestr("__MACOSX/exam/._R_CC.dcm", b"resource fork")
        zipped.writestr("exam/.DS_Store", b"finder")
    figure = np.zeros((200, 160, 3), np.uint8)
    figure[:, :80] = (0, 0, 255)
    uploads = [
        ("exam.zip", archive.getvalue()),
        ("L_MLO.dcm", views["L MLO"]),
        ("again.dcm", views["R CC"]),
        ("notes.txt", b"reported by Dr X"),
        ("figure.png", cv2.imencode(".png", figure)[1].tobytes()),
        ("cut.dcm", views["L CC"][:300]),
    ]
    study = study_from_uploads(uploads)
    assert list(study.views) == list(SLOTS), "the four views still show"
    assert study.views["R CC"].name == "exam.zip/exam/R_CC.dcm"
    reasons = dict(study.refused)
    assert set(reasons) == {"again.dcm", "notes.txt", "figure.png", "cut.dcm"}
    assert reasons["again.dcm"] == "a second R CC view (the study shows the first, exam.zip/exam/R_CC.dcm)"
    assert "colour image" in reasons["figure.png"]
    assert "DICOM" in reasons["notes.txt"] and "Dr X" not in reasons["notes.txt"]
    assert reasons["cut.dcm"] and not reasons["cut.dcm"].startswith("cut.dcm")


def test_what_is_too_much_for_one_study_is_refused(views: dict[str, bytes]) -> None:
    with pytest.raises(DataError, match=f"at most {MAX_FILES}"):
        study_from_uploads([(f"IM{n}", views["R CC"]) for n in range(MAX_FILES + 1)])
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("zeros.dcm", b"\0" * (50 << 20))
    study = study_from_uploads([("bomb.zip", bomb.getvalue()), ("R_CC.dcm", views["R CC"])])
    assert list(study.views) == ["R CC"]
    assert "too much for one study" in dict(study.refused)["bomb.zip"]
    broken = study_from_uploads([("broken.zip", b"PK\x03\x04" + b"\x00" * 40)])
    assert broken.views == {} and "damaged or encrypted zip" in dict(broken.refused)["broken.zip"]


def test_a_png_is_placed_by_its_pixels(views: dict[str, bytes], tmp_path: Path) -> None:
    from mammo_sae.data.dicom import read_mammogram
    from mammo_sae.data.preprocess import to_uint8

    dicom = read_mammogram(views["L CC"])
    png = cv2.imencode(".png", to_uint8(dicom.stored, dicom.photometric))[1].tobytes()
    study = study_from_uploads([("frame.png", png)])
    assert list(study.views) == ["L CC"] and study.views["L CC"].png is not None
    assert study.views["L CC"].inferred_from_image and study.studies == 0
