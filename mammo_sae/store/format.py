"""The on-disk protocol of an activation store: names, hashes, JSON files and checks.

Everything another tool needs to find and trust a store lives here; docs/activation-store.md is the
written form of the same rules. Writer and reader both go through these helpers, so the two can not
drift apart.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.hashing import NotPlainJsonError, canonical_json, sha256_json, sha256_text

FORMAT_NAME = "mammo-sae-activation-store"
FORMAT_VERSION = 1
STORE_ID_LENGTH = 16  # hex characters of the identity sha256 used as the folder name

PLAN_FILE = "plan.json"  # written when the store is created; the writer's contract for resuming
METADATA_FILE = "metadata.json"  # written last by finalize(); its presence marks a complete store

INDEX_KEY_COLUMNS = ("image_id", "row", "col")  # the per-token columns every index table starts with
SUPPORTED_DTYPES = ("float16", "float32")


class StoreError(MammoSaeError):
    """An activation store is missing, incomplete, inconsistent or corrupt, or was used wrongly."""


# --- canonical JSON and the identity hash ---------------------------------------------------------------


def to_plain_json(value: Any) -> Any:
    """The value as json.loads would give it back (tuples become lists, numpy scalars Python numbers)."""
    try:
        return json.loads(canonical_json(value))
    except NotPlainJsonError as error:
        raise StoreError(f"store metadata: {error}") from None


def identity_hash(identity: Mapping[str, Any]) -> str:
    """The store id: the first 16 hex digits of sha256 over the canonical JSON of the identity."""
    try:
        return sha256_json(dict(identity))[:STORE_ID_LENGTH]
    except NotPlainJsonError as error:
        raise StoreError(f"the store identity: {error}") from None


def store_path(parent_dir: str | os.PathLike[str], identity: Mapping[str, Any]) -> Path:
    """Where the store with this identity lives: ``parent_dir / identity_hash(identity)``."""
    validate_identity(identity)
    return Path(parent_dir) / identity_hash(identity)


def image_list_digest(image_ids: Iterable[str]) -> str:
    """sha256 (hex) of the ordered image ids joined by newlines; for the identity's image-list field."""
    return sha256_text("\n".join(str(image_id) for image_id in image_ids))


def validate_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """Check the two identity fields the store itself relies on (``d`` and ``dtype``) and JSON-ness."""
    if not isinstance(identity, Mapping):
        raise StoreError(f"the store identity must be a dict, not {type(identity).__name__}")
    plain = to_plain_json(dict(identity))
    d = plain.get("d")
    if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
        raise StoreError(f"the store identity needs 'd', the feature dimension as a positive int (got {d!r})")
    if plain.get("dtype") not in SUPPORTED_DTYPES:
        raise StoreError(
            f"the store identity needs 'dtype', one of {', '.join(SUPPORTED_DTYPES)} (got {plain.get('dtype')!r})"
        )
    grid = plain.get("grid")
    if grid is not None and not (
        isinstance(grid, list) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)
    ):
        raise StoreError(f"the store identity's 'grid' must be [H, W] tokens per image (got {grid!r})")
    return plain


# --- shard names -----------------------------------------------------------------------------------------


def shard_stem(k: int) -> str:
    return f"shard-{k:05d}"


def shard_features_name(k: int) -> str:
    return f"{shard_stem(k)}.npy"


def shard_index_name(k: int) -> str:
    return f"{shard_stem(k)}.index.parquet"


def shard_marker_name(k: int) -> str:
    return f"{shard_stem(k)}.done.json"


def n_shards_for(n_images: int, images_per_shard: int) -> int:
    return math.ceil(n_images / images_per_shard)


def repair_hint(path: Path, shards: Sequence[int]) -> str:
    """The commands that make the extraction rewrite the given shards."""
    names = " ".join(f"{path / shard_stem(k)}.*" for k in shards[:3])
    more = f" (and the same for shards {format_ranges(shards[3:])})" if len(shards) > 3 else ""
    return (
        f"delete the shard's files and the store's metadata: `rm -f {names} {path / METADATA_FILE}`{more}, "
        "then run the extraction command again (same arguments) to rewrite them"
    )


def format_ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    values = sorted(values)
    parts: list[str] = []
    start = prev = None
    for value in [*values, None]:
        if start is not None and (value is None or value != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if value is not None and start is None:
            start = value
        prev = value
    return ", ".join(parts)


# --- files -----------------------------------------------------------------------------------------------


def json_text(value: Any) -> str:
    """The store's JSON files: sorted keys, two-space indent, trailing newline (deterministic bytes)."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(
            f"{what} {path} is unreadable or not JSON ({error}); {_rewrite_hint(path)}"
        ) from None
    if not isinstance(value, dict):
        raise StoreError(f"{what} {path} is not a JSON object; {_rewrite_hint(path)}")
    return value


def _rewrite_hint(path: Path) -> str:
    return f"delete it and run the extraction command again to rewrite it (`rm -f {path}`)"


def check_format(document: Mapping[str, Any], path: Path) -> None:
    """Refuse files of another format or format version, saying which versions are involved."""
    if document.get("format") != FORMAT_NAME:
        raise StoreError(
            f"{path} is not a mammo-sae activation store file (format {document.get('format')!r})"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        written_by = document.get("created_by", {}).get("version", "an unknown version")
        raise StoreError(
            f"{path} has store format version {version!r}, but this mammo-sae reads version {FORMAT_VERSION}; "
            f"it was written by mammo-sae {written_by}: open it with that version, or delete the store folder "
            f"{path.parent} and run the extraction command again"
        )


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
