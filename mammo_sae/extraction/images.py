"""Which images to extract, and loading each one as a normalised model input in DataLoader workers.

A record prefers Mammo-CLIP's own PNG when it exists (the exact frames the released models saw) and
otherwise preprocesses the DICOM. Images that cannot be read come back as errors, not exceptions, so one
bad file never stops an extraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mammo_sae.core.errors import DataError, MammoSaeError
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.preprocess import model_input, preprocess_mammogram
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.augment import augment_frame

SPLITS = ("training", "test", "all")


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    dicom_path: str
    png_path: str | None = None


def select_records(
    index: VindrIndex, split: str, limit: int | None = None
) -> tuple[list[ImageRecord], dict[str, str]]:
    """The images of a split in index order (first ``limit`` of them) and those skipped as missing."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    images = index.images if split == "all" else index.images[index.images["split"] == split]
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be >= 1, got {limit}")
        images = images.iloc[:limit]
    has_png = "png_path" in images and "png_exists" in images
    records, skipped = [], {}
    for row in images.itertuples(index=False):
        png = row.png_path if has_png and bool(row.png_exists) else None
        if png is None and index.files_checked and not bool(row.exists):
            skipped[row.image_id] = "image file missing on disk"
            continue
        records.append(ImageRecord(row.image_id, row.path, png))
    return records, skipped


def load_frame(record: ImageRecord, frame_size: tuple[int, int]) -> np.ndarray:
    """The uint8 model frame (height, width) of one image: Mammo-CLIP's PNG if present, else the DICOM."""
    if record.png_path is not None:
        png = cv2.imread(record.png_path, cv2.IMREAD_GRAYSCALE)
        if png is None:
            raise DataError(f"{record.png_path}: not a readable PNG; delete it to fall back to the DICOM")
        if png.shape != frame_size:
            png = cv2.resize(png, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_AREA)
        return png
    return preprocess_mammogram(read_mammogram(record.dicom_path), frame_size).png


class FrameDataset(Dataset):
    """Model inputs (3, H, W) float32 for a list of records; failures are returned as messages."""

    def __init__(
        self, records: list[ImageRecord], frame_size: tuple[int, int], *, augment: bool = False, seed: int = 0
    ) -> None:
        self.records = records
        self.frame_size = frame_size
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor | None, str | None]:
        record = self.records[i]
        try:
            frame = load_frame(record, self.frame_size)
        except MammoSaeError as error:
            return record.image_id, None, str(error)
        if self.augment:
            frame = augment_frame(frame, self.seed, record.image_id)
        return record.image_id, torch.from_numpy(model_input(frame)), None


def collate_frames(
    items: list[tuple[str, torch.Tensor | None, str | None]],
) -> tuple[list[str], torch.Tensor | None, dict[str, str]]:
    """Stack the images that loaded; report the others by image_id."""
    ids = [image_id for image_id, pixels, _ in items if pixels is not None]
    errors = {image_id: error for image_id, pixels, error in items if pixels is None}
    pixels = torch.stack([p for _, p, _ in items if p is not None]) if ids else None
    return ids, pixels, errors
