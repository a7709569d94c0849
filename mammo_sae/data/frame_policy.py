"""The model-input frame policy: which pixels every command feeds the model, chosen once per dataset root.

    policy = FramePolicy.resolve("auto", index, frame_size=(1520, 912))
    records, skipped = policy.select(index, "training")
    pixels = model_frame(records[0], policy.frame_size)     # uint8 (1520, 912): what the model sees
    mapped = mapped_frame(records[0], policy.frame_size)    # the same pixels + their FrameTransform

One recipe, two sources (FACTS.md 3):

- ``"dicom"``: each DICOM through the Mammo-CLIP preprocessing, resized straight to the frame size.
- ``"png"``: the Mammo-CLIP PNG (``images_png/<study_id>/<image_id>.png``, 1520 x 912), resized to the
  frame size when that differs; an image without a PNG gets the PNG its DICOM's preprocessing makes.
- ``"auto"``: ``"png"`` when the root has a Mammo-CLIP PNG folder holding any of its images, else ``"dicom"``.

Extraction, fine-tuning, analysis and live inference all call :func:`model_frame` / :func:`mapped_frame`,
so one policy gives one set of pixels whichever command reads them. At the default frame size an image
with both files gets the same pixels from either source. A PNG frame is mapped back to its DICOM's pixels
when the DICOM's preprocessing reproduces it (checked on every mapped frame); otherwise, and for an image
with a PNG but no DICOM, the transform maps onto the PNG itself (``space="png"``) and the image's boxes
are the Mammo-CLIP CSV's resized boxes.

A policy also names its conditioning (``data.conditioning``): "mammo-clip" feeds the recipe the stored
values as they are (VinDr-Mammo and phantom roots: bit for bit, the phantoms' markers kept); "robust"
first cleans a file of any origin (padding, FOR PROCESSING, labels, borders, tape), for roots imported
from a DICOM folder (:func:`conditioning_for_root`) and, in the app, for uploads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mammo_sae.core.errors import DataError, MammoSaeError
from mammo_sae.data import csv_tables as ct
from mammo_sae.data.conditioning import MAMMO_CLIP, ROBUST, check_conditioning
from mammo_sae.data.dicom import MammogramDicom, read_mammogram
from mammo_sae.data.folder_import import is_imported_root
from mammo_sae.data.frames import AxisMap, FrameTransform
from mammo_sae.data.png import read_png
from mammo_sae.data.preprocess import FRAME_HEIGHT, FRAME_WIDTH, PIXEL_MEAN, PIXEL_STD, preprocess_mammogram
from mammo_sae.data.vindr import VindrIndex

FRAMES = ("auto", "dicom", "png")
SOURCES = ("dicom", "png")
SPLITS = ("training", "test", "all")
#: the size of a Mammo-CLIP PNG (height, width): the frame its resized boxes are given in
PNG_SIZE = (FRAME_HEIGHT, FRAME_WIDTH)
#: how far (grey levels) a PNG may differ from its DICOM's preprocessing and still be mapped onto the DICOM
PNG_TOLERANCE = 1
#: per-image frame checks, as recorded in a transform's JSON (``"check"``) and counted in the manifest
CHECKS = {
    "dicom": "preprocessed from its DICOM",
    "png=dicom": "Mammo-CLIP PNG, identical to its DICOM's preprocessing",
    "png~dicom": f"Mammo-CLIP PNG, within {PNG_TOLERANCE} grey level of its DICOM's preprocessing",
    "png-only": "Mammo-CLIP PNG without a readable DICOM: mapped onto the PNG itself",
    "png!=dicom": "Mammo-CLIP PNG that its DICOM's preprocessing does not reproduce: mapped onto the PNG itself",
}
FRAMES_HELP = (
    "model-input frames: 'dicom' (the Mammo-CLIP preprocessing of each DICOM), 'png' (the Mammo-CLIP PNGs "
    "under images_png/, resized to the frame size; the DICOM's preprocessing where a PNG is missing) or "
    "'auto' (png when the root has a Mammo-CLIP PNG folder, else dicom)"
)


@dataclass(frozen=True)
class ImageRecord:
    """One image to frame: where its files are and which source its frame comes from."""

    image_id: str
    dicom_path: str | None  # None when the DICOM is known to be absent
    png_path: str | None = None  # the Mammo-CLIP PNG that is the frame (only under the png policy)
    frames: str = "dicom"  # the policy's source
    conditioning: str = MAMMO_CLIP  # the policy's conditioning (data.conditioning.CONDITIONINGS)

    def __post_init__(self) -> None:
        assert self.frames in SOURCES, f"frames must be one of {SOURCES}, not {self.frames!r}"
        check_conditioning(self.conditioning)
        assert self.png_path is None or self.frames == "png", "a PNG is the frame only under the png policy"
        assert self.dicom_path is not None or self.png_path is not None, "an image needs a file to frame"


@dataclass(frozen=True)
class MappedFrame:
    """A model frame with its map back to original pixels and how that map was found (a key of CHECKS)."""

    pixels: np.ndarray  # uint8 (height, width)
    transform: FrameTransform
    check: str = "dicom"


@dataclass(frozen=True)
class FramePolicy:
    """The resolved frame source of one dataset root (``requested`` keeps what was asked, e.g. "auto")."""

    source: str
    requested: str
    frame_size: tuple[int, int] = PNG_SIZE
    conditioning: str = MAMMO_CLIP  # "robust" for imported roots (conditioning_for_root)

    def __post_init__(self) -> None:
        assert self.source in SOURCES and self.requested in FRAMES
        assert len(self.frame_size) == 2 and min(self.frame_size) > 0
        check_conditioning(self.conditioning)

    @classmethod
    def resolve(
        cls, requested: str, index: VindrIndex, frame_size: tuple[int, int] = PNG_SIZE
    ) -> FramePolicy:
        """The policy for ``index``'s root: "auto" looks once for Mammo-CLIP PNGs of the root's images;
        the conditioning is the root's (:func:`conditioning_for_root`)."""
        policy = cls._resolve_source(requested, index, frame_size)
        conditioning = conditioning_for_root(index.root)
        return (
            policy if conditioning == MAMMO_CLIP else dataclasses.replace(policy, conditioning=conditioning)
        )

    @classmethod
    def _resolve_source(
        cls, requested: str, index: VindrIndex, frame_size: tuple[int, int] = PNG_SIZE
    ) -> FramePolicy:
        if requested not in FRAMES:
            raise DataError(f"--frames must be one of {', '.join(FRAMES)}, got {requested!r}")
        frame_size = (int(frame_size[0]), int(frame_size[1]))
        if requested != "auto":
            if requested == "png" and not _png_present(index).any():
                raise DataError(
                    f"--frames png: {index.root} has no Mammo-CLIP PNG of its images (looked for "
                    f"{ct.MAMMO_CLIP_PNG_DIR}/<study_id>/<image_id>.png in the root and in mammo_clip/); "
                    "put the PNGs there, or use --frames dicom (or auto)"
                )
            return cls(requested, requested, frame_size)
        return cls("png" if _png_present(index).any() else "dicom", "auto", frame_size)

    def select(
        self, index: VindrIndex, split: str, limit: int | None = None
    ) -> tuple[list[ImageRecord], dict[str, str]]:
        """The images of a split in index order (the first ``limit``), and those skipped for want of a file."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        in_split = np.ones(len(index.images), bool) if split == "all" else index.images["split"] == split
        images = index.images[np.asarray(in_split, dtype=bool)]
        pngs = _png_present(index)[np.asarray(in_split, dtype=bool)]
        if limit is not None:
            if limit < 1:
                raise DataError(f"--limit must be >= 1, got {limit}")
            images, pngs = images.iloc[:limit], pngs[:limit]
        use_png = self.source == "png" and "png_path" in images
        records, skipped = [], {}
        for row, has_png in zip(images.itertuples(index=False), pngs, strict=True):
            dicom = None if index.files_checked and not bool(row.exists) else row.path
            png = row.png_path if use_png and has_png else None
            if dicom is None and png is None:
                skipped[row.image_id] = (
                    "image file missing on disk"
                    if self.source == "dicom"
                    else "neither its DICOM nor a Mammo-CLIP PNG is on disk"
                )
                continue
            records.append(ImageRecord(row.image_id, dicom, png, self.source, self.conditioning))
        return records, skipped

    def to_json(self) -> dict[str, Any]:
        """The policy as manifests record it."""
        record: dict[str, Any] = {
            "source": self.source,
            "requested": self.requested,
            "recipe": "mammo-clip",
            "frame_size": list(self.frame_size),
            "mean": PIXEL_MEAN,
            "std": PIXEL_STD,
        }
        if self.source == "png":
            record["png_size"] = list(PNG_SIZE)
        if self.conditioning != MAMMO_CLIP:  # absent for the recipe: older manifests and stores still agree
            record["conditioning"] = self.conditioning
        return record

    def identity(self, records: Iterable[ImageRecord]) -> dict[str, Any]:
        """What names a store: the resolved source, never the request ("auto" and "png" that agree are one
        store), and under png which images had a PNG (adding PNGs later makes another store)."""
        out = {key: value for key, value in self.to_json().items() if key != "requested"}
        if self.source == "png":
            ids = [r.image_id for r in records if r.png_path is not None]
            out["png_images"] = len(ids)
            out["png_images_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        return out

    def mismatch(self, recorded: Mapping[str, Any] | None, what: str = "the SAE's store") -> str | None:
        """A warning when ``recorded`` (a policy's JSON) names another source or frame size; None when it
        agrees or records none (stores made before frame policies)."""
        if not recorded or "source" not in recorded:
            return None
        source, size = recorded.get("source"), recorded.get("frame_size")
        if source == self.source and (size is None or tuple(size) == self.frame_size):
            return None
        theirs = f"{source!r} frames" + (f" at {size[0]}x{size[1]}" if size else "")
        ours = f"{self.source!r} frames at {self.frame_size[0]}x{self.frame_size[1]}"
        return (
            f"{what} was made from {theirs} but this run reads {ours} (--frames {self.requested}); the "
            f"features may differ from those it was trained on: pass --frames {source} to read what it saw"
        )


def conditioning_for_root(root: str | os.PathLike[str]) -> str:
    """The conditioning a dataset root gets: "robust" for a folder import (real files of any origin),
    "mammo-clip" (the recipe bit for bit) for VinDr and phantom roots, whose markers stay in the pixels."""
    return ROBUST if is_imported_root(Path(root)) else MAMMO_CLIP


def frame_policy_record(policy: FramePolicy, transforms: Iterable[str]) -> dict[str, Any]:
    """The manifest's ``"frames"`` record: the policy, how many images each check gave (from the transforms'
    JSON) and warnings for the images whose maps land on the PNG itself rather than on the DICOM."""
    counts = Counter(json.loads(text).get("check", "dicom") for text in transforms)
    warnings = []
    for check in ("png-only", "png!=dicom"):
        if counts[check]:
            warnings.append(
                f"{counts[check]} image(s): {CHECKS[check]}; their maps, patches and boxes are in the PNG's "
                "pixels (boxes from the Mammo-CLIP CSV's resized boxes), not the DICOM's"
            )
    return policy.to_json() | {"images": {c: counts[c] for c in CHECKS if counts[c]}, "warnings": warnings}


# --- frames -------------------------------------------------------------------------------------------


def fit(frame: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """A uint8 frame at ``frame_size`` (height, width): INTER_AREA resized when its size differs."""
    if frame.shape == tuple(frame_size):
        return frame
    return cv2.resize(frame, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_AREA)


def png_transform(png_shape: tuple[int, int], frame_size: tuple[int, int]) -> FrameTransform:
    """The map from a PNG's own pixels onto the frame it is resized to (space "png")."""
    height, width = int(png_shape[0]), int(png_shape[1])
    return FrameTransform(
        original_shape=(height, width),
        x=AxisMap(offset=0, kept=np.arange(width), size=frame_size[1]),
        y=AxisMap(offset=0, kept=np.arange(height), size=frame_size[0]),
        space="png",
    )


def frame_from_dicom(
    image: MammogramDicom, frame_size: tuple[int, int], source: str = "dicom", conditioning: str = MAMMO_CLIP
) -> MappedFrame:
    """A DICOM's frame: preprocessed to the frame size ("dicom") or to the Mammo-CLIP PNG, then resized ("png");
    ``conditioning`` as ``preprocess.preprocess_mammogram`` takes it."""
    assert source in SOURCES
    prepared = preprocess_mammogram(image, frame_size if source == "dicom" else PNG_SIZE, conditioning)
    return MappedFrame(fit(prepared.png, frame_size), prepared.transform.resized(frame_size))


def frame_from_png(png: np.ndarray, frame_size: tuple[int, int]) -> MappedFrame:
    """A PNG taken as a Mammo-CLIP frame (already cropped), resized to the frame size, mapped onto itself."""
    if png.ndim != 2 or png.dtype != np.uint8:
        raise DataError(f"a PNG frame must be greyscale uint8, got {png.dtype} of shape {png.shape}")
    return MappedFrame(fit(png, frame_size), png_transform(png.shape, frame_size), "png-only")


def model_frame(record: ImageRecord, frame_size: tuple[int, int]) -> np.ndarray:
    """The uint8 model frame (height, width) of one image under its record's source; no transform needed,
    so a PNG frame never reads the DICOM. The same pixels as ``mapped_frame(record, frame_size).pixels``."""
    if record.png_path is not None:
        return fit(read_png(record.png_path), frame_size)
    assert record.dicom_path is not None
    image = read_mammogram(record.dicom_path)
    return frame_from_dicom(image, frame_size, record.frames, record.conditioning).pixels


def mapped_frame(record: ImageRecord, frame_size: tuple[int, int]) -> MappedFrame:
    """The model frame of one image and its map back to original pixels.

    A PNG frame is mapped onto its DICOM when the DICOM's preprocessing (at the PNG's size) reproduces the
    PNG within PNG_TOLERANCE grey levels; otherwise, or without a readable DICOM, onto the PNG itself."""
    if record.png_path is None:
        assert record.dicom_path is not None
        return frame_from_dicom(
            read_mammogram(record.dicom_path), frame_size, record.frames, record.conditioning
        )
    png = read_png(record.png_path)
    own = frame_from_png(png, frame_size)
    if record.dicom_path is None or not os.path.isfile(record.dicom_path):
        return own
    try:
        prepared = preprocess_mammogram(read_mammogram(record.dicom_path), png.shape, record.conditioning)
    except MammoSaeError:
        return own  # the PNG is the frame whatever the DICOM holds: extraction never read it either
    largest = int(np.abs(prepared.png.astype(np.int16) - png.astype(np.int16)).max())
    if largest > PNG_TOLERANCE:
        return MappedFrame(own.pixels, own.transform, "png!=dicom")
    check = "png=dicom" if largest == 0 else "png~dicom"
    return MappedFrame(own.pixels, prepared.transform.resized(frame_size), check)


def boxes_in_space(
    transform: FrameTransform, original: np.ndarray, resized: np.ndarray | None = None
) -> np.ndarray:
    """(N, 4) finding boxes in the transform's original pixels: the release's boxes (DICOM pixels) as they
    are or, for a transform onto a PNG itself, the Mammo-CLIP CSV's resized boxes (given in its 912x1520
    frame) scaled to the PNG; NaN rows where the needed boxes are absent."""
    original = np.asarray(original, dtype=np.float64).reshape(-1, 4)
    if transform.space == "dicom":
        return original
    if resized is None:
        return np.full_like(original, np.nan)
    height, width = transform.original_shape
    scale = np.array([width / PNG_SIZE[1], height / PNG_SIZE[0]] * 2)
    return np.asarray(resized, dtype=np.float64).reshape(-1, 4) * scale


def boxes_in_frame(
    transform: FrameTransform, original: np.ndarray, resized: np.ndarray | None = None
) -> np.ndarray:
    """(N, 4) finding boxes in the model frame (see :func:`boxes_in_space`); NaN rows where absent."""
    return transform.boxes_to_frame(boxes_in_space(transform, original, resized))


def _png_present(index: VindrIndex) -> np.ndarray:
    """Per image of the index: whether its Mammo-CLIP PNG is on disk (all False without a PNG folder)."""
    images = index.images
    if "png_path" not in images:
        return np.zeros(len(images), dtype=bool)
    if "png_exists" in images:
        return images["png_exists"].to_numpy(dtype=bool)
    return np.fromiter((os.path.isfile(p) for p in images["png_path"]), dtype=bool, count=len(images))
