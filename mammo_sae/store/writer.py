"""StoreWriter: writes an activation store shard by shard, resumably, from one or many processes.

A shard is a fixed group of images (shard k = images [k*m, (k+1)*m)); writing it is all or nothing: the
feature array and the index table are renamed into place first, the small ``.done.json`` marker last, and
only the marker makes the shard count as written. A killed run leaves at most temporary files and
marker-less shard files, which the next run overwrites.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae import __version__
from mammo_sae.core.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from mammo_sae.core.hashing import check_files, sha256_bytes
from mammo_sae.store.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_KEY_COLUMNS,
    METADATA_FILE,
    PLAN_FILE,
    StoreError,
    check_format,
    format_ranges,
    fsync_dir,
    identity_hash,
    image_list_digest,
    json_text,
    n_shards_for,
    read_json,
    repair_hint,
    shard_features_name,
    shard_index_name,
    shard_marker_name,
    shard_stem,
    validate_identity,
)
from mammo_sae.store.reader import StoreReader

WRITE_CHUNK_BYTES = 16 << 20


def created_by() -> dict[str, str]:
    return {"package": "mammo-sae", "version": __version__}


class StoreWriter:
    """Writes the shards of one store; get one with :meth:`create_or_resume`."""

    def __init__(self, path: Path, plan: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.plan = dict(plan)
        self.identity: dict[str, Any] = self.plan["identity"]
        self.store_id: str = self.plan["store_id"]
        self.image_ids: tuple[str, ...] = tuple(self.plan["image_ids"])
        self.images_per_shard: int = self.plan["images_per_shard"]
        self.label_columns: tuple[str, ...] = tuple(self.plan["label_columns"])
        self.n_shards: int = self.plan["n_shards"]
        self.d: int = self.identity["d"]
        self.dtype = np.dtype(self.identity["dtype"])
        grid = self.identity.get("grid")
        self.grid: tuple[int, int] | None = tuple(grid) if grid is not None else None

    # --- opening ----------------------------------------------------------------------------------------

    @classmethod
    def create_or_resume(
        cls,
        parent_dir: str | os.PathLike[str],
        identity: Mapping[str, Any],
        image_ids: Sequence[str],
        *,
        images_per_shard: int,
        label_columns: Sequence[str] = (),
    ) -> StoreWriter:
        """Open the store of this identity under ``parent_dir``, creating it or resuming a run that stopped.

        The folder is ``parent_dir/identity_hash(identity)``. Resuming needs the same image list,
        ``images_per_shard`` and label columns as the run that created the store.
        """
        plain_identity = validate_identity(identity)
        image_ids = _check_image_ids(image_ids)
        if (
            isinstance(images_per_shard, bool)
            or not isinstance(images_per_shard, int)
            or images_per_shard < 1
        ):
            raise StoreError(f"images_per_shard must be a positive int (got {images_per_shard!r})")
        label_columns = _check_label_columns(label_columns)
        store_id = identity_hash(plain_identity)
        path = Path(parent_dir) / store_id
        plan = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "store_id": store_id,
            "identity": plain_identity,
            "images_per_shard": images_per_shard,
            "label_columns": list(label_columns),
            "n_images": len(image_ids),
            "n_shards": n_shards_for(len(image_ids), images_per_shard),
            "image_list_sha256": image_list_digest(image_ids),
            "image_ids": list(image_ids),
            "created_by": created_by(),
        }
        plan_path = path / PLAN_FILE
        if not plan_path.exists():
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(plan_path, json_text(plan))
            fsync_dir(path)
        # Read back in every case: another rank may have created the plan at the same moment.
        existing = read_json(plan_path, "store plan")
        check_format(existing, plan_path)
        _check_same_plan(existing, plan, path)
        return cls(path, existing)

    # --- shards -----------------------------------------------------------------------------------------

    def shard_images(self, k: int) -> list[str]:
        """The image ids of shard k, in store order."""
        k = self._check_shard(k)
        m = self.images_per_shard
        return list(self.image_ids[k * m : (k + 1) * m])

    def shard_ids(self) -> list[int]:
        """Every shard number of the store, 0 .. n_shards - 1."""
        return list(range(self.n_shards))

    def committed_shards(self) -> list[int]:
        return [k for k in range(self.n_shards) if (self.path / shard_marker_name(k)).is_file()]

    def pending_shards(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Shards not yet committed that this rank owns (shard k belongs to rank k % world_size)."""
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise StoreError(f"world_size must be a positive int (got {world_size!r})")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise StoreError(f"rank must be an int in [0, {world_size}) (got {rank!r})")
        return [
            k
            for k in range(rank, self.n_shards, world_size)
            if not (self.path / shard_marker_name(k)).is_file()
        ]

    def write_shard(
        self,
        k: int,
        features: np.ndarray,
        index: pd.DataFrame,
        skipped: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Commit shard k: ``features`` (tokens, d) and its ``index`` (image_id, row, col + label columns).

        Tokens must be grouped by image in the shard's image order; every image of the shard either has
        tokens or is listed in ``skipped`` (image id -> reason). Returns the shard's marker record.
        """
        k = self._check_shard(k)
        images = self.shard_images(k)
        skipped = {str(key): str(value) for key, value in (skipped or {}).items()}
        features = self._check_features(k, features)
        table = self._check_index(k, index, images, skipped, n_tokens=features.shape[0])
        index_bytes = self._index_bytes(k, table)  # serialised before anything touches the disk

        marker_path = self.path / shard_marker_name(k)
        if marker_path.exists():
            if not overwrite:
                raise StoreError(
                    f"shard {k} of {self.path} is already written; pending_shards() lists the shards left "
                    "(pass overwrite=True to replace it)"
                )
            marker_path.unlink()
            fsync_dir(self.path)
        self._remove_temporaries(f"{shard_stem(k)}.")

        features_record = self._write_features(k, features)
        index_record = self._write_index(k, index_bytes, rows=len(table))
        marker = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "store_id": self.store_id,
            "shard": k,
            "first_image": k * self.images_per_shard,
            "n_images": len(images),
            "n_tokens": int(features.shape[0]),
            "skipped": dict(sorted(skipped.items())),
            "features": features_record,
            "index": index_record,
        }
        atomic_write_text(marker_path, json_text(marker))  # the commit point
        fsync_dir(self.path)
        return marker

    # --- finishing --------------------------------------------------------------------------------------

    def finalize(self, *, verify: bool | None = None, warnings: Sequence[str] = ()) -> StoreReader:
        """Check that every shard is written and intact, write ``metadata.json``, return a reader.

        ``verify``: True re-hashes every shard file against its marker; False checks sizes only; None (the
        default) re-hashes unless the store is already finalized with the same metadata. Idempotent.
        ``warnings``: sentences about the content (e.g. from the extraction's checks), kept in the metadata.
        """
        markers: dict[int, dict[str, Any]] = {}
        missing: list[int] = []
        for k in range(self.n_shards):
            marker_path = self.path / shard_marker_name(k)
            if marker_path.is_file():
                markers[k] = read_json(marker_path, "shard marker")
            else:
                missing.append(k)
        if missing:
            raise StoreError(
                f"activation store {self.path} is incomplete: {len(missing)} of {self.n_shards} shards are not "
                f"written yet (shards {format_ranges(missing)}); run the extraction command again to finish it "
                "(it resumes where it stopped; with several ranks every rank must finish before finalizing)"
            )
        metadata = self._metadata(markers)
        if warnings:  # e.g. features that do not vary across images (recorded only when there are some)
            metadata["warnings"] = list(warnings)
        text = json_text(metadata)
        metadata_path = self.path / METADATA_FILE
        already = metadata_path.is_file() and metadata_path.read_text(encoding="utf-8") == text
        full_check = verify if verify is not None else not already
        self._check_shard_files(markers, full_check)
        if not already:
            atomic_write_text(metadata_path, text)
            fsync_dir(self.path)
        for prefix in (
            "shard-",
            f"{METADATA_FILE}.",
            f"{PLAN_FILE}.",
        ):  # every shard is in: no write in flight
            self._remove_temporaries(prefix)
        return StoreReader(self.path)

    # --- internals --------------------------------------------------------------------------------------

    def _check_shard(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < self.n_shards:
            raise StoreError(
                f"shard number must be an int in [0, {self.n_shards}) for {self.path} (got {k!r})"
            )
        return int(k)

    def _check_features(self, k: int, features: Any) -> np.ndarray:
        """The shard's features as a C-contiguous [tokens, d] array in the store dtype, all finite."""
        if hasattr(features, "detach"):  # a torch tensor
            features = features.detach().cpu().numpy()
        x_nd = np.asarray(features)
        if x_nd.ndim != 2 or x_nd.shape[1] != self.d:
            raise StoreError(f"shard {k}: features must have shape (tokens, {self.d}), got {x_nd.shape}")
        if not np.issubdtype(x_nd.dtype, np.floating):
            raise StoreError(f"shard {k}: features must be floating point, got {x_nd.dtype}")
        x_nd = np.ascontiguousarray(x_nd, dtype=self.dtype)
        if x_nd.size and not np.isfinite(x_nd).all():
            bad = int((~np.isfinite(x_nd)).any(axis=1).sum())
            raise StoreError(
                f"shard {k}: {bad} token(s) have non-finite features (NaN or beyond the {self.dtype} range); "
                "check the backbone's output for these images before storing them"
            )
        assert x_nd.flags.c_contiguous and x_nd.dtype == self.dtype, (x_nd.flags, x_nd.dtype)
        return x_nd

    def _check_index(
        self, k: int, index: Any, images: list[str], skipped: dict[str, str], *, n_tokens: int
    ) -> pd.DataFrame:
        if not isinstance(index, pd.DataFrame):
            raise StoreError(f"shard {k}: index must be a pandas DataFrame, got {type(index).__name__}")
        expected = [*INDEX_KEY_COLUMNS, *self.label_columns]
        if n_tokens == 0 and len(index) == 0:  # a shard whose images were all skipped: labels may be absent
            index = index.assign(
                **{c: pd.Series(dtype="float64") for c in expected if c not in index.columns}
            )
        missing = [c for c in expected if c not in index.columns]
        extra = [str(c) for c in index.columns if c not in expected]
        if missing or extra:
            raise StoreError(
                f"shard {k}: index columns must be {expected}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra} (declare label columns when the store is created)" if extra else "")
            )
        if len(index) != n_tokens:
            raise StoreError(f"shard {k}: index has {len(index)} rows but features have {n_tokens} tokens")
        table = index.loc[:, expected].reset_index(drop=True)
        table["image_id"] = table["image_id"].astype(str)

        position = {image_id: i for i, image_id in enumerate(images)}
        unknown = sorted(set(table["image_id"].unique()) - position.keys())
        if unknown:
            raise StoreError(f"shard {k}: index has images that are not in this shard: {unknown[:5]}")
        unknown_skipped = sorted(skipped.keys() - position.keys())
        if unknown_skipped:
            raise StoreError(
                f"shard {k}: skipped lists images that are not in this shard: {unknown_skipped[:5]}"
            )
        present = set(table["image_id"].unique())
        both = sorted(present & skipped.keys())
        if both:
            raise StoreError(f"shard {k}: images both have tokens and are skipped: {both[:5]}")
        absent = [image_id for image_id in images if image_id not in present and image_id not in skipped]
        if absent:
            raise StoreError(
                f"shard {k}: images without tokens must be listed in skipped with a reason: {absent[:5]}"
            )
        order = table["image_id"].map(position).to_numpy()
        if order.size and (np.diff(order) < 0).any():
            raise StoreError(f"shard {k}: tokens must be grouped by image, in the shard's image order")

        for column in ("row", "col"):
            values = table[column].to_numpy()
            if not np.issubdtype(values.dtype, np.integer):
                raise StoreError(f"shard {k}: index column {column!r} must hold integers, got {values.dtype}")
            limit = None if self.grid is None else self.grid[0 if column == "row" else 1]
            if values.size and (values.min() < 0 or (limit is not None and values.max() >= limit)):
                raise StoreError(
                    f"shard {k}: index column {column!r} is outside the token grid {self.grid} "
                    f"(values {values.min()}..{values.max()})"
                )
            table[column] = values.astype(np.int32)
        return table

    def _write_features(self, k: int, features: np.ndarray) -> dict[str, Any]:
        path = self.path / shard_features_name(k)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(features))
        digest = hashlib.sha256(header.getvalue())
        size = len(header.getvalue())
        with atomic_open(path, "wb") as handle:
            handle.write(header.getvalue())
            data = memoryview(features).cast("B") if features.size else memoryview(b"")
            for start in range(0, len(data), WRITE_CHUNK_BYTES):
                chunk = data[start : start + WRITE_CHUNK_BYTES]
                handle.write(chunk)
                digest.update(chunk)
            size += len(data)
        return {
            "file": path.name,
            "bytes": size,
            "sha256": digest.hexdigest(),
            "shape": [int(features.shape[0]), int(features.shape[1])],
            "dtype": self.dtype.name,
        }

    def _index_bytes(self, k: int, table: pd.DataFrame) -> bytes:
        buffer = io.BytesIO()
        try:
            table.to_parquet(buffer, index=False, engine="pyarrow", compression="snappy")
        except (TypeError, ValueError) as error:  # pyarrow's ArrowInvalid / ArrowTypeError
            raise StoreError(
                f"shard {k}: the index table can not be stored as parquet ({error}); label columns must hold "
                "numbers, booleans or strings, one type per column"
            ) from None
        return buffer.getvalue()

    def _write_index(self, k: int, data: bytes, *, rows: int) -> dict[str, Any]:
        path = self.path / shard_index_name(k)
        atomic_write_bytes(path, data)
        return {
            "file": path.name,
            "bytes": len(data),
            "sha256": sha256_bytes(data),
            "rows": rows,
        }

    def _remove_temporaries(self, stem_prefix: str) -> None:
        """Delete temporary files a killed writer left behind (``.<file name>.<random>.tmp``)."""
        for leftover in self.path.glob(f".{stem_prefix}*.tmp"):
            leftover.unlink(missing_ok=True)

    def _check_shard_files(self, markers: dict[int, dict[str, Any]], full_check: bool) -> None:
        broken: dict[int, str] = {}
        for k, marker in markers.items():
            try:
                problem = self._marker_problem(k, marker)
            except (KeyError, TypeError, ValueError) as error:
                problem = f"its marker {shard_marker_name(k)} is malformed ({error})"
            if problem is None:
                records = {record["file"]: record for record in (marker["features"], marker["index"])}
                problems = check_files(
                    self.path, records, hashes=full_check, what=f"its marker {shard_marker_name(k)}"
                )
                problem = next(iter(problems.values()), None)
            if problem:
                broken[k] = problem
        if broken:
            details = "; ".join(f"shard {k}: {text}" for k, text in sorted(broken.items())[:5])
            raise StoreError(
                f"activation store {self.path} has {len(broken)} damaged shard(s): {details}. To repair, "
                + repair_hint(self.path, sorted(broken))
            )

    def _marker_problem(self, k: int, marker: dict[str, Any]) -> str | None:
        check_format(marker, self.path / shard_marker_name(k))
        expected = {
            "store_id": self.store_id,
            "shard": k,
            "first_image": k * self.images_per_shard,
            "n_images": len(self.shard_images(k)),
        }
        for key, value in expected.items():
            if marker[key] != value:
                return f"its marker says {key}={marker[key]!r}, expected {value!r}"
        if marker["features"]["file"] != shard_features_name(k) or marker["index"][
            "file"
        ] != shard_index_name(k):
            return "its marker names other files"
        if (
            marker["features"]["shape"] != [marker["n_tokens"], self.d]
            or marker["index"]["rows"] != marker["n_tokens"]
        ):
            return "its marker's shapes disagree with its token count"
        return None

    def _metadata(self, markers: dict[int, dict[str, Any]]) -> dict[str, Any]:
        skipped: dict[str, str] = {}
        shards = []
        for k in range(self.n_shards):
            marker = markers[k]
            skipped.update(marker.get("skipped", {}))
            shards.append(
                {
                    "shard": k,
                    "first_image": marker["first_image"],
                    "n_images": marker["n_images"],
                    "n_tokens": marker["n_tokens"],
                    "features": marker["features"],
                    "index": marker["index"],
                }
            )
        n_tokens = sum(record["n_tokens"] for record in shards)
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "store_id": self.store_id,
            "identity": self.identity,
            "created_by": created_by(),
            "d": self.d,
            "dtype": self.dtype.name,
            "grid": list(self.grid) if self.grid is not None else None,
            "images_per_shard": self.images_per_shard,
            "index_columns": [*INDEX_KEY_COLUMNS, *self.label_columns],
            "label_columns": list(self.label_columns),
            "counts": {
                "images": len(self.image_ids),
                "images_with_tokens": len(self.image_ids) - len(skipped),
                "images_skipped": len(skipped),
                "tokens": n_tokens,
                "shards": self.n_shards,
            },
            "image_list_sha256": self.plan["image_list_sha256"],
            "image_ids": list(self.image_ids),
            "skipped": dict(sorted(skipped.items())),
            "shards": shards,
        }

    def __repr__(self) -> str:
        done = len(self.committed_shards())
        return f"StoreWriter({str(self.path)!r}, shards {done}/{self.n_shards})"


def _check_image_ids(image_ids: Sequence[str]) -> list[str]:
    if isinstance(image_ids, str) or not isinstance(image_ids, Sequence | np.ndarray | pd.Series):
        raise StoreError(f"image_ids must be a list of strings (got {type(image_ids).__name__})")
    ids = [str(image_id) for image_id in image_ids]
    if not ids:
        raise StoreError("image_ids is empty: a store needs at least one image")
    if any(not image_id or "\n" in image_id for image_id in ids):
        raise StoreError("image ids must be non-empty strings without newlines")
    if len(set(ids)) != len(ids):
        duplicates = sorted(image_id for image_id, count in Counter(ids).items() if count > 1)[:5]
        raise StoreError(f"image_ids has duplicates (each image is stored once): {duplicates}")
    return ids


def _check_label_columns(label_columns: Sequence[str]) -> list[str]:
    if isinstance(label_columns, str):
        raise StoreError("label_columns must be a list of column names, not one string")
    columns = [str(column) for column in label_columns]
    if len(set(columns)) != len(columns):
        raise StoreError(f"label_columns has duplicates: {columns}")
    clash = [column for column in columns if column in INDEX_KEY_COLUMNS]
    if clash:
        raise StoreError(
            f"label_columns may not reuse the index's own columns {list(INDEX_KEY_COLUMNS)}: {clash}"
        )
    return columns


def _check_same_plan(existing: Mapping[str, Any], plan: Mapping[str, Any], path: Path) -> None:
    """A resumed run must cut the same image list into the same shards as the run that started."""
    if existing.get("store_id") != plan["store_id"] or existing.get("identity") != plan["identity"]:
        raise StoreError(f"{path / PLAN_FILE} belongs to another identity; delete {path} and run again")
    for key, what in (
        ("images_per_shard", "images per shard"),
        ("label_columns", "label columns"),
        ("image_ids", "image list"),
    ):
        if existing.get(key) != plan[key]:
            shown = existing.get(key) if key != "image_ids" else f"{existing.get('n_images')} images"
            raise StoreError(
                f"the activation store {path} was started with a different {what} ({shown}); rerun with the "
                f"same {what} to resume it, or delete {path} to start over (or add the difference to the "
                "identity so that it gets its own folder)"
            )
