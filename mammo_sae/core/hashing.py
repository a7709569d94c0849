"""Content hashes, canonical JSON and the one check of files against recorded sizes and digests.

Stores, SAE folders, classifier files and bundles all fingerprint their inputs and outputs the same way:
sha256 of a file's bytes, sha256 of a value's canonical JSON, and ``{name: {bytes, sha256}}`` records
checked by :func:`check_files`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mammo_sae.core.errors import MammoSaeError

HASH_CHUNK_BYTES = 1 << 20


class NotPlainJsonError(MammoSaeError, ValueError):
    """A value meant for a manifest or an identity is not plain JSON (or holds NaN / infinity)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def canonical_json(value: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no spaces, ASCII only, no NaN."""
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as error:
        raise NotPlainJsonError(
            f"metadata must be plain JSON (str, int, float, bool, list, dict; no NaN): {error}"
        ) from None


def sha256_json(value: Any) -> str:
    """Hex sha256 of ``value``'s canonical JSON."""
    return sha256_text(canonical_json(value))


def strict_json_text(value: Any, *, indent: int | None = 1) -> str:
    """JSON for files people and other tools read: NaN and infinities become ``null`` (never the
    non-standard ``NaN`` token), numpy values become Python ones."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False, default=_json_default)


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    return value


def file_record(path: Path) -> dict[str, Any]:
    """The ``{bytes, sha256}`` record of one file."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_files(
    folder: Path, records: Mapping[str, Mapping[str, Any]], *, hashes: bool, what: str = "the manifest"
) -> dict[str, str]:
    """name -> problem for every recorded file that is missing, resized or (``hashes``) changed."""
    problems: dict[str, str] = {}
    for name, record in records.items():
        path = folder / name
        if not path.is_file():
            problems[name] = f"{name} is missing"
        elif path.stat().st_size != record["bytes"]:
            problems[name] = (
                f"{name} has {path.stat().st_size} bytes, {what} says {record['bytes']} (truncated or replaced)"
            )
        elif hashes and sha256_file(path) != record["sha256"]:
            problems[name] = (
                f"{name} does not match its sha256 in {what} (corrupt, or changed after it was written)"
            )
    return problems
