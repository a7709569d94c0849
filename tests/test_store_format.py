"""The store's name is a stable hash of its identity; every identity field changes it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from mammo_sae.core.hashing import NotPlainJsonError, canonical_json
from mammo_sae.store import StoreError, identity_hash, image_list_digest, store_path
from mammo_sae.store.format import format_ranges

IDENTITY = {
    "backbone": {"name": "mammo-clip-b5", "weights_sha256": "ab" * 32},
    "layer": "head",
    "d": 2048,
    "grid": [48, 29],
    "preprocessing": {
        "kind": "mammo-clip",
        "size": [1520, 912],
        "mean": 0.3089279,
        "std": 0.25053555408335154,
    },
    "dtype": "float16",
    "token_sampling": {"fraction": 0.25, "seed": 0, "augment": True},
    "split": "training",
    "image_list_sha256": image_list_digest(["a", "b", "c"]),
    "package_version": "0.1.0",
}


def test_the_identity_hash_is_pinned_and_ignores_key_order() -> None:
    reordered = dict(reversed(list(IDENTITY.items())))
    assert identity_hash(IDENTITY) == identity_hash(reordered) == "ab0d70dc5d604d5d"
    assert store_path("/stores", IDENTITY) == Path("/stores/ab0d70dc5d604d5d")
    # tuples and numpy scalars hash like the plain JSON they stand for
    variant = {**IDENTITY, "grid": (48, 29), "d": np.int64(2048)}
    assert identity_hash(variant) == identity_hash(IDENTITY)


@pytest.mark.parametrize(
    "path, value",
    [
        (("backbone", "name"), "mammo-clip-b2"),
        (("backbone", "weights_sha256"), "cd" * 32),
        (("layer",), "blocks.38"),
        (("d",), 1408),
        (("grid",), [48, 30]),
        (("preprocessing", "std"), 0.25),
        (("dtype",), "float32"),
        (("token_sampling", "fraction"), 1.0),
        (("token_sampling", "seed"), 1),
        (("token_sampling", "augment"), False),
        (("split",), "test"),
        (("image_list_sha256",), image_list_digest(["a", "c", "b"])),
        (("package_version",), "0.2.0"),
    ],
)
def test_every_identity_field_changes_the_hash(path: tuple[str, ...], value: object) -> None:
    changed = copy.deepcopy(IDENTITY)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert identity_hash(changed) != identity_hash(IDENTITY)


def test_the_identity_needs_d_and_dtype_and_plain_json() -> None:
    with pytest.raises(StoreError, match="'d'"):
        store_path("/s", {k: v for k, v in IDENTITY.items() if k != "d"})
    with pytest.raises(StoreError, match="'dtype'"):
        store_path("/s", {**IDENTITY, "dtype": "bfloat16"})
    with pytest.raises(StoreError, match="grid"):
        store_path("/s", {**IDENTITY, "grid": [48]})
    with pytest.raises(StoreError, match="plain JSON"):
        store_path("/s", {**IDENTITY, "extra": object()})
    with pytest.raises(NotPlainJsonError, match="plain JSON"):
        canonical_json({"x": float("nan")})


def test_image_list_digest_depends_on_order() -> None:
    assert image_list_digest(["a", "b"]) != image_list_digest(["b", "a"])
    assert image_list_digest(["a", "b"]) == image_list_digest(iter(["a", "b"]))


def test_helpers() -> None:
    assert format_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert format_ranges([]) == ""
