"""Per-image features from a store: the mean SAE code and the mean channels of each image's stored tokens,
equal to a brute-force pass over the whole store, with the store's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sae_train_helpers import dictionary_store

from mammo_sae.sae import create_sae
from mammo_sae.sae.image_features import image_features


def test_image_features_equal_a_brute_force_pass(tmp_path: Path) -> None:
    reader, _ = dictionary_store(tmp_path, n_images=12, images_per_shard=5, tokens_per_image=40)
    sae = create_sae("topk", reader.d, 64, k=4)
    table = image_features(reader, sae)
    index, features = reader.index(), reader.features()
    assert list(table.image_ids) == list(dict.fromkeys(index["image_id"]))
    codes = sae.eval().encode(torch.from_numpy(features)).detach().numpy()
    for n, image in enumerate(table.image_ids):
        rows = (index["image_id"] == image).to_numpy()
        np.testing.assert_allclose(table.channels_nc[n], features[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(table.latents_nf[n], codes[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
        assert table.tokens_n[n] == rows.sum()
        assert table.labels["mass"][n] == index.loc[rows, "mass"].iloc[0]
    part = image_features(reader, sae, shards=[1])
    assert set(part.image_ids) == set(reader.shard_images(1))
