"""Fine-tuning data: a study-level validation slice, labels, and frames (cached in memory when small).

Validation holds out whole studies (all four views), so no breast is seen in both slices. Frames are
the Mammo-CLIP model frames (preprocessing bit-for-bit); when the whole training set fits in
``cache_bytes`` they are decoded once and kept as uint8, otherwise decoded every epoch by the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from mammo_sae.data.preprocess import model_input
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.errors import MammoSaeError
from mammo_sae.extraction.augment import augment_frame
from mammo_sae.extraction.images import ImageRecord, load_frame, select_records
from mammo_sae.extraction.tokens import image_rng


class FinetuneError(MammoSaeError):
    """Fine-tuning was asked for something it cannot do (bad flags, no positives, unreadable data)."""


@dataclass(frozen=True)
class Slices:
    train: list[ImageRecord]
    validation: list[ImageRecord]
    labels: pd.DataFrame  # index image_id, one 0/1 column per task
    skipped: dict[str, str]


def make_slices(
    index: VindrIndex, tasks: tuple[str, ...], validation_fraction: float, seed: int, limit: int | None
) -> Slices:
    """Training-split images divided by study into a training and a validation slice."""
    unknown = [t for t in tasks if t not in index.categories]
    if unknown:
        raise FinetuneError(
            f"tasks {unknown} are not label columns of this dataset; known: {list(index.categories)}"
        )
    records, skipped = select_records(index, "training", limit)
    if not records:
        raise FinetuneError("the training split has no readable images")
    studies = index.images.set_index("image_id")["study_id"]
    unique = sorted({studies[r.image_id] for r in records})
    rng = image_rng(seed, "studies", "validation")
    n_val = round(validation_fraction * len(unique))
    if validation_fraction > 0 and n_val == 0:
        n_val = 1
    held = set(rng.permutation(unique)[:n_val].tolist())
    labels = index.images.set_index("image_id")[list(tasks)].astype(np.int64)
    train = [r for r in records if studies[r.image_id] not in held]
    validation = [r for r in records if studies[r.image_id] in held]
    for task in tasks:
        positives = int(labels.loc[[r.image_id for r in train], task].sum())
        if positives == 0 or positives == len(train):
            raise FinetuneError(
                f"the training slice has {positives} {task}-positive images of {len(train)}: both classes are needed"
            )
    return Slices(train, validation, labels, skipped)


def positive_weights(
    labels: pd.DataFrame, records: list[ImageRecord], tasks: tuple[str, ...]
) -> torch.Tensor:
    """Per task: negatives / positives on the training slice (Mammo-CLIP's class weighting)."""
    values = labels.loc[[r.image_id for r in records], list(tasks)].to_numpy()
    positives = values.sum(axis=0)
    return torch.tensor((len(values) - positives) / positives, dtype=torch.float32)


class FrameCache:
    """uint8 frames of a list of records, decoded once (in worker processes) and kept in memory."""

    def __init__(self, records: list[ImageRecord], frame_size: tuple[int, int], workers: int) -> None:
        self.index = {r.image_id: i for i, r in enumerate(records)}
        self.frames = np.zeros((len(records), *frame_size), dtype=np.uint8)
        self.errors: dict[str, str] = {}
        loader = torch.utils.data.DataLoader(
            _Decode(records, frame_size), batch_size=1, num_workers=workers, collate_fn=lambda items: items[0]
        )
        for i, (frame, error) in enumerate(loader):
            if error is None:
                self.frames[i] = frame
            else:
                self.errors[records[i].image_id] = error


class _Decode(Dataset):
    def __init__(self, records: list[ImageRecord], frame_size: tuple[int, int]) -> None:
        self.records, self.frame_size = records, frame_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, str | None]:
        try:
            return load_frame(self.records[i], self.frame_size), None
        except MammoSaeError as error:
            return None, str(error)


class LabelledFrames(Dataset):
    """(model input (3, H, W), labels [tasks] float) per record; augmented per (seed, epoch, image)."""

    def __init__(
        self,
        records: list[ImageRecord],
        labels: pd.DataFrame,
        tasks: tuple[str, ...],
        frame_size: tuple[int, int],
        *,
        cache: FrameCache | None = None,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.records = [r for r in records if cache is None or r.image_id not in cache.errors]
        self.targets = labels.loc[[r.image_id for r in self.records], list(tasks)].to_numpy(np.float32)
        self.frame_size, self.cache, self.augment, self.seed = frame_size, cache, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[i]
        if self.cache is not None:
            frame = self.cache.frames[self.cache.index[record.image_id]]
        else:
            frame = load_frame(record, self.frame_size)
        if self.augment:
            frame = augment_frame(frame, self.seed * 100_003 + self.epoch, record.image_id)
        return torch.from_numpy(model_input(frame)), torch.from_numpy(self.targets[i])
