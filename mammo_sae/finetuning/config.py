"""Every knob of `python -m mammo_sae.finetune`, with its default and help text."""

from __future__ import annotations

from dataclasses import dataclass

from mammo_sae.core.config_cli import REQUIRED, flag_name, hw_size, knob, resume_knob
from mammo_sae.data.frame_policy import FRAMES, FRAMES_HELP
from mammo_sae.data.preprocess import FRAME_HEIGHT, FRAME_WIDTH
from mammo_sae.finetuning.data import FinetuneError
from mammo_sae.finetuning.token_heads import BOX_HEADS


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of `python -m mammo_sae.finetune`."""

    data: str = knob(
        REQUIRED, "VinDr-Mammo layout root (real release or phantoms); trains on its training split"
    )
    out: str = knob(
        REQUIRED, "output folder: classifier.safetensors, metrics.jsonl, validation.json, checkpoint.pt"
    )
    backbone: str = knob(REQUIRED, "backbone spec: timm:NAME[:WEIGHTS] or mammoclip-b5:CHECKPOINT")
    tasks: str = knob("mass,calcification", "comma-separated label columns, one binary head each")
    init: str | None = knob(
        None,
        "start from this classifier file's weights (same backbone spec and tasks), e.g. a lower-resolution run",
    )
    train_backbone: bool = knob(True, "fine-tune the backbone too (--no-train-backbone: linear probe)")
    frame_size: tuple[int, int] = knob(
        (FRAME_HEIGHT, FRAME_WIDTH), "model frame height x width", parse=hw_size, metavar="HxW"
    )
    frames: str = knob("auto", FRAMES_HELP, choices=FRAMES)
    epochs: int = knob(10, "passes over the training slice")
    batch_size: int = knob(8, "images per optimiser step")
    lr: float = knob(1e-3, "AdamW learning rate of the heads")
    backbone_lr: float = knob(1e-4, "AdamW learning rate of the backbone")
    weight_decay: float = knob(1e-4, "AdamW weight decay")
    warmup_fraction: float = knob(0.05, "fraction of all steps spent warming the learning rate up linearly")
    augment: bool = knob(True, "flip / affine / elastic augmentation of training frames")
    ema_decay: float = knob(
        0.0,
        "validate and save an exponential moving average of the weights (BatchNorm statistics included) "
        "updated after every step with this decay, e.g. 0.995; 0 = the raw weights",
    )
    box_weight: float = knob(
        0.0,
        "weight of an auxiliary per-token loss on the finding boxes (tokens scored as --box-head says); "
        "0 = image labels only, as Mammo-CLIP's classifiers",
    )
    box_head: str = knob(
        "separate",
        "what scores the tokens for --box-weight: 'separate' (a 1x1 conv of its own) or 'tied' (the "
        "classification heads themselves, which pulls the classifier's evidence towards the boxes)",
        choices=BOX_HEADS,
    )
    crop: tuple[int, int] | None = knob(
        None,
        "train on crops of this size instead of whole frames (a pre-training stage for a later whole-frame "
        "run with --init): some centred near findings, the rest anywhere in the breast, labelled from the boxes",
        parse=hw_size,
        metavar="HxW",
    )
    crops_per_image: int = knob(4, "crops per training image and epoch (with --crop)")
    lesion_crop_fraction: float = knob(0.5, "share of crops centred near a finding (with --crop)")
    validation_fraction: float = knob(0.15, "fraction of training studies held out to pick the best epoch")
    limit: int | None = knob(None, "only the first N training-split images")
    cache_gb: float = knob(4.0, "keep decoded frames in memory when they fit in this many GB")
    workers: int = knob(2, "DataLoader processes")
    device: str = knob("cpu", "where to train", choices=("cpu", "cuda"))
    amp: bool = knob(
        True, "mixed precision: fp16 on CUDA, bf16 on CPUs with AVX512-BF16 or AMX (fp32 on other CPUs)"
    )
    seed: int = knob(0, "seed of initialisation, slicing, shuffling and augmentation")
    resume: bool = resume_knob()
    progress: bool = knob(True, "show a progress bar")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.tasks.split(",") if t.strip())

    def validate(self) -> FinetuneConfig:
        if not self.task_names:
            raise FinetuneError("--tasks names no label column")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"{flag_name(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "backbone_lr"):
            if not getattr(self, name) > 0:
                raise FinetuneError(f"{flag_name(name)} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup_fraction < 1:
            raise FinetuneError(f"--warmup-fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.crop is not None:
            if not (self.crop[0] <= self.frame_size[0] and self.crop[1] <= self.frame_size[1]):
                raise FinetuneError(
                    f"--crop {self.crop[0]}x{self.crop[1]} must fit in --frame-size "
                    f"{self.frame_size[0]}x{self.frame_size[1]}"
                )
            if self.crops_per_image < 1:
                raise FinetuneError(f"--crops-per-image must be >= 1, got {self.crops_per_image}")
            if not 0 <= self.lesion_crop_fraction <= 1:
                raise FinetuneError(
                    f"--lesion-crop-fraction must be in [0, 1], got {self.lesion_crop_fraction}"
                )
        if not 0 < self.validation_fraction < 1:
            raise FinetuneError(f"--validation-fraction must be in (0, 1), got {self.validation_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise FinetuneError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not self.box_weight >= 0:
            raise FinetuneError(f"--box-weight must be >= 0, got {self.box_weight}")
        if self.workers < 0:
            raise FinetuneError(f"--workers must be >= 0, got {self.workers}")
        return self
