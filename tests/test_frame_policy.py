"""One frame policy for every command (issue 17, defect 3): on a root with Mammo-CLIP PNGs beside its DICOMs,
extraction, fine-tuning, analysis and live inference read the same pixels, a PNG frame maps back to its
DICOM when the DICOM reproduces it, and an image with a PNG but no DICOM is handled the same way by all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from frame_fixtures import ClipRoot, build_clip_root

from mammo_sae import extract
from mammo_sae.analysis.frames import AnalysisFrames, analysis_records, resolve_frames
from mammo_sae.core.errors import DataError
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.frame_policy import (
    FRAMES,
    PNG_SIZE,
    FramePolicy,
    ImageRecord,
    fit,
    frame_from_dicom,
    frame_policy_record,
    mapped_frame,
    model_frame,
)
from mammo_sae.data.frames import transform_from_json, transform_to_json
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.images import FrameDataset
from mammo_sae.finetuning.data import finding_boxes, frame_with_boxes
from mammo_sae.store import open_store

SMALL = (128, 80)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipRoot:
    return build_clip_root(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def index(clip: ClipRoot) -> VindrIndex:
    return VindrIndex.load(clip.root)


def records_by_id(policy: FramePolicy, index: VindrIndex) -> dict[str, ImageRecord]:
    records, _ = policy.select(index, "all")
    return {r.image_id: r for r in records}


def test_auto_is_resolved_once_per_root_and_recorded(clip: ClipRoot, index: VindrIndex) -> None:
    policy = FramePolicy.resolve("auto", index, SMALL)
    assert (policy.source, policy.requested, policy.frame_size) == ("png", "auto", SMALL)
    assert policy.to_json() | {"mean": 0, "std": 0} == {
        "source": "png", "requested": "auto", "recipe": "mammo-clip", "frame_size": [128, 80],
        "mean": 0, "std": 0, "png_size": [1520, 912],
    }  # fmt: skip
    without = VindrIndex.load(clip.root, png_dir=None)
    assert FramePolicy.resolve("auto", without, SMALL).source == "dicom"
    with pytest.raises(DataError, match="--frames dicom"):
        FramePolicy.resolve("png", without, SMALL)
    with pytest.raises(DataError, match="--frames must be one of"):
        FramePolicy.resolve("jpeg", index, SMALL)


def test_each_policy_selects_the_images_it_can_frame(clip: ClipRoot, index: VindrIndex) -> None:
    png = records_by_id(FramePolicy.resolve("png", index, SMALL), index)
    assert len(png) == len(index.images)  # every image has a PNG or a DICOM
    for image_id in clip.png_only:
        assert png[image_id].dicom_path is None and png[image_id].png_path is not None
    assert png[clip.dicom_only].png_path is None and png[clip.dicom_only].frames == "png"
    dicom_records, skipped = FramePolicy.resolve("dicom", index, SMALL).select(index, "all")
    assert set(skipped) == set(clip.png_only) and set(skipped.values()) == {"image file missing on disk"}
    assert all(r.png_path is None and r.frames == "dicom" for r in dicom_records)


def test_png_frames_are_the_dicom_preprocessing_bit_for_bit_at_the_default_frame(
    clip: ClipRoot, index: VindrIndex
) -> None:
    png = records_by_id(FramePolicy.resolve("png", index), index)
    dicom = records_by_id(FramePolicy.resolve("dicom", index), index)
    for image_id in clip.both:
        mapped = mapped_frame(png[image_id], PNG_SIZE)
        assert mapped.pixels.shape == (1520, 912) and mapped.check == "png=dicom"
        assert np.array_equal(mapped.pixels, model_frame(dicom[image_id], PNG_SIZE))
        reference = clip.transforms[image_id]
        assert mapped.transform.space == "dicom"
        assert np.array_equal(mapped.transform.x.kept, reference.x.kept)
        assert np.array_equal(mapped.transform.y.kept, reference.y.kept)
    altered = mapped_frame(png[clip.altered], PNG_SIZE)
    assert altered.check == "png!=dicom" and altered.transform.space == "png"
    for image_id in clip.png_only:
        only = mapped_frame(png[image_id], PNG_SIZE)
        assert only.check == "png-only" and np.array_equal(only.pixels, clip.pngs[image_id])


@pytest.mark.parametrize("requested", FRAMES)
def test_extraction_and_analysis_see_identical_frames(
    clip: ClipRoot, index: VindrIndex, requested: str
) -> None:
    policy = FramePolicy.resolve(requested, index, SMALL)
    records, _ = policy.select(index, "all")
    extraction = FrameDataset(records, SMALL)
    analysed, _ = analysis_records(policy, index, "all", None)
    analysis = AnalysisFrames(analysed, SMALL)
    assert [r.image_id for r in analysed] == [r.image_id for r in records]
    for i in range(len(records)):
        image_id, pixels, error = extraction[i]
        position, analysis_pixels, transform, analysis_error, _tissue = analysis[i]
        assert error is None and analysis_error is None and position == i
        assert torch.equal(pixels, analysis_pixels), f"{requested}: image {image_id} differs"
        assert transform_from_json(transform).frame_size == SMALL


def test_a_missing_png_is_made_the_way_its_png_would_be(clip: ClipRoot, index: VindrIndex) -> None:
    record = records_by_id(FramePolicy.resolve("png", index, SMALL), index)[clip.dicom_only]
    assert np.array_equal(model_frame(record, SMALL), fit(clip.pngs[clip.dicom_only], SMALL))
    dicom = records_by_id(FramePolicy.resolve("dicom", index, SMALL), index)[clip.dicom_only]
    image = read_mammogram(dicom.dicom_path)
    assert np.array_equal(model_frame(dicom, SMALL), frame_from_dicom(image, SMALL).pixels)
    # live inference of an uploaded DICOM follows the bundle's source the same way
    assert np.array_equal(frame_from_dicom(image, SMALL, "png").pixels, model_frame(record, SMALL))


def test_png_only_images_get_the_mammo_clip_boxes_in_finetuning(clip: ClipRoot, index: VindrIndex) -> None:
    png = records_by_id(FramePolicy.resolve("png", index, SMALL), index)
    boxes = finding_boxes(index, ("mass", "calcification"))
    for image_id in clip.png_only:
        assert image_id in boxes
        frame, placed = frame_with_boxes(png[image_id], SMALL, boxes[image_id])
        assert np.array_equal(frame, model_frame(png[image_id], SMALL))
        reference = clip.transforms[image_id].resized(SMALL)
        for task, both in boxes[image_id].items():
            assert np.allclose(placed[task], reference.boxes_to_frame(both[:, :4]), atol=1e-6)
        assert sum(len(b) for b in placed.values()) > 0


def test_the_manifest_record_counts_each_check_and_warns_for_png_maps(
    clip: ClipRoot, index: VindrIndex
) -> None:
    policy = FramePolicy.resolve("auto", index, SMALL)
    analysed, _ = analysis_records(policy, index, "all", None)
    transforms = [AnalysisFrames(analysed, SMALL)[i][2] for i in range(len(analysed))]
    record = frame_policy_record(policy, transforms)
    assert record["source"] == "png" and record["images"] == {
        "dicom": 1, "png=dicom": len(clip.both), "png-only": 2, "png!=dicom": 1,
    }  # fmt: skip
    assert len(record["warnings"]) == 2 and "Mammo-CLIP CSV" in record["warnings"][0]
    json.dumps(record, allow_nan=False)


def test_analysis_warns_when_the_sae_saw_other_frames(clip: ClipRoot, index: VindrIndex) -> None:
    store = {"store_identity": {"preprocessing": {"source": "png", "frame_size": [128, 80]}}}
    policy, warnings = resolve_frames("dicom", index, SMALL, store)
    assert policy.source == "dicom" and len(warnings) == 1 and "--frames png" in warnings[0]
    assert resolve_frames("auto", index, SMALL, store)[1] == []
    old = {"store_identity": {"preprocessing": {"recipe": "mammo-clip", "frame_size": [128, 80]}}}
    assert resolve_frames("dicom", index, SMALL, old)[1] == []  # made before policies: nothing to compare


def test_transform_json_records_its_space_and_reads_old_bundles() -> None:
    from mammo_sae.data.frame_policy import png_transform

    text = transform_to_json(png_transform((1520, 912), SMALL), check="png-only")
    back = transform_from_json(text)
    assert back.space == "png" and json.loads(text)["check"] == "png-only"
    old = '{"shape":[256,208],"x":[5,80,3,190],"y":[5,128,0,246]}'
    assert transform_from_json(old).space == "dicom" and "space" not in transform_to_json(
        transform_from_json(old)
    )


def extract_store(clip: ClipRoot, out: Path, frames: str, capsys: pytest.CaptureFixture[str]) -> dict:
    args = ["--data", str(clip.root), "--out", str(out), "--frame-size", "128x80", "--workers", "0"]
    args += ["--backbone", "timm:resnet18", "--split", "test", "--frames", frames, "--no-progress"]
    assert extract.main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_a_store_is_named_by_its_frame_policy_not_the_package_version(
    clip: ClipRoot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = extract_store(clip, tmp_path, "png", capsys)
    auto = extract_store(clip, tmp_path, "auto", capsys)
    dicom = extract_store(clip, tmp_path, "dicom", capsys)
    assert auto["store"] == png["store"] and auto["shards_this_run"] == 0  # auto resolved to png: same store
    assert dicom["store"] != png["store"]
    identity = open_store(png["store"]).identity
    assert identity["preprocessing"]["source"] == "png" and identity["preprocessing"]["png_images"] == 4
    assert "package_version" not in identity and identity["features_version"] == 1
    assert clip.png_only[1] in open_store(png["store"]).image_ids  # the PNG-only test image is extracted
    assert dicom["skipped"] == {clip.png_only[1]: "image file missing on disk"}  # and consistently not here


@pytest.mark.slow
def test_extract_train_analyze_and_live_agree_on_a_root_with_pngs(
    clip: ClipRoot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole pipeline on the untidy root: the SAE is trained on PNG frames and analysed on PNG frames,
    PNG-only images are in both the store and the bundle, and live inference reproduces the bundle."""
    from mammo_sae import analyze, train
    from mammo_sae.bundle import open_bundle
    from mammo_sae.bundle.live import LiveModels
    from mammo_sae.models import Classifier, create_backbone, save_classifier

    torch.manual_seed(0)
    classifier = Classifier.create(create_backbone("timm:resnet18"), {"mass": 1, "calcification": 1})
    save_classifier(classifier, tmp_path / "clf.safetensors")
    common = ["--data", str(clip.root), "--workers", "0", "--no-progress"]
    extract_args = ["--classifier", str(tmp_path / "clf.safetensors"), "--tokens-per-image", "1.0"]
    extract_args += ["--frame-size", "256x160"]  # analysis reads the frame size from the SAE
    assert extract.main([*common, *extract_args, "--out", str(tmp_path / "stores")]) == 0
    store = json.loads(capsys.readouterr().out)["store"]
    assert clip.png_only[0] in open_store(store).image_ids
    train_args = ["--store", store, "--out", str(tmp_path / "sae"), "--expansion", "2", "--batch-size", "64"]
    train_args += ["--max-steps", "30", "--no-progress", "--validation-fraction", "0.1"]
    assert train.main(train_args) == 0
    capsys.readouterr()
    analyze_args = [
        *common,
        "--classifier",
        str(tmp_path / "clf.safetensors"),
        "--sae",
        str(tmp_path / "sae"),
    ]
    assert analyze.main([*analyze_args, "--out", str(tmp_path / "bundle")]) == 0
    bundle = open_bundle(tmp_path / "bundle")
    frames = bundle.manifest["frames"]
    assert frames["source"] == "png" and frames["images"] == {"png=dicom": 2, "png-only": 1, "png!=dicom": 1}
    assert not any("--frames" in w for w in bundle.manifest["warnings"])  # the SAE saw these frames
    assert clip.png_only[1] in set(bundle.images["image_id"])
    only = bundle.position(clip.png_only[1])
    assert transform_from_json(bundle.images["transform"].iloc[only]).space == "png"
    boxes = bundle.boxes[bundle.boxes["position"] == only]
    reference = clip.transforms[clip.png_only[1]].resized((256, 160))
    index = VindrIndex.load(clip.root)
    for kind, rows in boxes.groupby("kind"):
        truth = index.findings[(index.findings["image_id"] == clip.png_only[1]) & (index.findings[kind] == 1)]
        expected = reference.boxes_to_frame(truth[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float64))
        placed = rows[["frame_x0", "frame_y0", "frame_x1", "frame_y1"]].to_numpy()
        assert np.allclose(np.sort(placed, axis=0), np.sort(expected, axis=0), atol=1e-6)
    assert len(boxes) > 0

    live = LiveModels(bundle)  # an upload of a DICOM of the bundle gets the bundle's pixels and numbers
    image_id = next(i for i in bundle.images["image_id"] if i in clip.both)
    case = live.run_dicom(read_mammogram(index.images.set_index("image_id").loc[image_id, "path"]))
    for task in bundle.tasks:
        expected_logit = bundle.images.set_index("image_id").loc[image_id, f"logit_{task}_original"]
        assert case.logits_original[task] == pytest.approx(expected_logit, abs=1e-4)

    assert analyze.main([*analyze_args, "--out", str(tmp_path / "dicom"), "--frames", "dicom"]) == 0
    dicom = open_bundle(tmp_path / "dicom")
    assert dicom.manifest["frames"]["source"] == "dicom"
    assert any("--frames png" in w for w in dicom.manifest["warnings"])
    assert clip.png_only[1] not in set(dicom.images["image_id"])


def test_png_files_are_checked_before_decoding(tmp_path: Path) -> None:
    from mammo_sae.data.png import read_png

    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(DataError, match=r"fake\.png: not a PNG file"):
        read_png(fake)
    with pytest.raises(DataError, match="cannot read the PNG"):
        read_png(tmp_path / "absent.png")
