"""The knobs of `python -m mammo_sae.extract` (light: no torch, so `--help` is fast)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mammo_sae.core.config_cli import REQUIRED, flag_name, hw_size, knob
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.data.frame_policy import FRAMES, FRAMES_HELP, SPLITS
from mammo_sae.data.preprocess import FRAME_HEIGHT, FRAME_WIDTH

DTYPES = {"fp16": np.float16, "fp32": np.float32}


class ExtractError(MammoSaeError):
    """The extraction was asked for something it cannot do (bad flags, no images, wrong layer)."""


@dataclass(frozen=True)
class ExtractConfig:
    """Every knob of `python -m mammo_sae.extract`."""

    data: str = knob(REQUIRED, "VinDr-Mammo layout root (real release or phantoms)")
    out: str = knob(REQUIRED, "parent folder of stores; the store is a sub-folder named by its content hash")
    backbone: str | None = knob(None, "backbone spec: timm:NAME[:WEIGHTS] or mammoclip-b5:CHECKPOINT")
    classifier: str | None = knob(None, "classifier file; its own (fine-tuned) backbone weights are used")
    layer: str | None = knob(None, "layer to read (default: the backbone's head output, the paper's layer)")
    split: str = knob("training", "which split to extract", choices=SPLITS)
    tokens_per_image: float = knob(0.25, "fraction of each image's tokens to keep (the paper: 0.25)")
    augment: bool = knob(False, "flip / affine / elastic augmentation of each image (deterministic per seed)")
    limit: int | None = knob(None, "only the first N images of the split")
    frame_size: tuple[int, int] = knob(
        (FRAME_HEIGHT, FRAME_WIDTH), "model frame height x width", parse=hw_size, metavar="HxW"
    )
    frames: str = knob("auto", FRAMES_HELP, choices=FRAMES)
    batch_size: int = knob(4, "images per forward pass")
    workers: int = knob(2, "DataLoader processes decoding and preprocessing images")
    images_per_shard: int = knob(64, "images per shard (the unit of commit, resume and work split)")
    device: str = knob("cpu", "where the backbone runs", choices=("cpu", "cuda"))
    dtype: str = knob("fp16", "storage precision of the tokens", choices=tuple(DTYPES))
    seed: int = knob(0, "seed of token sampling and augmentation")
    progress: bool = knob(True, "show a progress bar")

    def validate(self) -> ExtractConfig:
        if (self.backbone is None) == (self.classifier is None):
            raise ExtractError("give exactly one of --backbone SPEC or --classifier FILE")
        for name in ("batch_size", "images_per_shard"):
            if getattr(self, name) < 1:
                raise ExtractError(f"{flag_name(name)} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ExtractError(f"--workers must be >= 0, got {self.workers}")
        if not 0.0 < self.tokens_per_image <= 1.0:
            raise ExtractError(f"--tokens-per-image must be in (0, 1], got {self.tokens_per_image}")
        return self
