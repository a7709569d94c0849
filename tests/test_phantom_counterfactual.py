"""Counterfactual marker pairs: the generator's own pixels with and without the marker, equal to the file's
version, identical outside the marker's box, and framed exactly as the analysis frames the file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.frame_policy import ImageRecord, mapped_frame
from mammo_sae.data.frames import transform_to_json
from mammo_sae.data.phantom import PhantomConfig, generate_dataset, load_manifest, plan_dataset
from mammo_sae.data.phantom.counterfactual import (
    MARKER_FRINGE,
    CounterfactualError,
    marker_frames,
    marker_pair,
)
from mammo_sae.data.phantom.pixel_fingerprint import same_pixels

CONFIG = PhantomConfig(studies=6, seed=7, height=256, width=208, confounder_rate=0.5, calcification_rate=0.5)
#: the pixel checksum of CONFIG's dataset as generated before the counterfactual code existed: rendering
#: must keep producing these bytes (a deliberate generator change bumps GENERATOR_VERSION and this value)
PIXEL_CHECKSUM = "80dd87beae7024c1b2cfd6f251be2fbf8127e2790a81310eb3af8a00d45abeb4"
#: ... and their rounding-tolerant fingerprint (numpy's SIMD code paths move a few pixels by one on other CPUs)
PIXEL_FINGERPRINT = (Path(__file__).parent / "data" / "counterfactual_config_pixels.txt").read_text().strip()
FRAME = (128, 80)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cf") / "phantoms"
    generate_dataset(root, CONFIG, workers=1)
    return root


@pytest.fixture(scope="module")
def unconfounded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same seed at --confounder-rate 0: only the marker draws' thresholds differ."""
    root = tmp_path_factory.mktemp("cf0") / "phantoms"
    generate_dataset(root, replace(CONFIG, confounder_rate=0.0), workers=1)
    return root


def _images(root: Path) -> list[dict]:
    return load_manifest(root)["images"]


def test_normally_generated_pixels_are_unchanged(phantoms: Path) -> None:
    recorded = {"pixel_checksum": PIXEL_CHECKSUM, "pixel_fingerprint": PIXEL_FINGERPRINT}
    assert same_pixels(load_manifest(phantoms), recorded)


def test_the_file_version_is_the_file(phantoms: Path) -> None:
    images = _images(phantoms)
    assert {e["marker"] for e in images} == {True, False}
    for entry in images:
        pair = marker_pair(phantoms, entry["image_id"])
        stored = read_mammogram(phantoms / entry["path"]).stored
        assert pair.had_marker == entry["marker"]
        assert pair.file_pixels.dtype == stored.dtype
        assert np.array_equal(pair.file_pixels, stored), entry["image_id"]
        assert pair.photometric == entry["encoding"]["photometric"]


def test_pixels_are_identical_outside_the_marker_box_and_differ_inside(phantoms: Path) -> None:
    for entry in _images(phantoms):
        pair = marker_pair(phantoms, entry["image_id"])
        x0, y0, x1, y1 = (int(v) for v in pair.marker_box)
        inside = np.zeros(pair.with_marker.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(pair.with_marker[~inside], pair.without_marker[~inside])
        assert pair.changed_pixels > 20  # the text is drawn
        tx0, ty0, tx1, ty1 = pair.truth_box
        assert x0 <= tx0 and y0 <= ty0 and x1 >= tx1 and y1 >= ty1
        assert tx0 - x0 <= MARKER_FRINGE and x1 - tx1 <= MARKER_FRINGE
        if entry["marker"]:
            assert list(pair.truth_box) == entry["marker_box"]


def test_removing_or_adding_the_marker_is_what_the_generator_writes(
    phantoms: Path, unconfounded: Path
) -> None:
    """Where the two datasets disagree on an image's marker, the pair's other version is the other file."""
    other = {e["image_id"]: e for e in _images(unconfounded)}
    flipped = [e for e in _images(phantoms) if e["marker"] != other[e["image_id"]]["marker"]]
    assert flipped, "the seed should flip some markers"
    for entry in flipped:
        pair = marker_pair(phantoms, entry["image_id"])
        other_version = pair.without_marker if pair.had_marker else pair.with_marker
        stored = read_mammogram(unconfounded / other[entry["image_id"]]["path"]).stored
        assert np.array_equal(other_version, stored)


def test_frames_match_the_analysis_frames_of_the_file(phantoms: Path) -> None:
    for entry in _images(phantoms)[:8]:
        frames = marker_frames(phantoms, entry["image_id"], FRAME)
        analysed = mapped_frame(ImageRecord(entry["image_id"], str(phantoms / entry["path"])), FRAME)
        mine = frames.with_marker if frames.had_marker else frames.without_marker
        assert mine.pixels.dtype == np.uint8 and mine.pixels.shape == FRAME
        assert np.array_equal(mine.pixels, analysed.pixels)
        assert transform_to_json(mine.transform) == transform_to_json(analysed.transform)
        assert frames.same_crop == (
            transform_to_json(frames.with_marker.transform)
            == transform_to_json(frames.without_marker.transform)
        )
        png_source = marker_frames(phantoms, entry["image_id"], FRAME, "png")
        assert png_source.with_marker.pixels.shape == FRAME


def test_bad_requests_are_refused(phantoms: Path, tmp_path: Path) -> None:
    with pytest.raises(CounterfactualError, match="not in the phantom dataset"):
        marker_pair(phantoms, "0" * 32)
    with pytest.raises(CounterfactualError, match="no readable phantom manifest"):
        marker_pair(tmp_path, "0" * 32)
    copy = tmp_path / "copy"
    copy.mkdir()
    manifest = load_manifest(phantoms)
    image_id = manifest["images"][0]["image_id"]
    manifest["images"][0]["pixel_sha256"] = "0" * 64
    (copy / "phantom.json").write_text(json.dumps(manifest))
    with pytest.raises(CounterfactualError, match="does not reproduce"):
        marker_pair(copy, image_id)
    manifest["generator_version"] = "0.0.1"
    (copy / "phantom.json").write_text(json.dumps(manifest) + " ")  # a new stamp: not the cached plan
    with pytest.raises(CounterfactualError, match=r"generator 0\.0\.1"):
        marker_pair(copy, image_id)
    with pytest.raises(CounterfactualError, match="source"):
        marker_frames(phantoms, image_id, FRAME, "jpeg")


def test_marker_rate_follows_the_rule() -> None:
    """docs/phantoms.md: P(marker | positive) = 0.5 + R/2 and P(marker | negative) = 0.5 - R/2 per image."""
    for rate in (0.0, 0.5):
        plans = plan_dataset(PhantomConfig(studies=3000, seed=1, confounder_rate=rate))
        positive = np.array([p.has("calcification") for p in plans])
        marker = np.array([p.marker for p in plans])
        for mask, expected in ((positive, 0.5 + rate / 2), (~positive, 0.5 - rate / 2)):
            share, n = marker[mask].mean(), mask.sum()
            assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9
