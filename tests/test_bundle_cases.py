"""Case-level views of a bundle: studies and filters, the hanging protocol, per-view probabilities and
boxes, and live inference on an upload that reproduces the bundle's own numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammo_sae.bundle import Bundle
from mammo_sae.bundle.cases import (
    filter_studies,
    hanging_views,
    sigmoid,
    study_table,
    view_boxes,
    view_probabilities,
)
from mammo_sae.bundle.live import LiveModels
from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.png import decode_png
from mammo_sae.data.vindr import VindrIndex


@pytest.fixture(scope="module")
def bundle(analysis_bundle_path: Path) -> Bundle:
    return Bundle.open(analysis_bundle_path)


def test_study_table_and_filters(bundle: Bundle) -> None:
    studies = study_table(bundle)
    assert set(studies["study_id"]) == set(bundle.images["study_id"])
    assert (studies["views"] == 4).all()
    positives = filter_studies(studies, positive=("calcification",))
    expected = bundle.images.groupby("study_id")["calcification"].max()
    assert set(positives["study_id"]) == set(expected[expected == 1].index)
    some = studies["study_id"].iloc[0]
    assert filter_studies(studies, search=some[:6].upper())["study_id"].tolist()[:1] == [some]
    assert filter_studies(studies, split="training").empty


def test_hanging_order_is_r_then_l_cc_above_mlo(bundle: Bundle) -> None:
    study = bundle.images["study_id"].iloc[0]
    views = hanging_views(bundle, study)
    assert [(v.laterality, v.view) for v in views] == [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    for v in views:
        row = bundle.images.iloc[v.position]
        assert (row["laterality"], row["view"], row["study_id"]) == (v.laterality, v.view, study)
    with pytest.raises(KeyError):
        hanging_views(bundle, "no-such-study")


def test_view_probabilities_and_boxes(bundle: Bundle) -> None:
    probabilities = view_probabilities(bundle, 0)
    for row in probabilities.itertuples():
        assert row.original == pytest.approx(
            float(sigmoid(bundle.images[f"logit_{row.head}_original"].iloc[0]))
        )
    positive = int(np.flatnonzero(bundle.images["calcification"].to_numpy() == 1)[0])
    boxes = view_boxes(bundle, positive, ("calcification",))
    assert len(boxes) >= 1 and (boxes["xmax"] > boxes["xmin"]).all()


def test_live_inference_on_an_upload_reproduces_the_bundle(bundle: Bundle, analysis_setting) -> None:
    live = LiveModels(bundle)
    index = VindrIndex.load(analysis_setting.data)
    image_id = bundle.images["image_id"].iloc[2]
    data = Path(index.images.set_index("image_id").loc[image_id, "path"]).read_bytes()
    case = live.run_dicom(read_mammogram(data, name="upload.dcm"))
    for task in bundle.tasks:
        assert case.logits_original[task] == pytest.approx(
            bundle.images[f"logit_{task}_original"].iloc[2], abs=1e-4
        )
        assert case.logits_sae[task] == pytest.approx(bundle.images[f"logit_{task}_sae"].iloc[2], abs=1e-4)
    assert np.allclose(case.zbar, bundle.mean_latents[2], atol=1e-5)
    table = live.contributions(case, bundle.tasks[0])
    assert table["contribution"].sum() + table.attrs["const"] == pytest.approx(
        case.logits_sae[bundle.tasks[0]], abs=1e-6
    )


def test_png_uploads_are_checked_before_decoding() -> None:
    import cv2

    _, encoded = cv2.imencode(".png", np.arange(64 * 48, dtype=np.uint16).reshape(64, 48))
    image = decode_png(encoded.tobytes())
    assert image.shape == (64, 48) and image.dtype == np.uint8
    deep = np.linspace(0, 4095, 64 * 48).astype(np.uint16).reshape(64, 48)  # 12 bits in a 16-bit PNG
    read = decode_png(cv2.imencode(".png", deep)[1].tobytes())
    assert read.min() == 0 and read.max() == 255 and len(np.unique(read)) == 256, "the full depth, scaled"
    assert np.array_equal(read, ((deep.astype(np.float32) / 4095) * 255).astype(np.uint8))
    grey_rgb = cv2.cvtColor(np.tile(np.arange(48, dtype=np.uint8) * 5, (64, 1)), cv2.COLOR_GRAY2BGR)
    assert decode_png(cv2.imencode(".png", grey_rgb)[1].tobytes()).shape == (64, 48), "grey saved as RGB"
    figure = grey_rgb.copy()
    figure[10:30, 5:25] = (0, 0, 255)  # a red legend on a figure
    with pytest.raises(DataError, match=r"colour image .*not a mammogram"):
        decode_png(cv2.imencode(".png", figure)[1].tobytes(), "figure.png")
    with pytest.raises(DataError, match="not a PNG"):
        decode_png(b"GIF89a....")
    with pytest.raises(DataError, match="larger than"):
        decode_png(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (100000).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match="corrupt"):
        decode_png(encoded.tobytes()[:40] + b"\x00" * 40)
