"""Per-image features from an activation store, for sparse probing (issue 21): each image's mean SAE code
and its mean feature-map channels over the tokens the store holds of it, with the store's labels.

    table = image_features(reader, sae)              # one shard in memory at a time
    table.latents_nf, table.channels_nc, table.labels["mass"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mammo_sae.sae.base import SparseAutoencoder
from mammo_sae.store import StoreReader

BATCH_TOKENS = 8192


@dataclass(frozen=True)
class ImageFeatures:
    image_ids: tuple[str, ...]
    latents_nf: np.ndarray  # [images, d_sae] float32: the mean SAE code over the image's stored tokens
    channels_nc: np.ndarray  # [images, d] float32: the mean of the image's stored tokens
    labels: dict[str, np.ndarray]  # label column -> [images] (the store's, per image)
    tokens_n: np.ndarray  # [images] stored tokens per image


@torch.no_grad()
def image_features(
    reader: StoreReader, sae: SparseAutoencoder, shards: Sequence[int] | None = None
) -> ImageFeatures:
    """Mean codes and channels per image over ``shards`` (default all), in the store's image order."""
    if sae.d_in != reader.d:
        raise ValueError(
            f"the SAE takes {sae.d_in} features; the store holds {reader.d}: use this store's SAE"
        )
    sae = sae.eval()
    label_columns = [c for c in reader.index_columns if c not in ("image_id", "row", "col")]
    ids: list[str] = []
    latents, channels, counts = [], [], []
    labels: dict[str, list] = {c: [] for c in label_columns}
    for k in range(reader.n_shards) if shards is None else shards:
        index = reader.shard_index(k)
        features_td = reader.shard_features(k)
        codes = np.concatenate([
            sae.encode(torch.from_numpy(np.asarray(features_td[s : s + BATCH_TOKENS], dtype=np.float32)).to(sae.dtype))
            .float().cpu().numpy()
            for s in range(0, len(features_td), BATCH_TOKENS)
        ]) if len(features_td) else np.zeros((0, sae.d_sae), np.float32)  # fmt: skip
        image_of_t = index["image_id"].to_numpy()
        order, starts = np.unique(image_of_t, return_index=True)
        for image in order[np.argsort(starts)]:  # the shard's own image order
            rows = image_of_t == image
            ids.append(str(image))
            latents.append(codes[rows].mean(axis=0))
            channels.append(np.asarray(features_td[rows], dtype=np.float32).mean(axis=0))
            counts.append(int(rows.sum()))
            for column in label_columns:
                labels[column].append(index.loc[rows, column].iloc[0])
    assert len(set(ids)) == len(ids), "an image's tokens lie in one shard"
    return ImageFeatures(
        image_ids=tuple(ids),
        latents_nf=np.asarray(latents, dtype=np.float32).reshape(len(ids), sae.d_sae),
        channels_nc=np.asarray(channels, dtype=np.float32).reshape(len(ids), reader.d),
        labels={c: np.asarray(v, dtype=np.float64) for c, v in labels.items()},
        tokens_n=np.asarray(counts, dtype=np.int64),
    )
