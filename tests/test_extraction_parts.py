"""Extraction building blocks: token sampling, augmentation, image records and loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mammo_sae.core.errors import DataError
from mammo_sae.data.frame_policy import FramePolicy, ImageRecord, model_frame
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.augment import augment_frame
from mammo_sae.extraction.images import FrameDataset, collate_frames
from mammo_sae.extraction.tokens import sample_tokens, tokens_per_image


def test_token_sampling_is_a_deterministic_subset_per_image() -> None:
    grid = (48, 29)
    first = sample_tokens(grid, 0.25, seed=0, image_id="a")
    assert len(first) == tokens_per_image(grid, 0.25) == 348
    assert np.array_equal(first, sample_tokens(grid, 0.25, seed=0, image_id="a"))
    assert np.all(np.diff(first) > 0) and first.max() < 48 * 29
    assert not np.array_equal(first, sample_tokens(grid, 0.25, seed=0, image_id="b"))
    assert not np.array_equal(first, sample_tokens(grid, 0.25, seed=1, image_id="a"))
    assert np.array_equal(sample_tokens(grid, 1.0, seed=3, image_id="a"), np.arange(48 * 29))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_token_fraction_must_be_in_range(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        tokens_per_image((4, 4), fraction)


def test_augmentation_is_deterministic_and_changes_the_frame() -> None:
    frame = np.random.default_rng(0).integers(0, 255, size=(64, 40), dtype=np.uint8)
    out = augment_frame(frame, seed=0, image_id="x")
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(out, augment_frame(frame, seed=0, image_id="x"))
    assert not np.array_equal(out, frame)
    assert not np.array_equal(out, augment_frame(frame, seed=1, image_id="x"))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mammo_sae.data.phantom import PhantomConfig, generate_dataset

    root = tmp_path_factory.mktemp("extract-parts") / "phantoms"
    generate_dataset(root, PhantomConfig(studies=2, seed=3, height=256, width=208), workers=1)
    return root


def select_records(index: VindrIndex, split: str, limit: int | None = None):
    return FramePolicy.resolve("auto", index).select(index, split, limit)


def test_records_follow_the_split_and_report_missing_files(phantoms: Path) -> None:
    index = VindrIndex.load(phantoms)
    records, skipped = select_records(index, "all", limit=5)
    assert [r.image_id for r in records] == index.images["image_id"].tolist()[:5] and not skipped
    assert all(r.frames == "dicom" and r.png_path is None for r in records)  # phantoms have no PNGs
    moved = Path(records[0].dicom_path)
    moved.rename(moved.with_suffix(".gone"))
    try:
        records, skipped = select_records(VindrIndex.load(phantoms), "all")
    finally:
        moved.with_suffix(".gone").rename(moved)
    assert len(records) == 7 and list(skipped.values()) == ["image file missing on disk"]
    with pytest.raises(DataError, match="split"):
        select_records(index, "validation")


def test_dataset_returns_model_inputs_and_reports_bad_files(phantoms: Path, tmp_path: Path) -> None:
    index = VindrIndex.load(phantoms)
    records, _ = select_records(index, "all", limit=2)
    bad = tmp_path / "bad.dicom"
    bad.write_bytes(b"not a dicom at all")
    dataset = FrameDataset([*records, ImageRecord("bad", str(bad))], (128, 80))
    ids, pixels, errors = collate_frames([dataset[i] for i in range(len(dataset))])
    assert ids == [r.image_id for r in records] and set(errors) == {"bad"}
    assert isinstance(pixels, torch.Tensor) and pixels.shape == (2, 3, 128, 80)
    assert np.array_equal(model_frame(records[0], (128, 80)).shape, (128, 80))


def test_png_frames_are_resized_to_the_frame_size(tmp_path: Path) -> None:
    import cv2

    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), np.full((152, 91), 77, dtype=np.uint8))
    frame = model_frame(ImageRecord("p", None, str(png), "png"), (76, 45))
    assert frame.shape == (76, 45) and int(frame.mean()) == 77


def test_tokens_beyond_the_storage_range_are_refused_with_the_fix() -> None:
    from mammo_sae.extraction.config import ExtractError
    from mammo_sae.extraction.run import _check_range

    _check_range(np.array([[1.0, -60000.0]]), np.float16, "ok")
    with pytest.raises(ExtractError, match="--dtype fp32"):
        _check_range(np.array([[1.0, 7e4]]), np.float16, "big")
    with pytest.raises(ExtractError, match="NaN"):
        _check_range(np.array([[np.nan]]), np.float32, "nan")
    _check_range(np.array([[7e4]]), np.float32, "fine in fp32")
