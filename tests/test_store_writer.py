"""Writing a store: round trip, resume after a crash, several ranks, and refusal of bad shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from store_fixtures import (
    LABEL_COLUMNS,
    synthetic_identity,
    synthetic_image_ids,
    synthetic_shard,
    write_synthetic_store,
)

from mammo_sae.store import METADATA_FILE, StoreError, StoreReader, StoreWriter, store_path

D, GRID, TOKENS = 16, (6, 4), 8
REPO = Path(__file__).resolve().parents[1]


def open_writer(parent: Path, n_images: int = 10, images_per_shard: int = 3) -> StoreWriter:
    image_ids = synthetic_image_ids(n_images)
    return StoreWriter.create_or_resume(
        parent,
        synthetic_identity(image_ids, d=D, grid=GRID),
        image_ids,
        images_per_shard=images_per_shard,
        label_columns=list(LABEL_COLUMNS),
    )


def write(writer: StoreWriter, k: int, skip: tuple[str, ...] = ()) -> None:
    writer.write_shard(
        k, *synthetic_shard(writer.shard_images(k), d=D, grid=GRID, tokens_per_image=TOKENS, skip=skip)
    )


def folder_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    """A store written in one uninterrupted single-process run."""
    writer = open_writer(tmp_path / "reference")
    for k in writer.pending_shards():
        write(writer, k)
    return writer.finalize().path


def test_round_trip_gives_the_tokens_in_image_order(tmp_path: Path) -> None:
    writer = open_writer(tmp_path, n_images=10, images_per_shard=3)
    assert writer.n_shards == 4 and writer.shard_images(3) == ["img00009"]
    assert writer.path == store_path(tmp_path, writer.identity)
    expected_features, expected_index = [], []
    for k in writer.pending_shards():
        features, index, skipped = synthetic_shard(
            writer.shard_images(k), d=D, grid=GRID, tokens_per_image=TOKENS, skip={"img00004"}
        )
        writer.write_shard(k, features, index, skipped)
        expected_features.append(features)
        expected_index.append(index)
    reader = writer.finalize()

    assert reader.n_tokens == 9 * TOKENS and reader.n_images == 9 and reader.d == D
    assert reader.skipped == {"img00004": "synthetic skip"}
    assert reader.label_columns == list(LABEL_COLUMNS)
    assert list(reader.shard_token_counts) == [24, 16, 24, 8]
    sequential = np.concatenate(list(reader.iter_batches(5, dtype=None)))
    assert sequential.dtype == np.float16
    np.testing.assert_array_equal(sequential, np.concatenate(expected_features))
    index = reader.index()
    pd.testing.assert_frame_equal(
        index.reset_index(drop=True), pd.concat(expected_index, ignore_index=True), check_dtype=False
    )
    assert list(index.index) == list(range(reader.n_tokens))
    assert (
        index["image_id"].to_numpy() == np.repeat([i for i in writer.image_ids if i != "img00004"], TOKENS)
    ).all()
    assert isinstance(reader.shard_features(0), np.memmap)
    metadata = reader.metadata
    assert metadata["counts"] == {
        "images": 10,
        "images_with_tokens": 9,
        "images_skipped": 1,
        "tokens": 72,
        "shards": 4,
    }
    assert [s["features"]["file"] for s in metadata["shards"]] == [f"shard-{k:05d}.npy" for k in range(4)]


def test_finalize_is_idempotent_and_a_second_open_resumes(tmp_path: Path, reference: Path) -> None:
    writer = open_writer(tmp_path / "reference")
    assert writer.pending_shards() == [] and writer.path == reference
    before = folder_bytes(reference)
    writer.finalize()
    writer.finalize(verify=True)
    assert folder_bytes(reference) == before


def test_resume_after_a_crash_rewrites_only_the_missing_shards(tmp_path: Path, reference: Path) -> None:
    writer = open_writer(tmp_path / "crashed")
    write(writer, 0)
    write(writer, 3)
    # A crash mid-shard: a half-written temporary file, and shard 2's data renamed but no marker yet.
    (writer.path / ".shard-00001.npy.x1y2z3.tmp").write_bytes(b"\x93NUMPY half")
    (writer.path / ".metadata.json.a1b2c3.tmp").write_text("{")
    write(writer, 2)
    (writer.path / "shard-00002.done.json").unlink()
    (writer.path / "shard-00002.npy").write_bytes(b"garbage")

    with pytest.raises(StoreError, match="incomplete: 2 of 4 shards are written"):
        StoreReader(writer.path)
    resumed = open_writer(tmp_path / "crashed")
    assert resumed.pending_shards() == [1, 2]
    with pytest.raises(StoreError, match=r"2 of 4 shards are not written yet \(shards 1-2\)"):
        resumed.finalize()
    for k in resumed.pending_shards():
        write(resumed, k)
    resumed.finalize()
    assert folder_bytes(resumed.path) == folder_bytes(reference)


def test_two_ranks_write_the_same_store_as_one_process(tmp_path: Path, reference: Path) -> None:
    ranks = [open_writer(tmp_path / "ranks") for _ in range(2)]
    assert ranks[0].pending_shards(0, 2) == [0, 2] and ranks[1].pending_shards(1, 2) == [1, 3]
    for rank, writer in enumerate(ranks):
        for k in writer.pending_shards(rank, 2):
            write(writer, k)
    ranks[0].finalize()
    assert folder_bytes(ranks[0].path) == folder_bytes(reference)


CHILD = """
import contextlib, sys, time
import mammo_sae.store.writer as store_writer
from mammo_sae.store import StoreWriter
from store_fixtures import LABEL_COLUMNS, synthetic_identity, synthetic_image_ids, synthetic_shard

real_atomic_open = store_writer.atomic_open

@contextlib.contextmanager
def slow_atomic_open(path, mode="wb", **kwargs):  # writes in small, slow pieces after the first commit
    with real_atomic_open(path, mode, **kwargs) as handle:
        class Slow:
            def write(self, data):
                for start in range(0, len(data), 64):
                    handle.write(data[start : start + 64])
                    handle.flush()
                    print("writing", flush=True)
                    time.sleep(0.05)
        yield Slow()

ids = synthetic_image_ids(10)
writer = StoreWriter.create_or_resume(sys.argv[1], synthetic_identity(ids, d=16, grid=(6, 4)), ids,
                                      images_per_shard=3, label_columns=list(LABEL_COLUMNS))
for k in writer.pending_shards():
    writer.write_shard(k, *synthetic_shard(writer.shard_images(k), d=16, grid=(6, 4), tokens_per_image=8))
    print("committed", k, flush=True)
    store_writer.atomic_open = slow_atomic_open
"""


def test_a_writer_killed_with_sigkill_mid_write_resumes_to_the_same_store(
    tmp_path: Path, reference: Path
) -> None:
    parent = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(parent)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "committed 0"
            for _ in range(3):  # let shard 1's feature file get part-way
                assert child.stdout.readline().strip() == "writing"
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    writer = open_writer(parent)
    leftovers = [p.name for p in writer.path.glob(".shard-00001.npy.*.tmp")]
    assert len(leftovers) == 1 and not (writer.path / "shard-00001.npy").exists()
    assert writer.committed_shards() == [0] and writer.pending_shards() == [1, 2, 3]
    for k in writer.pending_shards():
        write(writer, k)
    writer.finalize()
    assert folder_bytes(writer.path) == folder_bytes(reference)


def test_a_different_identity_gets_its_own_folder_and_a_changed_plan_is_refused(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    image_ids = list(writer.image_ids)
    other = StoreWriter.create_or_resume(
        tmp_path, {**writer.identity, "split": "test"}, image_ids, images_per_shard=3, label_columns=["mass"]
    )
    assert other.path != writer.path and other.path.parent == writer.path.parent
    with pytest.raises(
        StoreError, match=r"different images per shard .*rerun with the same images per shard"
    ):
        StoreWriter.create_or_resume(
            tmp_path, writer.identity, image_ids, images_per_shard=4, label_columns=list(LABEL_COLUMNS)
        )
    with pytest.raises(StoreError, match="different image list"):
        StoreWriter.create_or_resume(
            tmp_path, writer.identity, image_ids[::-1], images_per_shard=3, label_columns=list(LABEL_COLUMNS)
        )
    with pytest.raises(StoreError, match="different label columns"):
        StoreWriter.create_or_resume(
            tmp_path, writer.identity, image_ids, images_per_shard=3, label_columns=[]
        )
    with pytest.raises(StoreError, match="duplicates"):
        StoreWriter.create_or_resume(tmp_path, writer.identity, ["a", "a"], images_per_shard=3)


def test_bad_shards_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    features, index, _ = synthetic_shard(writer.shard_images(0), d=D, grid=GRID, tokens_per_image=TOKENS)
    cases = [
        (features[:, :8], index, {}, r"shape \(tokens, 16\)"),
        (features[:-1], index, {}, "index has 24 rows but features have 23"),
        (features, index.drop(columns="mass"), {}, "missing \\['mass'\\]"),
        (features, index.assign(extra=1), {}, "unexpected \\['extra'\\]"),
        (features, index.iloc[::-1], {}, "grouped by image"),
        (features[:16], index.iloc[:16], {}, "must be listed in skipped"),
        (features[:16], index.iloc[:16], {"img00002": "x", "nope": "y"}, "not in this shard"),
        (features, index.assign(row=9), {}, "outside the token grid"),
        (np.full_like(features, np.inf), index, {}, "non-finite"),
        (features, index.assign(mass=[1, "a"] * 12), {}, "can not be stored as parquet"),
    ]
    for bad_features, bad_index, skipped, message in cases:
        with pytest.raises(StoreError, match=message):
            writer.write_shard(0, bad_features, bad_index, skipped)
    assert writer.pending_shards() == [0, 1, 2, 3]
    assert sorted(p.name for p in writer.path.iterdir()) == ["plan.json"]

    writer.write_shard(0, torch.from_numpy(features.astype(np.float32)), index)  # torch and float32 are fine
    with pytest.raises(StoreError, match="already written"):
        writer.write_shard(0, features, index)
    writer.write_shard(0, features, index, overwrite=True)
    with pytest.raises(StoreError, match="shard number"):
        writer.write_shard(4, features, index)
    with pytest.raises(StoreError, match="rank"):
        writer.pending_shards(2, 2)


def test_finalize_names_a_damaged_shard_and_the_fix(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    for k in writer.pending_shards():
        write(writer, k)
    data = bytearray((writer.path / "shard-00001.npy").read_bytes())
    data[-1] ^= 0xFF
    (writer.path / "shard-00001.npy").write_bytes(bytes(data))
    with pytest.raises(
        StoreError, match=r"shard 1: .*shard-00001.npy does not match its sha256.*rm -f .*shard-00001\.\*"
    ):
        writer.finalize()
    (writer.path / "shard-00002.index.parquet").unlink()
    with pytest.raises(StoreError, match=r"2 damaged shard\(s\).*shard-00002.index.parquet is missing"):
        writer.finalize(verify=True)
    assert not (writer.path / METADATA_FILE).exists()


def test_empty_and_fully_skipped_shards(tmp_path: Path) -> None:
    ids = synthetic_image_ids(4)
    writer = StoreWriter.create_or_resume(
        tmp_path,
        synthetic_identity(ids, d=D, grid=GRID),
        ids,
        images_per_shard=2,
        label_columns=list(LABEL_COLUMNS),
    )
    empty = pd.DataFrame(
        {"image_id": pd.Series(dtype=str), "row": pd.Series(dtype=int), "col": pd.Series(dtype=int)}
    )
    writer.write_shard(
        0, np.zeros((0, D), np.float16), empty, {"img00000": "unreadable", "img00001": "unreadable"}
    )
    write(writer, 1)
    assert writer.shard_ids() == [0, 1]
    reader = writer.finalize()
    assert list(reader.shard_token_counts) == [0, 16]
    assert reader.shard_features(0).shape == (0, D)
    assert sum(len(b) for b in reader.iter_batches(5, shuffle=True)) == 16
    assert len(reader.index()) == 16


def test_write_synthetic_store_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_store(tmp_path / "a", n_images=9, images_per_shard=2)
    b = write_synthetic_store(tmp_path / "b", n_images=9, images_per_shard=2)
    assert a.path.name == b.path.name
    assert folder_bytes(a.path) == folder_bytes(b.path)
