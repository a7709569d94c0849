"""Analysis inputs: each image as a model input together with its map back to original pixels.

Analysis needs the :class:`~mammo_sae.data.frames.FrameTransform` of every image (to put latent maps,
patches and boxes in original pixels), so it preprocesses the DICOM even where a Mammo-CLIP PNG exists:
the preprocessing is the same bit for bit. Transforms travel as compact JSON strings (run-length kept
indices) so they fit a parquet column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.dicom import read_mammogram
from mammo_sae.data.frames import AxisMap, FrameTransform
from mammo_sae.data.preprocess import model_input, preprocess_mammogram


def encode_runs(kept: np.ndarray) -> list[int]:
    """Sorted indices -> [start, stop, start, stop, ...] of their contiguous runs."""
    kept = np.asarray(kept, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(kept) != 1)
    starts = np.concatenate([[kept[0]], kept[breaks + 1]])
    stops = np.concatenate([kept[breaks] + 1, [kept[-1] + 1]])
    return [int(v) for pair in zip(starts, stops, strict=True) for v in pair]


def decode_runs(runs: list[int]) -> np.ndarray:
    assert len(runs) % 2 == 0 and runs, "runs come in (start, stop) pairs"
    return np.concatenate(
        [np.arange(a, b, dtype=np.int64) for a, b in zip(runs[::2], runs[1::2], strict=True)]
    )


def transform_to_json(transform: FrameTransform) -> str:
    axes = {
        name: [axis.offset, axis.size, *encode_runs(axis.kept)]
        for name, axis in (("x", transform.x), ("y", transform.y))
    }
    return json.dumps({"shape": list(transform.original_shape), **axes}, separators=(",", ":"))


def transform_from_json(text: str) -> FrameTransform:
    record = json.loads(text)

    def axis(values: list[int]) -> AxisMap:
        return AxisMap(offset=int(values[0]), size=int(values[1]), kept=decode_runs(values[2:]))

    return FrameTransform(original_shape=tuple(record["shape"]), x=axis(record["x"]), y=axis(record["y"]))


@dataclass(frozen=True)
class AnalysisRecord:
    position: int  # row of the image in the bundle's image table
    image_id: str
    dicom_path: str


FrameItem = tuple[int, torch.Tensor | None, str | None, str | None]


class AnalysisFrames(Dataset):
    """(position, model input (3, H, W) float32, transform JSON, error) per record; failures are messages."""

    def __init__(self, records: list[AnalysisRecord], frame_size: tuple[int, int]) -> None:
        self.records = records
        self.frame_size = frame_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> FrameItem:
        record = self.records[i]
        try:
            prepared = preprocess_mammogram(read_mammogram(record.dicom_path), self.frame_size)
        except MammoSaeError as error:
            return record.position, None, None, str(error)
        pixels = torch.from_numpy(model_input(prepared.png))
        return record.position, pixels, transform_to_json(prepared.transform), None


def collate_analysis(
    items: list[FrameItem],
) -> tuple[list[int], torch.Tensor | None, list[str], dict[int, str]]:
    """Stack the images that loaded; report the others by position."""
    loaded = [item for item in items if item[1] is not None]
    errors = {position: str(error) for position, pixels, _, error in items if pixels is None}
    pixels = torch.stack([item[1] for item in loaded]) if loaded else None
    return [item[0] for item in loaded], pixels, [str(item[2]) for item in loaded], errors
