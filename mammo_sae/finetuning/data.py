"""Fine-tuning data: a study-level validation slice, labels, and frames (cached in memory when small).

Validation holds out whole studies (all four views), so no breast is seen in both slices. Frames are the
frame policy's (:mod:`mammo_sae.data.frame_policy`), with or without box supervision, so a classifier sees
the pixels that extraction and analysis feed it; when the whole training set fits in ``cache_bytes`` they
are decoded once and kept as uint8, otherwise decoded every epoch by the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.csv_tables import BOX_COLUMNS, RESIZED_BOX_COLUMNS
from mammo_sae.data.frame_policy import FramePolicy, ImageRecord, boxes_in_frame, mapped_frame, model_frame
from mammo_sae.data.preprocess import model_input
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.augment import augment_frame
from mammo_sae.extraction.tokens import image_rng
from mammo_sae.finetuning.crops import box_masks, crop_labels, pick_crop, token_grid_targets


class FinetuneError(MammoSaeError):
    """Fine-tuning was asked for something it cannot do (bad flags, no positives, unreadable data)."""


@dataclass(frozen=True)
class Slices:
    train: list[ImageRecord]
    validation: list[ImageRecord]
    labels: pd.DataFrame  # index image_id, one 0/1 column per task
    skipped: dict[str, str]
    frames: FramePolicy


def make_slices(
    index: VindrIndex,
    tasks: tuple[str, ...],
    validation_fraction: float,
    seed: int,
    limit: int | None,
    frames: FramePolicy,
) -> Slices:
    """Training-split images (framed as ``frames`` says) divided by study into a training and a validation
    slice."""
    unknown = [t for t in tasks if t not in index.categories]
    if unknown:
        raise FinetuneError(
            f"tasks {unknown} are not label columns of this dataset; known: {list(index.categories)}"
        )
    records, skipped = frames.select(index, "training", limit)
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
    return Slices(train, validation, labels, skipped, frames)


def positive_weights(
    labels: pd.DataFrame, records: list[ImageRecord], tasks: tuple[str, ...]
) -> torch.Tensor:
    """Per task: negatives / positives on the training slice (Mammo-CLIP's class weighting)."""
    values = labels.loc[[r.image_id for r in records], list(tasks)].to_numpy()
    positives = values.sum(axis=0)
    return torch.tensor((len(values) - positives) / positives, dtype=torch.float32)


def frame_with_boxes(
    record: ImageRecord, frame_size: tuple[int, int], boxes: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The uint8 frame of a record and, when ``boxes`` (task -> [n, 8] from :func:`finding_boxes`) is
    given, those boxes moved into the frame through the frame's transform (the frame is the same either
    way); boxes that cannot be placed (a PNG frame without Mammo-CLIP boxes) are dropped."""
    if boxes is None:
        return model_frame(record, frame_size), {}
    mapped = mapped_frame(record, frame_size)
    placed = {}
    for task, both in boxes.items():
        frame_boxes = boxes_in_frame(mapped.transform, both[:, :4], both[:, 4:])
        placed[task] = frame_boxes[~np.isnan(frame_boxes).any(axis=1)]
    return mapped.pixels, placed


def finding_boxes(index: VindrIndex, tasks: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
    """image_id -> task -> [n, 8] boxes of that task's findings: xmin..ymax in original pixels, then the
    Mammo-CLIP CSV's resized boxes (NaN without that CSV), for frames mapped onto a PNG."""
    findings = index.findings[index.findings["has_box"]]
    resized = [c for c in RESIZED_BOX_COLUMNS if c in findings]
    out: dict[str, dict[str, np.ndarray]] = {}
    for image_id, rows in findings.groupby("image_id"):
        both = np.full((len(rows), 8), np.nan)
        both[:, :4] = rows[list(BOX_COLUMNS)].to_numpy(np.float64)
        if len(resized) == 4:
            both[:, 4:] = rows[resized].to_numpy(np.float64)
        out[str(image_id)] = {task: both[(rows[task] == 1).to_numpy()] for task in tasks}
    return out


class FrameCache:
    """uint8 frames (and frame-space boxes) of a list of records, decoded once in worker processes."""

    def __init__(
        self,
        records: list[ImageRecord],
        frame_size: tuple[int, int],
        workers: int,
        boxes: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.index = {r.image_id: i for i, r in enumerate(records)}
        self.frames = np.zeros((len(records), *frame_size), dtype=np.uint8)
        self.boxes: list[dict[str, np.ndarray]] = [{} for _ in records]
        self.errors: dict[str, str] = {}
        loader = torch.utils.data.DataLoader(
            _Decode(records, frame_size, boxes),
            batch_size=1,
            num_workers=workers,
            collate_fn=lambda items: items[0],
        )
        for i, (frame, frame_boxes, error) in enumerate(loader):
            if error is None:
                self.frames[i], self.boxes[i] = frame, frame_boxes
            else:
                self.errors[records[i].image_id] = error


class _Decode(Dataset):
    def __init__(
        self,
        records: list[ImageRecord],
        frame_size: tuple[int, int],
        boxes: dict[str, dict[str, np.ndarray]] | None,
    ) -> None:
        self.records, self.frame_size, self.boxes = records, frame_size, boxes

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, dict[str, np.ndarray], str | None]:
        record = self.records[i]
        wanted = None if self.boxes is None else self.boxes.get(record.image_id, {})
        try:
            frame, boxes = frame_with_boxes(record, self.frame_size, wanted)
            return frame, boxes, None
        except MammoSaeError as error:
            return None, {}, str(error)


class LabelledFrames(Dataset):
    """(model input (3, H, W), labels [tasks], token targets [tasks, gh, gw] or an empty tensor) per item;
    augmented per (seed, epoch, image). Token targets exist when ``grid`` is given (box supervision).

    With ``crop`` (height, width), each record gives ``crops_per_image`` items: crops picked and labelled
    from the boxes (:mod:`mammo_sae.finetuning.crops`), with ``grid`` the crop's token grid.
    """

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
        grid: tuple[int, int] | None = None,
        boxes: dict[str, dict[str, np.ndarray]] | None = None,
        crop: tuple[int, int] | None = None,
        crops_per_image: int = 1,
        lesion_crop_fraction: float = 0.5,
    ) -> None:
        assert crop is None or boxes is not None, "crops are labelled from the boxes"
        self.records = [r for r in records if cache is None or r.image_id not in cache.errors]
        self.targets = labels.loc[[r.image_id for r in self.records], list(tasks)].to_numpy(np.float32)
        self.tasks, self.frame_size, self.cache, self.augment, self.seed = (
            tasks,
            frame_size,
            cache,
            augment,
            seed,
        )
        self.grid, self.boxes = grid, boxes
        self.crop, self.crops_per_image, self.lesion_crop_fraction = (
            crop,
            crops_per_image,
            lesion_crop_fraction,
        )
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records) * (self.crops_per_image if self.crop else 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, crop_number = divmod(i, self.crops_per_image) if self.crop else (i, 0)
        record = self.records[i]
        if self.cache is not None:
            k = self.cache.index[record.image_id]
            frame, boxes = self.cache.frames[k], self.cache.boxes[k]
        else:
            wanted = None if self.boxes is None else self.boxes.get(record.image_id, {})
            frame, boxes = frame_with_boxes(record, self.frame_size, wanted)
        augment = (self.seed * 100_003 + self.epoch, record.image_id) if self.augment else None
        if augment is not None:
            frame = augment_frame(frame, *augment)
        labels = self.targets[i]
        masks = None
        if self.grid is not None or self.crop is not None:
            masks = box_masks(self.frame_size, boxes, self.tasks, augment)
        if self.crop is not None:
            assert masks is not None
            rng = image_rng(self.seed * 100_003 + self.epoch, record.image_id, f"crop {crop_number}")
            y0, x0 = pick_crop(frame, masks, self.crop, self.lesion_crop_fraction, rng)
            labels = crop_labels(masks, y0, x0, self.crop)
            window = (slice(y0, y0 + self.crop[0]), slice(x0, x0 + self.crop[1]))
            frame, masks = frame[window], masks[(slice(None), *window)]
        tokens = torch.zeros(0)
        if self.grid is not None:
            assert masks is not None
            tokens = torch.from_numpy(token_grid_targets(masks, self.grid))
        return torch.from_numpy(model_input(np.ascontiguousarray(frame))), torch.from_numpy(labels), tokens
