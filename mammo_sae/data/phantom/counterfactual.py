"""Counterfactual marker pairs: any phantom image rendered with and without its burned-in marker.

    pair = marker_pair("data/phantoms", image_id)       # stored pixels, as the DICOM holds them
    frames = marker_frames("data/phantoms", image_id, (640, 384))   # both model frames and their maps

Both versions come from the dataset's own recorded plan (the manifest's parameters re-planned), so they are
the generator's pixels, not an edit of the file: the version matching the file equals it exactly (checked
against the manifest's pixel sha256 on every call), and the two differ only where the marker is drawn.
The marker is burned in last, after every random draw, so removing it changes nothing else.

``marker_box`` is the region the two versions may differ in: the box the truth tables record for the
marker (its text pixels at >= 25% coverage, ``truth_box``) grown by ``MARKER_FRINGE`` pixels, because
``cv2.LINE_AA`` blends a one-pixel fringe of lower coverage around the text; outside it the pixels are
identical (asserted on every pair).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mammo_sae.data.dicom.write import intensity_to_stored
from mammo_sae.data.frame_policy import PNG_SIZE, SOURCES, MappedFrame, fit
from mammo_sae.data.frames import transform_to_json
from mammo_sae.data.phantom.config import GENERATOR_VERSION, PhantomConfig, PhantomError
from mammo_sae.data.phantom.dataset import MANIFEST, load_manifest, stored_sha256
from mammo_sae.data.phantom.encoding import build_encoding
from mammo_sae.data.phantom.plan import ImagePlan, plan_dataset
from mammo_sae.data.phantom.render import add_marker, render_image
from mammo_sae.data.preprocess import BORDER, preprocess

Box = tuple[float, float, float, float]
#: pixels around the recorded marker box that the antialiased text may still touch (measured: 1)
MARKER_FRINGE = 2


class CounterfactualError(PhantomError):
    """A counterfactual pair cannot be made for this image (not in the dataset, or not reproducible)."""


@dataclass(frozen=True)
class MarkerPair:
    """One phantom image with and without its marker, as stored values (the file's dtype and values)."""

    image_id: str
    with_marker: np.ndarray  # uint16 [rows, cols] stored values, photometric as in the file
    without_marker: np.ndarray  # the same image without the marker
    photometric: str  # MONOCHROME1 / MONOCHROME2, the file's: both versions are stored alike
    had_marker: bool  # whether the dataset's file holds the marker
    marker_box: Box  # (x0, y0, x1, y1) original px; outside it the two versions are identical
    truth_box: Box  # the marker's box as phantom_truth.csv records it (or would, for an unmarked file)

    @property
    def file_pixels(self) -> np.ndarray:
        """The version the dataset's file holds."""
        return self.with_marker if self.had_marker else self.without_marker

    @property
    def changed_pixels(self) -> int:
        """How many stored values the marker changes."""
        return int(np.count_nonzero(self.with_marker != self.without_marker))

    @property
    def rescales(self) -> bool:
        """Whether the marker moves the image's value range after the border crop, so the preprocessing's
        min-max scaling changes every pixel of the frame, not only the marker's (the text is near white)."""
        inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
        a, b = self.with_marker[inner], self.without_marker[inner]
        return bool(a.min() != b.min() or a.max() != b.max())


@dataclass(frozen=True)
class MarkerFrames:
    """Both model frames of a pair (uint8, through the normal preprocessing) and their maps."""

    image_id: str
    with_marker: MappedFrame
    without_marker: MappedFrame
    had_marker: bool
    marker_box: Box
    rescales: bool  # MarkerPair.rescales: the marker changes the min-max scaling of the whole frame

    @property
    def same_crop(self) -> bool:
        """Whether both versions map onto the original pixels alike (the breast crop ignored the marker)."""
        return transform_to_json(self.with_marker.transform) == transform_to_json(
            self.without_marker.transform
        )


@dataclass(frozen=True)
class _Planned:
    size: tuple[int, int]
    plans: dict[str, ImagePlan]
    entries: dict[str, dict]


def _stamp(root: Path) -> tuple[str, int, int]:
    try:
        stat = (root / MANIFEST).stat()
    except OSError as exc:
        raise CounterfactualError(
            f"{root} has no readable phantom manifest ({exc}): marker pairs exist only for phantom datasets"
        ) from exc
    return str(root.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _planned(root: str, mtime_ns: int, size: int) -> _Planned:
    """The dataset's plan, re-made from its manifest (cached per manifest version)."""
    del mtime_ns, size  # part of the cache key only
    manifest = load_manifest(root)
    version = manifest.get("generator_version")
    if version != GENERATOR_VERSION:
        raise CounterfactualError(
            f"{root} was written by phantom generator {version}, this one is {GENERATOR_VERSION}: its images "
            "cannot be re-rendered exactly; regenerate the dataset with this version"
        )
    config = PhantomConfig.from_dict(manifest["parameters"])
    plans = {p.image_id: p for p in plan_dataset(config)}
    entries = {e["image_id"]: e for e in manifest["images"]}
    if set(plans) != set(entries):
        raise CounterfactualError(
            f"{root}'s manifest lists other images than its parameters plan; regenerate the dataset"
        )
    return _Planned(config.size, plans, entries)


def _grown(box: Box, by: int, shape: tuple[int, int]) -> Box:
    rows, cols = shape
    x0, y0, x1, y1 = box
    return (max(x0 - by, 0.0), max(y0 - by, 0.0), min(x1 + by, float(cols)), min(y1 + by, float(rows)))


def _outside_identical(a: np.ndarray, b: np.ndarray, box: Box) -> bool:
    ys, xs = np.nonzero(a != b)
    if ys.size == 0:
        return True
    x0, y0, x1, y1 = box
    return bool(xs.min() >= x0 and ys.min() >= y0 and xs.max() < x1 and ys.max() < y1)


def marker_pair(root: str | os.PathLike[str], image_id: str) -> MarkerPair:
    """Render phantom ``image_id`` of the dataset at ``root`` with and without its marker.

    Raises CounterfactualError when the root is not a phantom dataset of this generator version, the image
    is not in it, or the re-rendered file version differs from the file (the manifest's pixel sha256)."""
    root = Path(root)
    planned = _planned(*_stamp(root))
    if image_id not in planned.plans:
        raise CounterfactualError(f"image {image_id!r} is not in the phantom dataset {root}")
    plan, entry = planned.plans[image_id], planned.entries[image_id]
    if bool(entry["marker"]) != plan.marker:
        raise CounterfactualError(f"{root}'s manifest and plan disagree on the marker of {image_id}")
    plain = render_image(replace(plan, marker=False), planned.size).intensity
    marked = plain.copy()
    truth_box = add_marker(marked, plan).box
    encoding = build_encoding(plan.encoding, marked if plan.marker else plain)
    with_marker = intensity_to_stored(marked, encoding)
    without_marker = intensity_to_stored(plain, encoding)
    file_version = with_marker if plan.marker else without_marker
    if stored_sha256(file_version) != entry["pixel_sha256"]:
        raise CounterfactualError(
            f"re-rendering {image_id} does not reproduce the pixels of its file in {root}; the dataset was "
            "made by another build of the generator: regenerate it"
        )
    if plan.marker and entry.get("marker_box") is not None:
        assert tuple(entry["marker_box"]) == truth_box, "the recorded marker box must be the rendered one"
    box = _grown(truth_box, MARKER_FRINGE, with_marker.shape)
    assert _outside_identical(with_marker, without_marker, box), "the marker changed pixels outside its box"
    return MarkerPair(
        image_id=image_id,
        with_marker=with_marker,
        without_marker=without_marker,
        photometric=encoding.photometric,
        had_marker=plan.marker,
        marker_box=box,
        truth_box=truth_box,
    )


def pair_frames(pair: MarkerPair, frame_size: tuple[int, int], source: str = "dicom") -> MarkerFrames:
    """Both versions of ``pair`` through the preprocessing a ``source`` frame policy applies to a DICOM
    (``frame_policy.frame_from_dicom``): straight to ``frame_size`` ("dicom"), or to the Mammo-CLIP PNG
    size and then resized ("png")."""
    if source not in SOURCES:
        raise CounterfactualError(f"source must be one of {SOURCES}, got {source!r}")
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    size = frame_size if source == "dicom" else PNG_SIZE

    def framed(stored: np.ndarray) -> MappedFrame:
        prepared = preprocess(stored, pair.photometric, size)
        return MappedFrame(fit(prepared.png, frame_size), prepared.transform.resized(frame_size))

    return MarkerFrames(
        image_id=pair.image_id,
        with_marker=framed(pair.with_marker),
        without_marker=framed(pair.without_marker),
        had_marker=pair.had_marker,
        marker_box=pair.marker_box,
        rescales=pair.rescales,
    )


def marker_frames(
    root: str | os.PathLike[str], image_id: str, frame_size: tuple[int, int], source: str = "dicom"
) -> MarkerFrames:
    """The model frames (uint8) of ``image_id`` with and without its marker, with the frame map of each."""
    return pair_frames(marker_pair(root, image_id), frame_size, source)
