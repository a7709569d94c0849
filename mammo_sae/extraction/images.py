"""Loading each selected image as a normalised model input in DataLoader workers.

Which images, and which pixels each gets (the Mammo-CLIP PNG or the preprocessing of its DICOM), is the
frame policy's job (:mod:`mammo_sae.data.frame_policy`); this module only runs it in workers. Images that
cannot be read come back as errors, not exceptions, so one bad file never stops an extraction.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.frame_policy import ImageRecord, model_frame
from mammo_sae.data.preprocess import model_input
from mammo_sae.extraction.augment import augment_frame


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
            frame = model_frame(record, self.frame_size)
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
