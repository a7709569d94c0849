"""The extraction loop: images -> backbone layer -> sampled fp16 tokens -> committed store shards.

Shards are fixed groups of images, so the work splits across torchrun ranks (rank r takes shards
k % world_size == r), resumes after a kill (committed shards are skipped) and yields the same store
whatever the number of processes. Batches never straddle shards, so a shard's numbers do not depend on
which other shards a process handles.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mammo_sae.core.distributed import DistContext, barrier, device_for, gather_objects
from mammo_sae.core.hashing import sha256_file
from mammo_sae.data.frame_policy import FramePolicy, ImageRecord
from mammo_sae.data.vindr import VindrIndex
from mammo_sae.extraction.checks import feature_warnings
from mammo_sae.extraction.config import DTYPES, ExtractConfig, ExtractError
from mammo_sae.extraction.images import FrameDataset, collate_frames
from mammo_sae.extraction.tokens import sample_tokens, tokens_per_image
from mammo_sae.models import Backbone, capture_layer, create_backbone, load_classifier
from mammo_sae.store import StoreWriter

#: bumped when extraction computes different features from the same inputs (it renames every store);
#: a package release that leaves the features alone keeps the stores (the plan records the version)
FEATURES_VERSION = 1


def load_backbone(config: ExtractConfig) -> tuple[Backbone, str | None]:
    """The backbone to read features from, and the sha256 of the classifier file it came from."""
    if config.classifier is not None:
        classifier = load_classifier(config.classifier)
        return classifier.backbone, sha256_file(config.classifier)
    assert config.backbone is not None
    return create_backbone(config.backbone), None


def layer_output(backbone: Backbone, layer: str, pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature map of ``layer`` (the default layer goes through ``forward_features``)."""
    if layer == backbone.default_layer:
        return backbone.forward_features(pixels)
    return capture_layer(backbone, layer, pixels)


def feature_shape(backbone: Backbone, layer: str, frame_size: tuple[int, int]) -> tuple[int, int, int]:
    """(channels, grid height, grid width) of a layer, found on a weightless copy on the meta device."""
    ghost = copy.deepcopy(backbone).to("meta")
    with torch.inference_mode():
        out = layer_output(ghost, layer, torch.empty(1, 3, *frame_size, device="meta"))
    assert out.ndim == 4, f"layer {layer} gives a {out.ndim}-d output, not a feature map"
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def store_identity(
    config: ExtractConfig,
    backbone: Backbone,
    classifier_sha256: str | None,
    layer: str,
    shape: tuple[int, int, int],
    frames: dict[str, Any],
    image_ids: list[str],
) -> dict[str, Any]:
    """Everything that determines a store's content; its hash names the store folder."""
    return {
        "backbone": {
            "architecture": backbone.architecture,
            "weights_sha256": backbone.weights_sha256,
            "classifier_sha256": classifier_sha256,
        },
        "layer": layer,
        "d": shape[0],
        "grid": [shape[1], shape[2]],
        "preprocessing": frames,  # the frame policy (mammo_sae.data.frame_policy): source, recipe, frame size
        "dtype": np.dtype(DTYPES[config.dtype]).name,
        "sampling": {
            "tokens_per_image": config.tokens_per_image,
            "seed": config.seed,
            "augment": config.augment,
        },
        "split": config.split,
        "images_sha256": hashlib.sha256("\n".join(image_ids).encode()).hexdigest(),
        "features_version": FEATURES_VERSION,
    }


def shard_batches(
    writer: StoreWriter, shards: list[int], positions: dict[str, int], batch_size: int
) -> list[list[int]]:
    """Dataset positions batched shard by shard (a batch never mixes two shards)."""
    batches = []
    for shard in shards:
        members = [positions[image_id] for image_id in writer.shard_images(shard) if image_id in positions]
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return batches


@dataclass
class ShardBuffer:
    """Tokens of the shard being filled, until all its images have passed."""

    shard: int
    expected: set[str]
    features: list[np.ndarray]
    rows: list[pd.DataFrame]
    skipped: dict[str, str]

    @property
    def complete(self) -> bool:
        return not self.expected


def run_extraction(config: ExtractConfig, context: DistContext) -> dict[str, Any]:
    """Extract the configured split into a store; returns this run's JSON-ready summary (rank 0: whole)."""
    config.validate()
    started = time.perf_counter()
    index = VindrIndex.load(config.data)
    policy = FramePolicy.resolve(config.frames, index, config.frame_size)
    records, missing = policy.select(index, config.split, config.limit)
    if not records:
        raise ExtractError(f"no readable images in split {config.split!r} of {config.data}")
    device = device_for(context, config.device)
    backbone, classifier_sha = load_backbone(config)
    layer = config.layer or backbone.default_layer
    shape = feature_shape(backbone, layer, config.frame_size)
    backbone = backbone.to(device).eval().to(memory_format=torch.channels_last)

    image_ids = [record.image_id for record in records]
    identity = store_identity(
        config, backbone, classifier_sha, layer, shape, policy.identity(records), image_ids
    )
    labels = index.images.set_index("image_id")[list(index.categories)]

    def open_writer() -> StoreWriter:
        return StoreWriter.create_or_resume(
            config.out,
            identity,
            image_ids,
            images_per_shard=config.images_per_shard,
            label_columns=list(index.categories),
        )

    # rank 0 creates the folder and its plan; the others open it once it exists
    writer = open_writer() if context.is_main else None
    barrier(context)
    writer = writer or open_writer()
    pending = writer.pending_shards(rank=context.rank, world_size=context.world_size)
    positions = {record.image_id: i for i, record in enumerate(records)}
    written = _extract_shards(
        config, context, writer, records, positions, pending, backbone, layer, shape, labels, device
    )
    barrier(context)
    counts = gather_objects(context, written)
    summary: dict[str, Any] = {"rank": context.rank, "shards_written": written["shards"]}
    if context.is_main:
        warnings = feature_warnings(writer.path, writer.shard_ids())
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        reader = writer.finalize(warnings=warnings)
        skipped = {**missing, **{k: v for c in counts for k, v in c["skipped"].items()}}
        if reader.n_images == 0:
            example = next(iter(skipped.items()), ("-", "no image selected"))
            raise ExtractError(
                f"no image could be read ({len(skipped)} skipped, e.g. {example[0]}: {example[1]}); "
                f"the store {writer.path} holds nothing: check --data and the images it lists"
            )
        images = sum(c["images"] for c in counts)
        seconds = time.perf_counter() - started
        summary = {
            "store": str(writer.path),
            "backbone": backbone.spec,
            "layer": layer,
            "frames": policy.to_json(),
            "d": shape[0],
            "grid": [shape[1], shape[2]],
            "tokens_per_image": tokens_per_image((shape[1], shape[2]), config.tokens_per_image),
            "images_in_store": reader.n_images,
            "tokens_in_store": reader.n_tokens,
            "images_this_run": images,
            "shards_this_run": sum(c["shards"] for c in counts),
            "shards_resumed": len(writer.shard_ids()) - sum(c["shards"] for c in counts),
            "skipped": skipped,
            "warnings": warnings,
            "processes": context.world_size,
            "seconds": round(seconds, 2),
            "images_per_second": round(images / seconds, 3) if seconds > 0 else None,
        }
    return summary


def _extract_shards(
    config: ExtractConfig,
    context: DistContext,
    writer: StoreWriter,
    records: list[ImageRecord],
    positions: dict[str, int],
    pending: list[int],
    backbone: Backbone,
    layer: str,
    shape: tuple[int, int, int],
    labels: pd.DataFrame,
    device: torch.device,
) -> dict[str, Any]:
    batches = shard_batches(writer, pending, positions, config.batch_size)
    dataset = FrameDataset(records, config.frame_size, augment=config.augment, seed=config.seed)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=config.workers,
        collate_fn=collate_frames,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    grid = (shape[1], shape[2])
    store_dtype = DTYPES[config.dtype]
    done = {"shards": 0, "images": 0, "skipped": {}}
    queue = iter(pending)
    buffer = _next_buffer(writer, queue, positions)
    bar = tqdm(
        total=sum(len(b) for b in batches),
        unit="img",
        disable=not config.progress,
        desc=f"extract[{context.rank}]" if context.active else "extract",
        position=context.rank,
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast, bar:
        for ids, pixels, errors in loader:
            features = None
            if pixels is not None:
                pixels = pixels.to(device, non_blocking=True).to(memory_format=torch.channels_last)
                fmap = layer_output(backbone, layer, pixels)
                features = fmap.float().flatten(2).transpose(1, 2).cpu().numpy()  # (B, H*W, C)
            for position, image_id in enumerate(ids):
                chosen = sample_tokens(grid, config.tokens_per_image, config.seed, image_id)
                tokens = features[position, chosen]
                _check_range(tokens, store_dtype, image_id)
                buffer.features.append(tokens.astype(store_dtype))
                buffer.rows.append(_index_rows(image_id, chosen, grid, labels))
                buffer.expected.discard(image_id)
            for image_id, error in errors.items():
                buffer.skipped[image_id] = error
                buffer.expected.discard(image_id)
            bar.update(len(ids) + len(errors))
            done["images"] += len(ids)
            while buffer is not None and buffer.complete:
                _commit(writer, buffer, shape[0], store_dtype)
                done["shards"] += 1
                done["skipped"].update(buffer.skipped)
                buffer = _next_buffer(writer, queue, positions)
    assert buffer is None, "every pending shard must have been committed"
    return done


def _check_range(tokens: np.ndarray, dtype: type, image_id: str) -> None:
    """Refuse tokens that the storage type cannot hold, before they are cast to inf."""
    if not np.isfinite(tokens).all():
        raise ExtractError(f"image {image_id}: the backbone produced NaN or inf features; check its weights")
    largest = float(np.abs(tokens).max(initial=0.0))
    if largest > float(np.finfo(dtype).max):
        raise ExtractError(
            f"image {image_id}: features reach {largest:.3g}, beyond the {np.dtype(dtype).name} range; "
            "store them with --dtype fp32, or check the backbone's weights (random weights can do this)"
        )


def _next_buffer(writer: StoreWriter, queue: Iterator[int], positions: dict[str, int]) -> ShardBuffer | None:
    shard = next(queue, None)
    if shard is None:
        return None
    expected = {image_id for image_id in writer.shard_images(shard) if image_id in positions}
    return ShardBuffer(shard, expected, [], [], {})


def _index_rows(
    image_id: str, chosen: np.ndarray, grid: tuple[int, int], labels: pd.DataFrame
) -> pd.DataFrame:
    rows = pd.DataFrame({"image_id": image_id, "row": chosen // grid[1], "col": chosen % grid[1]})
    for name, value in labels.loc[image_id].items():
        rows[name] = value
    return rows


def _commit(writer: StoreWriter, buffer: ShardBuffer, d: int, dtype: type) -> None:
    if buffer.features:
        features = np.concatenate(buffer.features)
        index = pd.concat(buffer.rows, ignore_index=True)
    else:
        features = np.zeros((0, d), dtype=dtype)
        index = pd.DataFrame(
            {"image_id": pd.Series(dtype=str), "row": pd.Series(dtype=int), "col": pd.Series(dtype=int)}
        )
    writer.write_shard(buffer.shard, features, index, skipped=buffer.skipped)
