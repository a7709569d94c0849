"""Reading a store: refusals with the fix, exact sequential order, shuffled epochs, bounded memory, resume."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from store_fixtures import (
    LABEL_COLUMNS,
    synthetic_identity,
    synthetic_image_ids,
    synthetic_shard,
    write_synthetic_store,
)

from mammo_sae.store import StoreError, StoreReader, StoreWriter, open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> StoreReader:
    """15 images, 8 tokens each (one skipped), 4 images per shard: 112 tokens in 4 uneven shards."""
    return write_synthetic_store(
        tmp_path_factory.mktemp("store"), n_images=15, d=16, images_per_shard=4, skip={"img00005"}
    )


def token_numbers(batches: list) -> np.ndarray:
    return np.concatenate([rows.index.to_numpy() for _, rows in batches])


# --- refusals ---------------------------------------------------------------------------------------------


def test_an_incomplete_store_is_refused_with_the_fix(tmp_path: Path) -> None:
    ids = synthetic_image_ids(6)
    writer = StoreWriter.create_or_resume(
        tmp_path, synthetic_identity(ids), ids, images_per_shard=2, label_columns=list(LABEL_COLUMNS)
    )
    writer.write_shard(0, *synthetic_shard(writer.shard_images(0), d=16, grid=(6, 4), tokens_per_image=8))
    with pytest.raises(
        StoreError, match=r"incomplete: 1 of 3 shards .*run the extraction command again to finish"
    ):
        StoreReader(writer.path)
    with pytest.raises(StoreError, match="not an activation store"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nowhere")


def damaged_copy(store: StoreReader, tmp_path: Path) -> Path:
    copy = tmp_path / store.path.name
    copy.mkdir()
    for file in store.path.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    return copy


def test_missing_truncated_and_corrupt_shards_are_named_with_the_repair(
    store: StoreReader, tmp_path: Path
) -> None:
    path = damaged_copy(store, tmp_path)
    npy = path / "shard-00002.npy"
    original = npy.read_bytes()

    npy.write_bytes(original[:-10])
    with pytest.raises(StoreError, match=r"shard 2: .*shard-00002.npy has \d+ bytes.*truncated") as error:
        StoreReader(path)
    assert f"rm -f {path}/shard-00002.*" in str(error.value) and "run the extraction command again" in str(
        error.value
    )

    flipped = bytearray(original)
    flipped[-3] ^= 0x40
    npy.write_bytes(bytes(flipped))
    StoreReader(path)  # same size: only a full check sees it
    with pytest.raises(StoreError, match=r"shard-00002\.npy does not match its sha256"):
        StoreReader(path, verify=True)
    with pytest.raises(StoreError, match="corrupt"):
        StoreReader(path).verify()

    npy.write_bytes(original)
    (path / "shard-00003.index.parquet").unlink()
    with pytest.raises(StoreError, match=r"shard 3: .*shard-00003.index.parquet is missing"):
        StoreReader(path)


def test_wrong_format_version_and_edited_metadata_are_refused(store: StoreReader, tmp_path: Path) -> None:
    path = damaged_copy(store, tmp_path)
    metadata = json.loads((path / "metadata.json").read_text())
    (path / "metadata.json").write_text(json.dumps({**metadata, "format_version": 99}))
    with pytest.raises(StoreError, match="format version 99, but this mammo-sae reads version 1"):
        StoreReader(path)
    (path / "metadata.json").write_text(
        json.dumps({**metadata, "identity": {**metadata["identity"], "d": 8}})
    )
    with pytest.raises(StoreError, match="does not hash to the store id"):
        StoreReader(path)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(StoreError, match="not JSON"):
        StoreReader(path)


# --- sequential ---------------------------------------------------------------------------------------------


def test_sequential_batches_are_the_exact_tokens_in_order(store: StoreReader) -> None:
    everything = store.features()
    assert everything.shape == (112, 16) and everything.dtype == np.float32
    batches = list(store.iter_batches(10))
    assert [len(b) for b in batches] == [10] * 11 + [2]
    np.testing.assert_array_equal(np.concatenate(batches), everything)
    assert [len(b) for b in store.iter_batches(10, drop_last=True)] == [10] * 11
    with_index = list(store.stream(25, with_index=True))
    np.testing.assert_array_equal(token_numbers(with_index), np.arange(112))
    for features, rows in with_index:
        np.testing.assert_array_equal(features, everything[rows.index])
        assert list(rows.columns) == ["image_id", "row", "col", *LABEL_COLUMNS]
    (tensor,) = list(store.iter_batches(200, as_torch=True, shards=[1]))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), everything[32:56])


# --- shuffled -----------------------------------------------------------------------------------------------


def test_a_shuffled_epoch_has_every_token_exactly_once(store: StoreReader) -> None:
    everything = store.features()
    for buffer_tokens in (40, 60, 10**6):
        batches = list(store.stream(8, shuffle=True, seed=1, buffer_tokens=buffer_tokens, with_index=True))
        numbers = token_numbers(batches)
        assert sorted(numbers.tolist()) == list(range(112))
        assert not np.array_equal(numbers, np.arange(112))
        for features, rows in batches:
            np.testing.assert_array_equal(features, everything[rows.index])
    dropped = list(store.iter_batches(10, shuffle=True, drop_last=True, buffer_tokens=41))
    assert [len(b) for b in dropped] == [10] * 11


def test_shuffling_is_reproducible_per_seed_and_differs_across_seeds_and_epochs(store: StoreReader) -> None:
    def epoch(seed: int, e: int) -> np.ndarray:
        return np.concatenate(list(store.iter_batches(8, shuffle=True, seed=seed, epoch=e, buffer_tokens=40)))

    np.testing.assert_array_equal(epoch(3, 0), epoch(3, 0))
    assert not np.array_equal(epoch(3, 0), epoch(4, 0))
    assert not np.array_equal(epoch(3, 0), epoch(3, 1))
    stream = store.stream(8, shuffle=True, seed=3, buffer_tokens=40)
    first, second = np.concatenate(list(stream)), np.concatenate(list(stream))
    assert stream.epoch == 2 and stream.batch == 0
    np.testing.assert_array_equal(first, epoch(3, 0))
    np.testing.assert_array_equal(second, epoch(3, 1))


def test_the_buffer_must_hold_a_shard_plus_a_batch(store: StoreReader) -> None:
    with pytest.raises(StoreError, match=r"largest shard plus one batch \(32 \+ 8 - 1 = 39 tokens\)"):
        store.stream(8, shuffle=True, buffer_tokens=38)
    assert store.stream(8, shuffle=True, buffer_tokens=39).capacity == 39
    assert store.stream(8, shuffle=True).capacity == 112  # never more than the store holds


def test_memory_stays_bounded_by_the_buffer_on_a_store_much_larger_than_it(tmp_path: Path) -> None:
    d = 128
    big = write_synthetic_store(
        tmp_path, n_images=128, d=d, grid=(8, 8), tokens_per_image=64, images_per_shard=2
    )
    store_bytes = big.n_tokens * d * 4  # the whole store as float32: 4 MiB
    shard_bytes = 128 * d * 4
    batch_size, buffer_tokens = 64, 512
    stream = big.stream(batch_size, shuffle=True, seed=0, buffer_tokens=buffer_tokens)
    buffer_bytes = buffer_tokens * (d * 2 + 8)  # fp16 features + int64 token numbers (docs, section 6)

    tracemalloc.start()
    try:
        seen, total = 0, np.zeros(d, dtype=np.float64)
        for batch in stream:
            seen += len(batch)
            total += batch.sum(axis=0, dtype=np.float64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == big.n_tokens == 8192
    reference = np.zeros(d)
    for k in range(big.n_shards):
        reference += np.asarray(big.shard_features(k), dtype=np.float64).sum(axis=0)
    np.testing.assert_allclose(total, reference, rtol=1e-9)
    bound = buffer_bytes + shard_bytes + 4 * batch_size * d * 4 + 64 * 1024
    assert peak < bound, f"peak {peak} bytes exceeds the documented bound {bound}"
    assert peak < store_bytes / 8


def test_a_stream_resumes_mid_epoch_with_the_same_remaining_batches(store: StoreReader) -> None:
    for shuffle in (True, False):
        settings = {"shuffle": shuffle, "seed": 7, "buffer_tokens": 40}
        uninterrupted = store.stream(6, **settings)
        epochs = [[b.copy() for b in uninterrupted] for _ in range(2)]

        stream = store.stream(6, **settings)
        iterator = iter(stream)
        head = [next(iterator) for _ in range(5)]
        state = json.loads(json.dumps(stream.state_dict()))
        assert state["epoch"] == 0 and state["batch"] == 5
        del iterator

        resumed = store.stream(6, **settings, state=state)
        rest = list(resumed)
        assert len(head) + len(rest) == len(epochs[0]) == 19
        for got, want in zip(head + rest, epochs[0], strict=True):
            np.testing.assert_array_equal(got, want)
        assert resumed.state_dict()["epoch"] == 1
        for got, want in zip(resumed, epochs[1], strict=True):
            np.testing.assert_array_equal(got, want)
        # the functional form takes the same state
        again = list(store.iter_batches(6, **settings, state=state))
        np.testing.assert_array_equal(np.concatenate(again), np.concatenate(rest))


def test_a_token_selection_streams_exactly_those_tokens_and_resumes(store: StoreReader) -> None:
    everything = store.features()
    tokens = np.sort(np.random.default_rng(3).choice(store.n_tokens, size=50, replace=False))
    batches = list(store.stream(8, tokens=tokens, with_index=True))  # sequential: in token order
    np.testing.assert_array_equal(token_numbers(batches), tokens)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), everything[tokens])
    settings = {"shuffle": True, "seed": 5, "buffer_tokens": 40, "tokens": tokens}
    shuffled = list(store.stream(8, **settings, with_index=True))
    got = token_numbers(shuffled)
    assert sorted(got.tolist()) == tokens.tolist() and not np.array_equal(got, tokens)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in shuffled]), everything[got])
    stream = store.stream(8, **settings)
    iterator = iter(stream)
    head = [next(iterator) for _ in range(3)]
    state = json.loads(json.dumps(stream.state_dict()))
    assert state["tokens_sha256"] is not None
    rest = list(store.stream(8, **settings, state=state))
    np.testing.assert_array_equal(np.concatenate(head + rest), np.concatenate([x for x, _ in shuffled]))
    with pytest.raises(StoreError, match="tokens_sha256"):  # a state saved for other tokens
        store.stream(8, shuffle=True, seed=5, buffer_tokens=40, tokens=tokens[1:], state=state)
    with pytest.raises(StoreError, match="outside the stream's shards"):
        store.stream(8, shards=[0], tokens=tokens)
    with pytest.raises(StoreError, match="sorted and unique"):
        store.stream(8, tokens=tokens[::-1])
    old_state = {k: v for k, v in store.stream(8).state_dict().items() if k != "tokens_sha256"}
    assert store.stream(8, state=old_state).batch == 0  # states saved before selections existed still load


def test_only_the_newest_iterator_of_a_stream_may_run(store: StoreReader) -> None:
    expected = list(store.iter_batches(8, shuffle=True, buffer_tokens=40))
    stream = store.stream(8, shuffle=True, buffer_tokens=40)
    old = iter(stream)
    next(old)
    new = iter(stream)  # continues from batch 1, sharing the buffer
    first = next(new)
    with pytest.raises(StoreError, match="one iterator at a time"):
        next(old)
    np.testing.assert_array_equal(np.concatenate([first, *new]), np.concatenate(expected[1:]))


def test_a_state_from_other_settings_is_refused(store: StoreReader) -> None:
    state = store.stream(6, shuffle=True, seed=1, buffer_tokens=40).state_dict()
    with pytest.raises(StoreError, match="seed: saved 1, now 2"):
        store.stream(6, shuffle=True, seed=2, buffer_tokens=40, state=state)
    with pytest.raises(StoreError, match="out of range"):
        store.stream(6, shuffle=True, seed=1, buffer_tokens=40, state={**state, "batch": 99})
    with pytest.raises(StoreError, match="not a batch-stream state"):
        store.stream(6, state={"epoch": 0})


# --- splits and index ----------------------------------------------------------------------------------------


def test_split_shards_holds_out_whole_shards_deterministically(store: StoreReader) -> None:
    train, validation = store.split_shards(0.25, seed=0)
    assert store.split_shards(0.25, seed=0) == (train, validation)
    assert sorted(train + validation) == [0, 1, 2, 3] and validation and train
    assert {store.split_shards(0.25, seed=s)[1][0] for s in range(10)} != {validation[0]}
    images = set(store.index(train)["image_id"])
    assert not images & set(store.index(validation)["image_id"])
    held = sum(store.shard_token_counts[k] for k in validation)
    assert held >= 0.25 * store.n_tokens
    streamed = np.concatenate(list(store.iter_batches(16, shuffle=True, shards=validation)))
    assert len(streamed) == held
    with pytest.raises(StoreError, match="leaves no training shard"):
        store.split_shards(0.99)
    with pytest.raises(StoreError, match=r"in \(0, 1\)"):
        store.split_shards(0.0)


def test_index_and_shard_accessors(store: StoreReader) -> None:
    index = store.index()
    assert len(index) == store.n_tokens and index.index[0] == 0
    assert "img00005" not in set(index["image_id"])
    assert store.shard_images(1) == ["img00004", "img00005", "img00006", "img00007"]
    assert list(store.shard_index(1).index[:2]) == [32, 33]
    assert index["row"].max() < 6 and index["col"].max() < 4
    shown = repr(store).replace(str(store.path), "PATH")  # the tmp path may contain any digits
    assert "15 images" not in shown and "14 images" in shown
