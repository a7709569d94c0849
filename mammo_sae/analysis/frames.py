"""Analysis inputs: each image as a model input together with its map back to original pixels.

The pixels are the frame policy's (:mod:`mammo_sae.data.frame_policy`), the very ones extraction fed the
model for the same policy; the map is the policy's too (onto the DICOM, or onto a PNG that has none).
Transforms travel as compact JSON strings so they fit a parquet column; a PNG frame's JSON also says how
its map was found (``"check"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.breast_mask import tissue_bits
from mammo_sae.data.frame_policy import FramePolicy, ImageRecord, mapped_frame
from mammo_sae.data.frames import transform_to_json
from mammo_sae.data.preprocess import model_input
from mammo_sae.data.vindr import VindrIndex


@dataclass(frozen=True)
class AnalysisRecord:
    position: int  # row of the image in the bundle's image table
    image_id: str
    dicom_path: str | None
    png_path: str | None = None
    frames: str = "dicom"

    @property
    def image(self) -> ImageRecord:
        return ImageRecord(self.image_id, self.dicom_path, self.png_path, self.frames)


def analysis_records(
    policy: FramePolicy, index: VindrIndex, split: str, limit: int | None
) -> tuple[list[AnalysisRecord], dict[str, str]]:
    """The policy's images of a split, numbered in order, and those skipped for want of a file."""
    records, missing = policy.select(index, split, limit)
    out = [AnalysisRecord(i, r.image_id, r.dicom_path, r.png_path, r.frames) for i, r in enumerate(records)]
    return out, missing


def resolve_frames(
    requested: str, index: VindrIndex, frame_size: tuple[int, int], sae_metadata: Mapping[str, Any] | None
) -> tuple[FramePolicy, list[str]]:
    """The analysis's frame policy for its root, and a warning when the SAE's training store (as its
    metadata records it) was extracted from other frames."""
    policy = FramePolicy.resolve(requested, index, frame_size)
    store = (sae_metadata or {}).get("store_identity") or {}
    warning = policy.mismatch(store.get("preprocessing"), "the SAE's training store")
    return policy, [warning] if warning else []


FrameItem = tuple[int, torch.Tensor | None, str | None, str | None, np.ndarray | None]


class AnalysisFrames(Dataset):
    """(position, model input (3, H, W) float32, transform JSON, error, tissue bits (H, W) uint8) per record;
    failures are messages. The tissue bits (``data.breast_mask``) say where the frame's breast, skin line and
    burned-in marks are, by the preprocessing's own background rule."""

    def __init__(self, records: list[AnalysisRecord], frame_size: tuple[int, int]) -> None:
        self.records = records
        self.frame_size = frame_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> FrameItem:
        record = self.records[i]
        try:
            mapped = mapped_frame(record.image, self.frame_size)
        except MammoSaeError as error:
            return record.position, None, None, str(error), None
        pixels = torch.from_numpy(model_input(mapped.pixels))
        extra = {} if mapped.check == "dicom" else {"check": mapped.check}
        bits = tissue_bits(mapped.pixels)
        return record.position, pixels, transform_to_json(mapped.transform, **extra), None, bits


@dataclass
class AnalysisBatch:
    """The images of a batch that loaded (positions, model inputs, transforms, tissue bits) and the errors
    of those that did not, by position."""

    positions: list[int]
    pixels: torch.Tensor | None  # [B, 3, H, W]
    transforms: list[str]
    errors: dict[int, str]
    tissue_bhw: np.ndarray | None  # [B, H, W] uint8 bit planes


def collate_analysis(items: list[FrameItem]) -> AnalysisBatch:
    """Stack the images that loaded; report the others by position."""
    loaded = [item for item in items if item[1] is not None]
    errors = {item[0]: str(item[3]) for item in items if item[1] is None}
    pixels = torch.stack([item[1] for item in loaded]) if loaded else None
    tissue = np.stack([item[4] for item in loaded]) if loaded else None
    return AnalysisBatch(
        [item[0] for item in loaded], pixels, [str(item[2]) for item in loaded], errors, tissue
    )
