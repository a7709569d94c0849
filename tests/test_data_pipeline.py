"""The data layer end to end on phantoms: generate -> index -> read -> display and model input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammo_sae.data import (
    VindrIndex,
    display_image,
    model_input,
    needs_display_flip,
    preprocess_mammogram,
    read_mammogram,
)
from mammo_sae.data.phantom import PhantomConfig, generate_dataset


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "phantoms"
    config = PhantomConfig(studies=6, seed=11, height=384, width=304, mass_rate=0.5, calcification_rate=0.5)
    generate_dataset(root, config)
    return root


def test_the_index_reads_phantoms_like_a_release(phantom_root: Path) -> None:
    index = VindrIndex.load(phantom_root)
    assert len(index.images) == 24 and not index.missing
    summary = index.summary()
    assert summary["images"]["total"] == 24 and set(summary["splits"]) == {"training", "test"}
    assert index.images["mass"].sum() > 0 and index.images["calcification"].sum() > 0


def test_every_image_decodes_to_both_outputs(phantom_root: Path) -> None:
    index = VindrIndex.load(phantom_root)
    photometrics = set()
    for row in index.images.itertuples():
        image = read_mammogram(row.path)
        photometrics.add(image.photometric)
        assert image.stored.shape == (row.height, row.width)
        shown = display_image(image)
        assert shown.dtype == np.uint8 and shown.shape == image.stored.shape
        assert not needs_display_flip(shown, row.laterality), "phantoms are stored in hanging orientation"
        frame = preprocess_mammogram(image)
        assert frame.png.shape == (1520, 912)
        x = model_input(frame.png)
        assert x.shape == (3, 1520, 912) and np.isfinite(x).all()
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_lesion_boxes_land_on_brighter_tissue_in_the_model_frame(phantom_root: Path) -> None:
    index = VindrIndex.load(phantom_root)
    contrasts = []
    for row in index.images[index.images["mass"] == 1].itertuples():
        frame = preprocess_mammogram(read_mammogram(row.path))
        boxes = index.boxes(row.image_id)
        for box in frame.transform.boxes_to_frame(
            boxes[boxes["kind"] == "mass"][["xmin", "ymin", "xmax", "ymax"]]
        ):
            x0, y0, x1, y1 = np.round(box).astype(int)
            assert -2 <= x0 < x1 <= 914 and -2 <= y0 < y1 <= 1522
            pad = max(x1 - x0, y1 - y0) // 2
            inner = frame.png[max(y0, 0) : y1, max(x0, 0) : x1].astype(float).mean()
            ring = frame.png[max(y0 - pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad].astype(float)
            contrasts.append(inner - ring.mean())
    assert contrasts and np.median(contrasts) > 0
