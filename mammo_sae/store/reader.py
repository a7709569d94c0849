"""StoreReader: opens a finished activation store and hands out shards, the index and batch streams.

Opening checks the metadata and every shard file's size (cheap); ``verify=True`` also re-hashes every
file. Otherwise each shard file is checked against its sha256 the first time it is read, so a damaged
shard is never used. Features are memory-mapped, never loaded whole; see stream.py for the
bounded-memory batches.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.core.hashing import check_files, sha256_file
from mammo_sae.store.format import (
    INDEX_KEY_COLUMNS,
    METADATA_FILE,
    PLAN_FILE,
    StoreError,
    check_format,
    identity_hash,
    read_json,
    repair_hint,
    shard_marker_name,
)
from mammo_sae.store.stream import DEFAULT_BUFFER_TOKENS, BatchStream


class StoreReader:
    """A complete activation store, opened read-only."""

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"no activation store at {self.path}: the folder does not exist")
        metadata_path = self.path / METADATA_FILE
        if not metadata_path.is_file():
            raise StoreError(_incomplete_message(self.path))
        metadata = read_json(metadata_path, "store metadata")
        check_format(metadata, metadata_path)
        try:
            self._load(metadata)
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(
                f"{metadata_path} is malformed ({type(error).__name__}: {error}); delete it and run the "
                "extraction command again to rewrite it"
            ) from None
        self._index_cache: pd.DataFrame | None = None
        self._verified: set[tuple[int, str]] = set()  # (shard, "features" | "index") matching their sha256
        self.check_files(verify=verify)

    def _load(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.identity: dict[str, Any] = metadata["identity"]
        self.store_id: str = metadata["store_id"]
        if identity_hash(self.identity) != self.store_id:
            raise ValueError("the identity does not hash to the store id (was metadata.json edited?)")
        self.d: int = int(metadata["d"])
        self.dtype = np.dtype(metadata["dtype"])
        grid = metadata.get("grid")
        self.grid: tuple[int, int] | None = (int(grid[0]), int(grid[1])) if grid else None
        self.images_per_shard: int = int(metadata["images_per_shard"])
        self.label_columns: list[str] = list(metadata["label_columns"])
        self.index_columns: list[str] = [*INDEX_KEY_COLUMNS, *self.label_columns]
        self.image_ids: list[str] = list(metadata["image_ids"])
        self.skipped: dict[str, str] = dict(metadata["skipped"])
        self._shards: list[dict[str, Any]] = list(metadata["shards"])
        if [record["shard"] for record in self._shards] != list(range(len(self._shards))):
            raise ValueError("the shard list is not numbered 0..n-1")
        counts = np.array([int(record["n_tokens"]) for record in self._shards], dtype=np.int64)
        self.shard_token_counts: np.ndarray = counts
        self.shard_offsets: np.ndarray = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if int(self.shard_offsets[-1]) != int(metadata["counts"]["tokens"]):
            raise ValueError("the shard token counts do not add up to counts.tokens")

    # --- sizes ------------------------------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        return int(self.shard_offsets[-1])

    @property
    def n_images(self) -> int:
        """Images that contributed tokens (the image list minus the skipped images)."""
        return len(self.image_ids) - len(self.skipped)

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    def shard_images(self, k: int) -> list[str]:
        record = self._shards[self._check_shard(k)]
        return self.image_ids[record["first_image"] : record["first_image"] + record["n_images"]]

    # --- integrity --------------------------------------------------------------------------------------

    def check_files(self, *, verify: bool = False) -> None:
        """Every shard file exists with the recorded size; with ``verify``, also the recorded sha256."""
        owner = {
            record[part]["file"]: (record["shard"], part)
            for record in self._shards
            for part in ("features", "index")
        }
        records = {name: self._shards[k][part] for name, (k, part) in owner.items()}
        problems = check_files(self.path, records, hashes=verify, what=METADATA_FILE)
        broken: dict[int, str] = {}
        for name, (k, part) in owner.items():
            if name in problems:
                broken.setdefault(k, problems[name])
            elif verify:
                self._verified.add((k, part))
        if broken:
            details = "; ".join(f"shard {k}: {text}" for k, text in sorted(broken.items())[:5])
            raise StoreError(
                f"activation store {self.path} has {len(broken)} damaged shard(s): {details}. To repair, "
                + repair_hint(self.path, sorted(broken))
            )

    def verify(self) -> None:
        """Re-hash every shard file against metadata.json (reads the whole store)."""
        self.check_files(verify=True)

    def _check_digest(self, k: int, part: str, digest: str) -> None:
        """Refuse shard k's ``part`` file when ``digest`` (its sha256) is not the one metadata.json holds."""
        file = self.path / self._shards[k][part]["file"]
        if digest != self._shards[k][part]["sha256"]:
            raise StoreError(
                f"{file} does not match its sha256 in metadata.json (corrupt or changed after the store was "
                f"written); {repair_hint(self.path, [k])}"
            )
        self._verified.add((k, part))

    def _verified_file(self, k: int, part: str) -> Path:
        """Shard k's ``part`` file, hashed against metadata.json the first time it is asked for."""
        file = self.path / self._shards[k][part]["file"]
        if (k, part) not in self._verified:
            try:
                digest = sha256_file(file)
            except OSError as error:
                raise StoreError(f"{file} can not be read ({error}); {repair_hint(self.path, [k])}") from None
            self._check_digest(k, part, digest)
        return file

    # --- shards -----------------------------------------------------------------------------------------

    def shard_features(self, k: int) -> np.ndarray:
        """Shard k's features as a read-only memory map of shape [tokens, d]."""
        k = self._check_shard(k)
        record = self._shards[k]
        file = self._verified_file(k, "features")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise StoreError(
                f"{file} is not a readable .npy file ({error}); {repair_hint(self.path, [k])}"
            ) from None
        if array.shape != (record["n_tokens"], self.d) or array.dtype != self.dtype:
            raise StoreError(
                f"{file} holds {array.shape} {array.dtype}, metadata.json says ({record['n_tokens']}, {self.d}) "
                f"{self.dtype}; {repair_hint(self.path, [k])}"
            )
        return array

    def read_shard_into(self, k: int, out: np.ndarray) -> None:
        """Read all of shard k's features into ``out`` ((tokens, d), store dtype, C-contiguous) with plain
        sequential reads; faster than copying from a memory map for whole shards. The bytes read are
        checked against the shard's sha256 the first time."""
        k = self._check_shard(k)
        record = self._shards[k]
        file = self.path / record["features"]["file"]
        shape = (record["n_tokens"], self.d)
        if out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise StoreError(
                f"read_shard_into needs a C-contiguous {shape} {self.dtype} array, got {out.shape} {out.dtype}"
            )
        with open(file, "rb") as handle:
            try:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                header = read_header(handle)
            except ValueError as error:
                raise StoreError(
                    f"{file} is not a readable .npy file ({error}); {repair_hint(self.path, [k])}"
                ) from None
            if header != (shape, False, self.dtype):
                raise StoreError(
                    f"{file} holds {header[0]} {header[2]}, metadata.json says {shape} {self.dtype}; "
                    f"{repair_hint(self.path, [k])}"
                )
            header_bytes = handle.tell()
            view = memoryview(out).cast("B") if out.size else memoryview(b"")
            filled = 0
            while filled < len(view):
                got = handle.readinto(view[filled:])
                if not got:
                    raise StoreError(f"{file} ended early (truncated); {repair_hint(self.path, [k])}")
                filled += got
            if (k, "features") not in self._verified:
                handle.seek(0)
                digest = hashlib.sha256(handle.read(header_bytes))
                digest.update(view)
                self._check_digest(k, "features", digest.hexdigest())

    def shard_index(self, k: int) -> pd.DataFrame:
        """Shard k's index table; its pandas index holds the global token numbers of its rows."""
        k = self._check_shard(k)
        record = self._shards[k]
        file = self.path / record["index"]["file"]
        try:
            data = file.read_bytes()
        except OSError as error:
            raise StoreError(f"{file} can not be read ({error}); {repair_hint(self.path, [k])}") from None
        if (k, "index") not in self._verified:
            self._check_digest(k, "index", hashlib.sha256(data).hexdigest())
        try:
            table = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except Exception as error:  # pyarrow raises its own error types for damaged files
            raise StoreError(
                f"{file} is not a readable parquet file ({error}); {repair_hint(self.path, [k])}"
            ) from None
        if list(table.columns) != self.index_columns or len(table) != record["n_tokens"]:
            raise StoreError(
                f"{file} has columns {list(table.columns)} and {len(table)} rows, metadata.json says "
                f"{self.index_columns} and {record['n_tokens']}; {repair_hint(self.path, [k])}"
            )
        start = int(self.shard_offsets[k])
        table.index = pd.RangeIndex(start, start + len(table))
        return table

    def index(self, shards: Sequence[int] | None = None) -> pd.DataFrame:
        """The index tables of ``shards`` (default all, cached: do not modify it) concatenated; the pandas
        index is the global token number."""
        if shards is None:
            if self._index_cache is None:
                self._index_cache = self._concat_index(range(self.n_shards))
            return self._index_cache
        return self._concat_index(shards)

    def _concat_index(self, shards: Sequence[int]) -> pd.DataFrame:
        tables = [self.shard_index(k) for k in shards]
        if not tables:
            raise StoreError("index() needs at least one shard")
        return pd.concat(tables, axis=0) if len(tables) > 1 else tables[0]

    def features(self, shards: Sequence[int] | None = None, dtype: Any = np.float32) -> np.ndarray:
        """All features of ``shards`` in one in-memory array [tokens, d]: only for small stores and tests."""
        shards = range(self.n_shards) if shards is None else shards
        parts = [np.asarray(self.shard_features(k), dtype=dtype) for k in shards]
        x_nd = np.concatenate(parts, axis=0) if parts else np.empty((0, self.d), dtype=dtype)
        assert x_nd.shape[1] == self.d, x_nd.shape
        return x_nd

    # --- batches ----------------------------------------------------------------------------------------

    def stream(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        buffer_tokens: int = DEFAULT_BUFFER_TOKENS,
        drop_last: bool = False,
        shards: Sequence[int] | None = None,
        dtype: Any = np.float32,
        as_torch: bool = False,
        with_index: bool = False,
        epoch: int = 0,
        state: dict[str, Any] | None = None,
        tokens: np.ndarray | Sequence[int] | None = None,
    ) -> BatchStream:
        """A resumable, multi-epoch batch stream (see :class:`BatchStream`); ``tokens`` keeps only those
        global token numbers of ``shards``."""
        stream = BatchStream(
            self,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            buffer_tokens=buffer_tokens,
            drop_last=drop_last,
            shards=shards,
            dtype=dtype,
            as_torch=as_torch,
            with_index=with_index,
            epoch=epoch,
            tokens=tokens,
        )
        if state is not None:
            stream.load_state_dict(state)
        return stream

    def iter_batches(self, batch_size: int, **options: Any) -> Iterator[Any]:
        """One epoch of feature batches [B, d] (numpy arrays, or torch tensors with ``as_torch``); ``options``
        are those of :meth:`stream` (shuffle, seed, buffer_tokens, drop_last, shards, tokens, dtype, epoch,
        state)."""
        return iter(self.stream(batch_size, **options, with_index=False))

    def split_shards(self, validation_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
        """Hold out whole shards (so whole images) holding about ``validation_fraction`` of the tokens.

        Returns ``(train_shards, validation_shards)``, both sorted; pass either as ``shards=`` to a stream.
        Deterministic per seed; the validation set is the smallest prefix of a seeded shard permutation
        that reaches the fraction.
        """
        if not 0.0 < float(validation_fraction) < 1.0:
            raise StoreError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        nonempty = [k for k in range(self.n_shards) if self.shard_token_counts[k] > 0]
        if len(nonempty) < 2:
            raise StoreError(
                f"{self.path} has {len(nonempty)} shard(s) with tokens; holding out whole shards needs at least 2: "
                "extract again with fewer images per shard"
            )
        order = np.random.default_rng(seed).permutation(nonempty)
        target = float(validation_fraction) * self.n_tokens
        validation: list[int] = []
        held = 0
        for k in order:
            if held >= target and validation:
                break
            validation.append(int(k))
            held += int(self.shard_token_counts[k])
        if len(validation) == len(nonempty):
            raise StoreError(
                f"validation_fraction {validation_fraction} leaves no training shard in {self.path} "
                f"({len(nonempty)} shards with tokens); use a smaller fraction"
            )
        train = sorted(set(range(self.n_shards)) - set(validation))
        return train, sorted(validation)

    # --- misc -------------------------------------------------------------------------------------------

    def _check_shard(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < self.n_shards:
            raise StoreError(
                f"shard number must be an int in [0, {self.n_shards}) for {self.path} (got {k!r})"
            )
        return int(k)

    def __repr__(self) -> str:
        return (
            f"StoreReader({str(self.path)!r}, {self.n_images} images, {self.n_tokens} tokens x {self.d} "
            f"{self.dtype.name}, {self.n_shards} shards)"
        )


def open_store(path: str | os.PathLike[str], *, verify: bool = False) -> StoreReader:
    """Open a complete activation store (``verify`` re-hashes every file)."""
    return StoreReader(path, verify=verify)


def _incomplete_message(path: Path) -> str:
    plan_path = path / PLAN_FILE
    if plan_path.is_file():
        try:
            n_shards = int(read_json(plan_path, "store plan")["n_shards"])
        except (StoreError, KeyError, TypeError, ValueError):
            n_shards = None
        if n_shards is not None:
            done = sum((path / shard_marker_name(k)).is_file() for k in range(n_shards))
            progress = f"{done} of {n_shards} shards are written and "
        else:
            progress = ""
        return (
            f"activation store {path} is incomplete: {progress}it has no {METADATA_FILE}; "
            "run the extraction command again to finish it"
        )
    return f"{path} is not an activation store (no {METADATA_FILE} and no {PLAN_FILE})"
