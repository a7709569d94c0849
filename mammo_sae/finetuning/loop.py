"""The fine-tuning loop: class-weighted BCE, AdamW with warm-up + cosine, mixed precision, optional weight
EMA, validation AUROC each epoch, best checkpoint kept, resumable from ``checkpoint.pt`` (written atomically
every epoch)."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mammo_sae import __version__
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.distributed import LOCAL, device_for
from mammo_sae.core.hashing import sha256_json, strict_json_text
from mammo_sae.core.metrics import auprc, auroc, undefined_reason
from mammo_sae.core.precision import autocast, autocast_dtype
from mammo_sae.core.weightfiles import load_checked, save_checked
from mammo_sae.data.frame_policy import FramePolicy
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.run import feature_shape
from mammo_sae.finetuning.config import FinetuneConfig
from mammo_sae.finetuning.data import (
    FinetuneError,
    FrameCache,
    LabelledFrames,
    finding_boxes,
    make_slices,
    positive_weights,
)
from mammo_sae.finetuning.token_heads import token_head as make_token_head
from mammo_sae.models import Classifier, create_backbone, load_classifier, save_classifier

CHECKPOINT, CLASSIFIER, METRICS, VALIDATION = (
    "checkpoint.pt",
    "classifier.safetensors",
    "metrics.jsonl",
    "validation.json",
)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def inert_knobs(config: FinetuneConfig) -> set[str]:
    """Knobs that cannot change this run's weights: where and how it runs, and options of a mode that is off
    (so adding such options later does not orphan the checkpoints of runs that never used them)."""
    inert = {"out", "workers", "device", "resume", "progress", "cache_gb"}
    if config.crop is None:
        inert |= {"crop", "crops_per_image", "lesion_crop_fraction"}
    if config.box_weight == 0:
        inert.add("box_head")
    if config.ema_decay == 0:
        inert.add("ema_decay")
    return inert


def run_identity(config: FinetuneConfig, frames: FramePolicy | None = None) -> str:
    """What a checkpoint must match to be resumed: every knob that changes the weights, with ``--frames``
    as resolved for the root (``auto`` that now finds PNGs is another run)."""
    ignored = inert_knobs(config)
    knobs = {k: v for k, v in asdict(config).items() if k not in ignored}
    if frames is not None:
        knobs["frames"] = frames.source
    return sha256_json({"config": knobs, "version": __version__})


@torch.inference_mode()
def evaluate(
    model: Classifier, loader: DataLoader, tasks: tuple[str, ...], device: torch.device
) -> dict[str, Any]:
    model.eval()
    logits, targets = [], []
    for pixels, y, _ in loader:
        out = model(pixels.to(device, memory_format=torch.channels_last))
        logits.append(torch.cat([out[t].float() for t in tasks], dim=1).cpu().numpy())
        targets.append(y.numpy())
    scores, labels = np.concatenate(logits), np.concatenate(targets).astype(np.int64)
    per_task = {
        task: {
            "auroc": auroc(labels[:, h], scores[:, h]),
            "auprc": auprc(labels[:, h], scores[:, h]),
            "positives": int(labels[:, h].sum()),
        }
        for h, task in enumerate(tasks)
    }
    undefined = {
        task: reason
        for h, task in enumerate(tasks)
        if (reason := undefined_reason(len(labels), int(labels[:, h].sum()))) is not None
    }
    finite = [
        v["auroc"] for task, v in per_task.items() if task not in undefined and not math.isnan(v["auroc"])
    ]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(scores), torch.from_numpy(labels).float()
    )
    mean_auroc = float(np.mean(finite)) if finite else float("nan")
    return {
        "tasks": per_task,
        "mean_auroc": mean_auroc,
        "loss": float(loss),
        # the best epoch has the highest mean AUROC of the heads the slice defines; a slice that defines none
        # falls back to the lowest loss
        "selection": mean_auroc if finite else -float(loss),
        "undefined": undefined,  # head -> "no positives" / "no negatives" in the validation slice
        "images": len(labels),
    }


def validation_warnings(labels: pd.DataFrame, image_ids: list[str], tasks: tuple[str, ...]) -> list[str]:
    """A warning per head whose validation slice lacks a class: its AUROC cannot judge an epoch, so the best
    epoch is chosen by the heads the slice defines (or by the loss when it defines none)."""
    if not image_ids:
        return []
    y = labels.loc[image_ids, list(tasks)].to_numpy()
    reasons = {t: undefined_reason(len(y), int(y[:, h].sum())) for h, t in enumerate(tasks)}
    defined = [t for t, reason in reasons.items() if reason is None]
    judge = f"the mean validation AUROC of {', '.join(defined)}" if defined else "the lowest validation loss"
    return [
        f"the validation slice ({len(y)} images) has {reason} for the {task} head: its AUROC is undefined, so "
        f"the best epoch is chosen by {judge}; give more validation studies (--validation-fraction) for a "
        "slice with both classes"
        for task, reason in reasons.items()
        if reason is not None
    ]


def build_model(config: FinetuneConfig) -> Classifier:
    torch.manual_seed(config.seed)
    backbone = create_backbone(config.backbone)
    model = Classifier.create(backbone, {task: 1 for task in config.task_names})
    if config.init is not None:
        start = load_classifier(config.init)
        if start.backbone.architecture != backbone.architecture or set(start.tasks) != set(model.tasks):
            raise FinetuneError(
                f"--init {config.init} is a {start.backbone.architecture} classifier for {list(start.tasks)}; this run "
                f"trains {backbone.architecture} for {list(model.tasks)}"
            )
        model.load_state_dict(start.state_dict())
    if not config.train_backbone:
        backbone.requires_grad_(False)
    return model


def balanced_token_loss(logits_bkhw: torch.Tensor, targets_bkhw: torch.Tensor) -> torch.Tensor:
    """Per-token BCE with positive and negative tokens weighted equally (lesions cover few tokens)."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits_bkhw.float(), targets_bkhw, reduction="none"
    )
    positive = targets_bkhw > 0.5
    negative_part = loss[~positive].mean() if bool((~positive).any()) else loss.new_zeros(())
    positive_part = loss[positive].mean() if bool(positive.any()) else loss.new_zeros(())
    return 0.5 * (positive_part + negative_part)


def weight_average(model: Classifier, decay: float) -> AveragedModel | None:
    """An EMA copy of ``model`` (buffers averaged too, so BatchNorm statistics match), or None for decay 0."""
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _optimizer(
    model: Classifier, config: FinetuneConfig, token_head: torch.nn.Module | None
) -> torch.optim.AdamW:
    groups = [{"params": list(model.heads.parameters()), "lr": config.lr}]
    if token_head is not None:
        groups.append({"params": list(token_head.parameters()), "lr": config.lr})
    if config.train_backbone:
        groups.append({"params": list(model.backbone.parameters()), "lr": config.backbone_lr})
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Train (or resume) and return a JSON summary; the best epoch's classifier is in out/classifier.safetensors."""
    config.validate()
    started = time.perf_counter()
    out = Path(config.out)
    device = device_for(LOCAL, config.device)
    tasks = config.task_names
    index = VindrIndex.load(config.data)
    frames = FramePolicy.resolve(config.frames, index, config.frame_size)
    slices = make_slices(index, tasks, config.validation_fraction, config.seed, config.limit, frames)
    warnings = validation_warnings(slices.labels, [r.image_id for r in slices.validation], tasks)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    model = build_model(config)
    boxes, grid, token_head = None, None, None
    if config.box_weight > 0 or config.crop is not None:
        boxes = finding_boxes(index, tasks)
    if config.box_weight > 0:
        _, gh, gw = feature_shape(
            model.backbone, model.backbone.default_layer, config.crop or config.frame_size
        )
        grid = (gh, gw)
        token_head = make_token_head(config.box_head, model, tasks).to(device)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config, token_head)
    ema = weight_average(model, config.ema_decay)
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(config, frames)
    state = _resume_state(out / CHECKPOINT, identity) if config.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if token_head is not None:
            token_head.load_state_dict(state["token_head"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        _drop_metrics_after(out / METRICS, state["epoch"])
    elif (out / METRICS).exists():
        (out / METRICS).unlink()  # a fresh run starts a fresh log

    frame_bytes = config.frame_size[0] * config.frame_size[1] * (len(slices.train) + len(slices.validation))
    cache = None
    finished = state is not None and state["epoch"] + 1 >= config.epochs
    if frame_bytes <= config.cache_gb * 2**30 and not finished:  # a finished run decodes nothing
        cache = FrameCache(slices.train + slices.validation, config.frame_size, config.workers, boxes)
    common = {"cache": cache}
    train_set = LabelledFrames(
        slices.train,
        slices.labels,
        tasks,
        config.frame_size,
        augment=config.augment,
        seed=config.seed,
        grid=grid,
        boxes=boxes,
        crop=config.crop,
        crops_per_image=config.crops_per_image,
        lesion_crop_fraction=config.lesion_crop_fraction,
        **common,
    )
    val_set = LabelledFrames(slices.validation, slices.labels, tasks, config.frame_size, **common)
    workers = config.workers  # with a cache, workers only augment (the frames are shared by fork)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        generator=generator,
        drop_last=len(train_set) > config.batch_size,
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size, num_workers=workers)
    # crops are sampled around findings as often as not, so their classes are near balance already
    pos_weight = (
        torch.ones(len(tasks))
        if config.crop is not None
        else positive_weights(slices.labels, train_set.records, tasks)
    ).to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    steps_per_epoch = len(train_loader)
    total, warmup = (
        steps_per_epoch * config.epochs,
        max(1, int(config.warmup_fraction * steps_per_epoch * config.epochs)),
    )
    amp_dtype = autocast_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    first_epoch = state["epoch"] + 1 if state else 0
    best = state["best"] if state else {"selection": -math.inf, "epoch": None}
    step = first_epoch * steps_per_epoch
    for epoch in range(first_epoch, config.epochs):
        model.train()
        if not config.train_backbone:
            model.backbone.eval()  # a linear probe keeps the encoder's BatchNorm statistics
        train_set.epoch = epoch
        # order, dropout and augmentation of an epoch depend on (seed, epoch) only, so a resumed run
        # retraces the uninterrupted one
        generator.manual_seed(config.seed * 1_000_003 + epoch)
        torch.manual_seed(config.seed * 1_000_033 + epoch)
        losses = []
        with tqdm(
            train_loader, desc=f"finetune epoch {epoch + 1}/{config.epochs}", disable=not config.progress
        ) as bar:
            for pixels, targets, token_targets in bar:
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * lr_factor(step, total, warmup)
                with autocast(device, amp_dtype):
                    fmap = model.forward_features(pixels.to(device, memory_format=torch.channels_last))
                    out_logits = model.forward_head(fmap)
                    logits = torch.cat([out_logits[t] for t in tasks], dim=1)
                    token_logits = token_head(fmap) if token_head is not None else None
                loss = loss_fn(logits.float(), targets.to(device))
                if token_logits is not None:
                    loss = loss + config.box_weight * balanced_token_loss(
                        token_logits, token_targets.to(device)
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                losses.append(float(loss.detach()))
                step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        judged = model if ema is None else ema.module  # the weights that are validated and saved
        validation = evaluate(judged, val_loader, tasks, device)
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), **validation}
        with open(out / METRICS, "a") as log:
            log.write(strict_json_text(record, indent=None) + "\n")
        if validation["selection"] > best["selection"]:
            best = {"selection": validation["selection"], "epoch": epoch, "validation": validation}
            save_classifier(judged.eval(), out / CLASSIFIER)
            atomic_write_text(
                out / VALIDATION,
                strict_json_text(best | {"warnings": warnings, "config": asdict(config)}) + "\n",
            )
        save_checked(
            {
                "identity": identity,
                "epoch": epoch,
                "best": best,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "token_head": token_head.state_dict() if token_head is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
            },
            out / CHECKPOINT,
        )
    assert best["epoch"] is not None, "every epoch is evaluated"
    return {
        "classifier": str(out / CLASSIFIER),
        "best_epoch": best["epoch"],
        "validation": best.get("validation"),
        "train_images": len(train_set),
        "validation_images": len(val_set),
        "frames": frames.to_json(),
        "skipped": len(slices.skipped) + (len(cache.errors) if cache else 0),
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _drop_metrics_after(path: Path, epoch: int) -> None:
    """Keep the metrics lines up to ``epoch``: a kill after an epoch's line but before its checkpoint makes
    the resumed run redo (and log) that epoch again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut by the kill
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _resume_state(path: Path, identity: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = load_checked(path, repair=f"delete it (rm -f {path}) to start over", error=FinetuneError)
    if state.get("identity") != identity:
        raise FinetuneError(
            f"{path} belongs to a run with other settings; delete it, choose another --out, or pass --no-resume"
        )
    return state
