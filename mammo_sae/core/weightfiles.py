"""Weight files that can be trusted after a crash: safetensors bytes that depend only on their content,
and torch checkpoints that carry their own sha256.

A checkpoint is a ``torch.save`` zip whose zip comment holds the sha256 of the bytes before it, so a
flipped byte (which torch's reader does not notice) is caught before the state is used; the file stays
an ordinary zip that ``torch.load`` reads. Files written without the comment load with torch's own
checks only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import save as _safetensors_save

from mammo_sae.core.atomic import atomic_open
from mammo_sae.core.errors import MammoSaeError

DIGEST_TAG = b"mammo-sae sha256 "
COMMENT_BYTES = len(DIGEST_TAG) + 64
END_RECORD = b"PK\x05\x06"  # the zip's end-of-central-directory record: 22 bytes, then the comment
END_RECORD_BYTES = 22
HASH_CHUNK = 8 << 20


def safetensors_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """``safetensors.torch.save`` with the header's metadata in sorted key order.

    safetensors writes its metadata map in hash order, which changes from process to process; sorting it
    makes equal weights give equal files, and so equal file hashes (which name stores and bundles)."""
    data = _safetensors_save(dict(tensors), metadata=dict(metadata) if metadata else None)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to 8-byte alignment
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


class _HashingWriter:
    """A write-only file for ``torch.save`` that hashes what passes and keeps the last bytes."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.tail = b""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.tail = (self.tail + bytes(view[-END_RECORD_BYTES:]))[-END_RECORD_BYTES:]
        return self.handle.write(view)

    def flush(self) -> None:
        self.handle.flush()


def save_checked(state: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(state)`` to ``path`` atomically, with the file's sha256 in its zip comment."""
    with atomic_open(path, "wb") as handle:
        writer = _HashingWriter(handle)
        torch.save(state, writer)
        assert writer.tail.startswith(END_RECORD) and writer.tail.endswith(b"\0\0"), "no zip end record"
        comment = DIGEST_TAG + writer.digest.hexdigest().encode()
        handle.seek(-2, os.SEEK_END)  # the comment length, 0 as torch wrote it
        handle.write(len(comment).to_bytes(2, "little") + comment)


def checksum_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` does not match the sha256 in its zip comment; None when it does or has none."""
    path = Path(path)
    size = path.stat().st_size
    if size < COMMENT_BYTES + END_RECORD_BYTES:
        return None
    with open(path, "rb") as handle:
        handle.seek(size - COMMENT_BYTES)
        comment = handle.read()
        if not comment.startswith(DIGEST_TAG):
            return None
        handle.seek(0)
        digest, left = hashlib.sha256(), size - COMMENT_BYTES - 2
        while left > 0 and (chunk := handle.read(min(HASH_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    digest.update(b"\0\0")  # the digest covers the file as torch wrote it, comment length 0
    if digest.hexdigest() != comment[len(DIGEST_TAG) :].decode("ascii", "replace"):
        return "its bytes do not match the sha256 it was written with (corrupt or overwritten)"
    return None


def load_checked(path: str | os.PathLike[str], *, repair: str, error: type[MammoSaeError]) -> Any:
    """``torch.load`` (weights only, on the CPU) after checking the file's sha256.

    A damaged file raises ``error`` naming the file, what is wrong and ``repair`` (the command that fixes
    it)."""
    problem = checksum_problem(path)
    if problem is None:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler and the zip reader raise many types for damaged files
            reason = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else ""
            problem = f"it is not a readable torch file ({type(exc).__name__}: {reason[:200]})"
    raise error(f"{path} is damaged: {problem}; {repair}")
