"""Fixtures of the SAE training tests: a store of sparse combinations of a known dictionary, the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from store_fixtures import LABEL_COLUMNS, synthetic_identity, synthetic_image_ids, synthetic_shard

from mammo_sae.store import StoreReader, StoreWriter

GRID = (16, 10)


def dictionary_store(
    parent: Path,
    *,
    d: int = 32,
    atoms: int = 128,
    active: int = 4,
    n_images: int = 64,
    tokens_per_image: int = 160,
    images_per_shard: int = 8,
    offset: float = 0.0,
    seed: int = 0,
) -> tuple[StoreReader, np.ndarray]:
    """A finished store whose tokens are ``offset + sum of `active` atoms x uniform(0.5, 2)`` coefficients,
    atoms drawn from a random unit dictionary (atoms, d); returns the reader and the dictionary."""
    rng = np.random.default_rng(seed)
    dictionary = rng.standard_normal((atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    shift = offset * rng.uniform(0.5, 1.5, size=d)
    image_ids = synthetic_image_ids(n_images)
    identity = synthetic_identity(image_ids, d=d, grid=GRID, seed=seed) | {
        "layer": f"dictionary-{atoms}x{active}-offset{offset}"
    }
    writer = StoreWriter.create_or_resume(
        parent, identity, image_ids, images_per_shard=images_per_shard, label_columns=list(LABEL_COLUMNS)
    )
    for k in writer.pending_shards():
        _, index, skipped = synthetic_shard(
            writer.shard_images(k), d=d, grid=GRID, tokens_per_image=tokens_per_image, seed=seed
        )
        draw = np.random.default_rng([seed, k])
        n = len(index)
        which = np.argsort(draw.random((n, atoms)), axis=1)[:, :active]
        coefficients = draw.uniform(0.5, 2.0, size=(n, active))
        features = np.einsum("na,nad->nd", coefficients, dictionary[which]) + shift
        writer.write_shard(k, features.astype(np.float16), index, skipped)
    return writer.finalize(), dictionary


def train_command() -> list[str]:
    return [sys.executable, "-m", "mammo_sae.train"]


def torchrun_command(nproc: int, port: int) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    return [*launcher, "--master_port", str(port), "-m", "mammo_sae.train"]


def recovery(dictionary: np.ndarray, w_dec: np.ndarray) -> float:
    """Mean over the true atoms of the best cosine similarity with a learned decoder row."""
    rows = w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True)
    return float((dictionary @ rows.T).max(axis=1).mean())


def arch_kwargs(arch: str, **wanted) -> dict:
    """The keywords of ``wanted`` that architecture ``arch``'s config takes (create_sae refuses others)."""
    from mammo_sae.sae import ARCHITECTURES

    names = ARCHITECTURES[arch].cfg_cls.hparam_names()
    return {name: value for name, value in wanted.items() if name in names}
