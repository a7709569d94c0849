"""Lesion-centred crops for box-aware pre-training: where crops fall, how they are labelled, and a
crop-trained run that a whole-frame run continues from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mammo_sae import finetune as finetune_cli
from mammo_sae.data.frame_policy import ImageRecord
from mammo_sae.finetuning.crops import box_masks, crop_labels, pick_crop, token_grid_targets
from mammo_sae.finetuning.data import LabelledFrames

FRAME = (96, 64)
TASKS = ("mass", "calcification")


def breast_frame() -> np.ndarray:
    frame = np.zeros(FRAME, np.uint8)
    frame[:, :40] = 120  # the breast fills the left 40 columns
    return frame


def test_box_masks_and_token_targets_follow_the_boxes() -> None:
    masks = box_masks(FRAME, {"mass": np.array([[8.0, 16.0, 24.0, 32.0]])}, TASKS, None)
    assert masks.shape == (2, *FRAME) and masks.dtype == np.uint8
    assert masks[0, 16:32, 8:24].min() == 255 and masks[0].sum() == 255 * 16 * 16
    assert not masks[1].any()
    tokens = token_grid_targets(masks, (6, 4))  # 16-pixel cells
    expected = np.zeros((6, 4), np.float32)
    expected[1, 0:2] = 1  # cells (1, 0) and (1, 1) are each half covered; every other cell is empty
    np.testing.assert_array_equal(tokens[0], expected)
    assert not tokens[1].any()


def test_lesion_crops_hold_the_lesion_and_background_crops_stay_in_the_breast() -> None:
    frame = breast_frame()
    masks = box_masks(FRAME, {"calcification": np.array([[10.0, 60.0, 18.0, 68.0]])}, TASKS, None)
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0 = pick_crop(frame, masks, (32, 32), 1.0, rng)
        assert 0 <= y0 <= FRAME[0] - 32 and 0 <= x0 <= FRAME[1] - 32
        labels = crop_labels(masks, y0, x0, (32, 32))
        inside = masks[1, y0 : y0 + 32, x0 : x0 + 32].sum() / masks[1].sum()
        assert labels[1] == float(inside >= 0.5) and labels[0] == 0
        assert inside > 0  # centred within a quarter crop of a box pixel
    centres = [pick_crop(frame, masks, (16, 16), 0.0, rng) for _ in range(200)]
    # background crops are centred on breast pixels (the crop may reach past the breast's edge)
    assert all(x0 + 8 <= 40 for _, x0 in centres)
    assert len(set(centres)) > 50


def test_crops_without_any_lesion_are_negative_and_an_empty_frame_still_gives_a_crop() -> None:
    empty = np.zeros((2, *FRAME), np.uint8)
    rng = np.random.default_rng(1)
    y0, x0 = pick_crop(np.zeros(FRAME, np.uint8), empty, (32, 32), 1.0, rng)
    assert crop_labels(empty, y0, x0, (32, 32)).tolist() == [0.0, 0.0]


def test_crop_dataset_gives_several_reproducible_crops_per_image(tmp_path: Path, monkeypatch) -> None:
    from mammo_sae.finetuning import data

    frame = breast_frame()
    boxes = {"img": {"mass": np.array([[8.0, 16.0, 24.0, 32.0]]), "calcification": np.zeros((0, 4))}}
    monkeypatch.setattr(data, "frame_with_boxes", lambda record, size, wanted: (frame, wanted))
    labels = pd.DataFrame({"mass": [1], "calcification": [0]}, index=["img"])
    dataset = LabelledFrames(
        [ImageRecord("img", "unused.dcm")], labels, TASKS, FRAME, augment=True, seed=3, grid=(2, 2),
        boxes=boxes, crop=(32, 32), crops_per_image=5, lesion_crop_fraction=0.5,
    )  # fmt: skip
    assert len(dataset) == 5
    items = [dataset[i] for i in range(5)]
    assert all(x.shape == (3, 32, 32) and t.shape == (2, 2, 2) for x, _, t in items)
    again = dataset[2]
    assert all(torch.equal(a, b) for a, b in zip(items[2], again, strict=True))
    assert len({tuple(x.flatten()[:64].tolist()) for x, _, _ in items}) > 1  # the crops differ
    for _, y, t in items:  # a crop holding the mass has mass token targets; calcification has none
        if y[0]:
            assert t[0].any()
        assert not y[1] and not t[1].any()
    assert {float(y[0]) for _, y, _ in items} == {0.0, 1.0}


@pytest.fixture(scope="module")
def phantoms(finetune_phantoms: Path) -> Path:
    return finetune_phantoms


def test_a_crop_run_seeds_a_whole_frame_run(phantoms: Path, tmp_path: Path, capsys) -> None:
    common = [
        "--data", str(phantoms), "--backbone", "timm:resnet10t", "--frame-size", "128x80", "--epochs", "1",
        "--batch-size", "4", "--workers", "0", "--validation-fraction", "0.34", "--no-progress",
    ]  # fmt: skip
    crops = [*common, "--out", str(tmp_path / "crops"), "--crop", "64x64", "--crops-per-image", "2"]
    assert finetune_cli.main([*crops, "--box-weight", "1", "--box-head", "tied"]) == 0
    crop_summary = json.loads(capsys.readouterr().out)
    whole = [
        *common,
        "--out",
        str(tmp_path / "whole"),
        "--init",
        str(tmp_path / "crops" / "classifier.safetensors"),
    ]
    assert finetune_cli.main(whole) == 0
    whole_summary = json.loads(capsys.readouterr().out)
    assert crop_summary["train_images"] == 2 * whole_summary["train_images"]  # two crops per image
    # validation always scores whole frames
    assert crop_summary["validation_images"] == whole_summary["validation_images"]


def test_a_crop_larger_than_the_frame_is_refused(phantoms: Path, tmp_path: Path, capsys) -> None:
    argv = ["--data", str(phantoms), "--out", str(tmp_path), "--backbone", "timm:resnet10t"]
    assert finetune_cli.main([*argv, "--frame-size", "128x80", "--crop", "160x64", "--no-progress"]) == 2
    assert "--crop 160x64 must fit in --frame-size 128x80" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
