"""Coordinate maps between original pixels and the Mammo-CLIP 912x1520 model frame, and their JSON form.

Coordinates are continuous pixel coordinates: pixel ``i`` covers ``[i, i + 1)``, so a box
``(xmin, ymin, xmax, ymax)`` in original pixels maps to the frame by shifting and scaling
its edges, exactly as the Mammo-CLIP detection CSV was produced (FACTS.md 3).

A transform's ``space`` says what its original pixels are: ``"dicom"`` (the DICOM the frame was
preprocessed from) or ``"png"`` (a Mammo-CLIP PNG itself, when no DICOM maps onto it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]
SPACES = ("dicom", "png")


@dataclass(frozen=True)
class AxisMap:
    """Maps one axis of the bordered original image onto the cropped-and-resized frame.

    ``offset`` is the border removed first; ``kept`` the indices (after the border crop) that the
    breast extraction kept, usually one contiguous run; ``size`` the output length after resizing.
    """

    offset: int
    kept: np.ndarray
    size: int

    def __post_init__(self) -> None:
        assert self.kept.ndim == 1 and len(self.kept) > 0, "an axis must keep at least one index"
        assert np.all(np.diff(self.kept) > 0), "kept indices must be strictly increasing"

    @property
    def crop_length(self) -> int:
        return len(self.kept)

    @property
    def contiguous(self) -> bool:
        return int(self.kept[-1] - self.kept[0]) + 1 == len(self.kept)

    @property
    def scale(self) -> float:
        """Frame pixels per cropped pixel."""
        return self.size / self.crop_length

    def to_frame(self, coords: np.ndarray) -> np.ndarray:
        """Original-pixel coordinates -> frame coordinates (extrapolates linearly outside the crop)."""
        x = np.asarray(coords, dtype=np.float64) - self.offset
        first, last = float(self.kept[0]), float(self.kept[-1])
        if self.contiguous:
            crop = x - first
        else:
            k = np.clip(np.searchsorted(self.kept, np.floor(x), side="right") - 1, 0, len(self.kept) - 1)
            crop = k + np.clip(x - self.kept[k], 0.0, 1.0)
            crop = np.where(x < first, x - first, crop)
            crop = np.where(x >= last + 1, (len(self.kept) - 1) + (x - last), crop)
        return crop * self.scale

    def to_original(self, coords: np.ndarray) -> np.ndarray:
        """Frame coordinates -> original-pixel coordinates (inverse of :meth:`to_frame`)."""
        crop = np.asarray(coords, dtype=np.float64) / self.scale
        if self.contiguous:
            x = crop + float(self.kept[0])
        else:
            k = np.clip(np.floor(crop).astype(np.int64), 0, len(self.kept) - 1)
            x = self.kept[k] + (crop - k)
        return x + self.offset


@dataclass(frozen=True)
class FrameTransform:
    """Original pixels <-> the preprocessed model frame (width x height = ``frame_size``); the original
    pixels are the DICOM's (``space="dicom"``) or a Mammo-CLIP PNG's own (``space="png"``)."""

    original_shape: tuple[int, int]
    x: AxisMap
    y: AxisMap
    space: str = "dicom"

    def __post_init__(self) -> None:
        assert self.space in SPACES, f"a transform maps onto one of {SPACES}, not {self.space!r}"

    def resized(self, frame_size: tuple[int, int]) -> FrameTransform:
        """The same map onto the frame resized to ``frame_size`` (height, width): scales compose exactly."""
        height, width = frame_size
        return FrameTransform(
            original_shape=self.original_shape,
            x=AxisMap(offset=self.x.offset, kept=self.x.kept, size=width),
            y=AxisMap(offset=self.y.offset, kept=self.y.kept, size=height),
            space=self.space,
        )

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the model frame."""
        return self.y.size, self.x.size

    @property
    def crop_box(self) -> Box:
        """The kept region as a box in original pixels (its bounding box if not contiguous)."""
        return (
            float(self.x.offset + self.x.kept[0]),
            float(self.y.offset + self.y.kept[0]),
            float(self.x.offset + self.x.kept[-1] + 1),
            float(self.y.offset + self.y.kept[-1] + 1),
        )

    def points_to_frame(self, points_xy: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([self.x.to_frame(pts[:, 0]), self.y.to_frame(pts[:, 1])], axis=1)

    def points_to_original(self, points_xy: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([self.x.to_original(pts[:, 0]), self.y.to_original(pts[:, 1])], axis=1)

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes xmin, ymin, xmax, ymax in original pixels -> frame pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.stack(
            [
                self.x.to_frame(b[:, 0]),
                self.y.to_frame(b[:, 1]),
                self.x.to_frame(b[:, 2]),
                self.y.to_frame(b[:, 3]),
            ],
            axis=1,
        )

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in frame pixels -> original pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.stack(
            [
                self.x.to_original(b[:, 0]),
                self.y.to_original(b[:, 1]),
                self.x.to_original(b[:, 2]),
                self.y.to_original(b[:, 3]),
            ],
            axis=1,
        )


def flip_boxes_horizontally(boxes: np.ndarray, width: float) -> np.ndarray:
    """Mirror (N, 4) boxes in an image of the given width (used when a view is flipped for display)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def chest_wall_side(image: np.ndarray) -> str:
    """'left' or 'right': the image side where the breast meets the chest wall (more tissue there)."""
    assert image.ndim == 2, "expects a single-channel image"
    half = image.shape[1] // 2
    left = float(np.mean(image[:, :half], dtype=np.float64))
    right = float(np.mean(image[:, image.shape[1] - half :], dtype=np.float64))
    return "left" if left >= right else "right"


def needs_display_flip(image: np.ndarray, laterality: str) -> bool:
    """Whether a view must be mirrored to hang back to back: R views with the chest wall on the
    right of the image, L views with the chest wall on the left (breasts pointing outwards)."""
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    wanted = "right" if laterality == "R" else "left"
    return chest_wall_side(image) != wanted


# --- JSON form (one compact string per image, so transforms fit a parquet column) ---------------------


def encode_runs(kept: np.ndarray) -> list[int]:
    """Sorted indices -> [start, stop, start, stop, ...] of their contiguous runs."""
    kept = np.asarray(kept, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(kept) != 1)
    starts = np.concatenate([[kept[0]], kept[breaks + 1]])
    stops = np.concatenate([kept[breaks] + 1, [kept[-1] + 1]])
    return [int(v) for pair in zip(starts, stops, strict=True) for v in pair]


def decode_runs(runs: list[int]) -> np.ndarray:
    """[start, stop, ...] runs -> the sorted indices they cover (inverse of :func:`encode_runs`)."""
    assert len(runs) % 2 == 0 and runs, "runs come in (start, stop) pairs"
    return np.concatenate(
        [np.arange(a, b, dtype=np.int64) for a, b in zip(runs[::2], runs[1::2], strict=True)]
    )


def transform_to_json(transform: FrameTransform, **extra: str) -> str:
    """``{"shape": [h, w], "x": [offset, size, runs...], "y": [...]}``, plus ``"space"`` when it is not
    the DICOM's (so DICOM transforms read the same as before spaces existed) and any ``extra`` keys."""
    axes = {
        name: [axis.offset, axis.size, *encode_runs(axis.kept)]
        for name, axis in (("x", transform.x), ("y", transform.y))
    }
    record: dict = {"shape": list(transform.original_shape), **axes}
    if transform.space != "dicom":
        record["space"] = transform.space
    return json.dumps(record | extra, separators=(",", ":"))


def transform_from_json(text: str) -> FrameTransform:
    """The transform of :func:`transform_to_json` (extra keys are ignored; no ``space`` means the DICOM)."""
    record = json.loads(text)

    def axis(values: list[int]) -> AxisMap:
        return AxisMap(offset=int(values[0]), size=int(values[1]), kept=decode_runs(values[2:]))

    return FrameTransform(
        original_shape=tuple(record["shape"]),
        x=axis(record["x"]),
        y=axis(record["y"]),
        space=record.get("space", "dicom"),
    )
