"""BatchStream: sequential or shuffled batches from a store, in bounded memory, resumable mid-epoch.

Shuffled order: each epoch permutes the shard order with ``default_rng([seed, epoch])``; whole shards are
read sequentially into a buffer of at most ``buffer_tokens`` tokens (kept in the store's dtype); whenever
the next shard does not fit, a batch of tokens drawn uniformly at random without replacement leaves the
buffer. Every token of the selected shards leaves exactly once per epoch. The draw sequence depends only
on the seed, the epoch, the shard sizes and the settings, so a stream can replay it on token numbers
alone (no feature reads) to resume at any batch.

``tokens`` narrows the stream to a set of global token numbers inside its shards (a validation split
that holds out tokens rather than whole shards); each shard then contributes only its selected rows.
Feature batches are [B, d] arrays (``x_bd``); token numbers travel beside them as [B] int64 arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mammo_sae.core.hashing import sha256_bytes
from mammo_sae.store.format import StoreError

if TYPE_CHECKING:
    from mammo_sae.store.reader import StoreReader

DEFAULT_BUFFER_TOKENS = 2**20
STATE_KEYS = ("store_id", "batch_size", "shuffle", "seed", "buffer_tokens", "drop_last", "shards")
OPTIONAL_STATE_KEYS = ("tokens_sha256",)  # absent from states saved before token selections existed


class BatchStream:
    """Batches of one store, epoch after epoch; ``state_dict()`` / ``load_state_dict()`` resume mid-epoch.

    Iterating the stream yields the rest of the current epoch; when the epoch ends, ``epoch`` advances and
    ``batch`` returns to 0, so ``for epoch in ...: for x in stream: ...`` walks epochs. ``batch`` counts the
    batches already handed out in this epoch (a batch counts as consumed once yielded). ``tokens``
    (sorted global token numbers inside ``shards``) keeps only those tokens.
    """

    def __init__(
        self,
        reader: StoreReader,
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
        tokens: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        self.reader = reader
        self.batch_size = _positive_int("batch_size", batch_size)
        self.shuffle = bool(shuffle)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise StoreError(f"seed must be a non-negative int (got {seed!r})")
        self.seed = int(seed)
        self.buffer_tokens = _positive_int("buffer_tokens", buffer_tokens)
        self.drop_last = bool(drop_last)
        all_shards = range(reader.n_shards)
        self.shards: list[int] = [reader._check_shard(k) for k in (all_shards if shards is None else shards)]
        if not self.shards:
            raise StoreError("a batch stream needs at least one shard")
        if len(set(self.shards)) != len(self.shards):
            raise StoreError(f"shards lists a shard twice: {self.shards}")
        self.dtype = reader.dtype if dtype is None else np.dtype(dtype)
        self.as_torch = bool(as_torch)
        self.with_index = bool(with_index)
        self.epoch = _non_negative_int("epoch", epoch)
        self.batch = 0
        self._generation = 0
        self._rows_shard: int | None = None  # the shard whose index table _rows_table holds
        self._rows_table: Any = None
        self._storage: np.ndarray | None = None  # the shuffle buffer's features, kept across epochs

        self._rows_of: dict[int, np.ndarray] | None = None  # shard -> selected local rows (sorted)
        self.tokens_sha256: str | None = None
        if tokens is not None:
            self._rows_of, self.tokens_sha256 = _select_rows(reader, self.shards, tokens)
            self._sizes = {k: len(self._rows_of[k]) for k in self.shards}
        else:
            self._sizes = {k: int(reader.shard_token_counts[k]) for k in self.shards}
        self.n_tokens = sum(self._sizes.values())
        self.capacity = min(self.buffer_tokens, self.n_tokens)
        if not self.n_tokens and tokens is not None:
            raise StoreError("a batch stream's token selection is empty")
        largest = max(self._sizes.values())
        if self.shuffle and self.capacity < self.n_tokens and self.capacity < largest + self.batch_size - 1:
            raise StoreError(
                f"buffer_tokens={self.buffer_tokens} is too small for shuffling {reader.path}: it must hold the "
                f"largest shard plus one batch ({largest} + {self.batch_size} - 1 = "
                f"{largest + self.batch_size - 1} tokens); raise buffer_tokens or lower batch_size"
            )

    # --- sizes and state --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.n_tokens, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def state_dict(self) -> dict[str, Any]:
        """A small JSON-able state: the position (epoch, batch) and the settings it is valid for."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "store_id": self.reader.store_id,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "buffer_tokens": self.buffer_tokens,
            "drop_last": self.drop_last,
            "shards": list(self.shards),
            "tokens_sha256": self.tokens_sha256,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; the settings must match the ones the state was saved with."""
        mine = self.state_dict()
        try:
            different = [key for key in STATE_KEYS if state[key] != mine[key]]
            different += [key for key in OPTIONAL_STATE_KEYS if state.get(key) != mine[key]]
            epoch, batch = int(state["epoch"]), int(state["batch"])
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f"not a batch-stream state ({type(error).__name__}: {error})") from None
        if different:
            detail = ", ".join(f"{key}: saved {state.get(key)!r}, now {mine[key]!r}" for key in different)
            raise StoreError(
                f"the saved stream state belongs to other settings ({detail}); open the stream with the "
                "saved settings to resume it"
            )
        if epoch < 0 or not 0 <= batch <= len(self):
            raise StoreError(f"stream state out of range: epoch {epoch}, batch {batch} of {len(self)}")
        self.epoch, self.batch = epoch, batch

    # --- iteration --------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        self._generation += 1
        return self._run(self._generation)

    def _run(self, generation: int) -> Iterator[Any]:
        start = self.batch
        plan = self._shuffled(start, generation) if self.shuffle else self._sequential(start)
        for x_bd, token_ids_b in plan:
            self._check_generation(generation)
            self.batch += 1
            yield self._package(x_bd, token_ids_b)
        if generation == self._generation:
            self.epoch += 1
            self.batch = 0

    def _check_generation(self, generation: int) -> None:
        if generation != self._generation:
            raise StoreError("this stream was iterated again elsewhere; use one iterator at a time")

    def _package(self, x_bd: np.ndarray, token_ids_b: np.ndarray) -> Any:
        assert x_bd.shape == (len(token_ids_b), self.reader.d), (x_bd.shape, len(token_ids_b))
        out: Any = x_bd
        if self.as_torch:
            import torch

            out = torch.from_numpy(x_bd)
            if x_bd.dtype != self.dtype:  # torch converts on several threads
                out = out.to(torch.from_numpy(np.empty(0, dtype=self.dtype)).dtype)
        elif x_bd.dtype != self.dtype:
            out = x_bd.astype(self.dtype)
        if not self.with_index:
            return out
        rows = self.reader.index().iloc[token_ids_b] if self.shuffle else self._rows(token_ids_b)
        return out, rows

    # --- sequential -------------------------------------------------------------------------------------

    def _sequential(self, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        sizes = np.array([self._sizes[k] for k in self.shards], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        offsets = self.reader.shard_offsets
        current: dict[int, np.ndarray] = {}  # at most one open memory map
        for j in range(start, len(self)):
            lo, hi = j * self.batch_size, min((j + 1) * self.batch_size, self.n_tokens)
            x_bd = np.empty((hi - lo, self.reader.d), dtype=self.dtype)
            token_ids_b = np.empty(hi - lo, dtype=np.int64)
            filled = 0
            while lo < hi:
                i = int(np.searchsorted(bounds, lo, side="right")) - 1
                k = self.shards[i]
                take = int(min(hi, bounds[i + 1]) - lo)
                local = int(lo - bounds[i])
                if k not in current:
                    current.clear()
                    current[k] = self.reader.shard_features(k)
                if self._rows_of is None:
                    rows = np.arange(local, local + take)
                    x_bd[filled : filled + take] = current[k][local : local + take]
                else:
                    rows = self._rows_of[k][local : local + take]
                    x_bd[filled : filled + take] = current[k][rows]
                token_ids_b[filled : filled + take] = offsets[k] + rows
                filled += take
                lo += take
            yield x_bd, token_ids_b

    def _rows(self, token_ids: np.ndarray):
        """Index rows of a sequential batch, read shard by shard (one shard's table cached)."""
        import pandas as pd

        shard_of = np.searchsorted(self.reader.shard_offsets, token_ids, side="right") - 1
        parts = []
        for k in dict.fromkeys(shard_of.tolist()):
            if self._rows_shard != k:
                self._rows_table = self.reader.shard_index(k)
                self._rows_shard = k
            mine = token_ids[shard_of == k]
            parts.append(self._rows_table.loc[mine])
        return pd.concat(parts, axis=0) if len(parts) > 1 else parts[0]

    # --- shuffled ---------------------------------------------------------------------------------------

    def _shuffled(self, start: int, generation: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = [self.shards[i] for i in rng.permutation(len(self.shards))]
        if self._storage is None:  # allocated once, reused by every epoch
            self._storage = np.empty((self.capacity, self.reader.d), dtype=self.reader.dtype)
        buffer = _ShuffleBuffer(self.reader, self._storage, rng, materialized=start == 0)
        emitted = 0

        def draw(count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            nonlocal emitted
            self._check_generation(generation)  # a newer iterator owns the shared buffer now
            if emitted < start:  # replaying to the resume point: token numbers only
                buffer.draw(count, gather=False)
            else:
                if not buffer.materialized:
                    buffer.materialize()
                x_bd, token_ids_b = buffer.draw(count, gather=True)
                yield x_bd, token_ids_b
            emitted += 1

        for k in order:
            size = self._sizes[k]
            while buffer.n + size > self.capacity:
                yield from draw(self.batch_size)
            self._check_generation(generation)
            buffer.load(k, None if self._rows_of is None else self._rows_of[k])
        while buffer.n >= self.batch_size:
            yield from draw(self.batch_size)
        if buffer.n and not self.drop_last:
            yield from draw(buffer.n)


class _ShuffleBuffer:
    """Tokens waiting to be drawn: their numbers ``token_ids`` [capacity] and (once materialized) their
    ``features`` [capacity, d]; the first ``n`` slots are in use."""

    def __init__(
        self, reader: StoreReader, storage: np.ndarray, rng: np.random.Generator, *, materialized: bool
    ):
        self.reader = reader
        self.rng = rng
        self.n = 0
        self.token_ids = np.empty(len(storage), dtype=np.int64)
        self._storage = storage
        self.features = storage if materialized else None

    @property
    def materialized(self) -> bool:
        return self.features is not None

    def load(self, k: int, rows: np.ndarray | None = None) -> None:
        """Append all of shard k (one sequential read of the whole shard), or only its local ``rows``."""
        size = int(self.reader.shard_token_counts[k]) if rows is None else len(rows)
        start = int(self.reader.shard_offsets[k])
        if rows is None:
            if self.features is not None:
                self.reader.read_shard_into(k, self.features[self.n : self.n + size])
            self.token_ids[self.n : self.n + size] = np.arange(start, start + size)
        else:
            if self.features is not None and size:
                self.features[self.n : self.n + size] = self.reader.shard_features(k)[rows]
            self.token_ids[self.n : self.n + size] = start + rows
        self.n += size

    def materialize(self) -> None:
        """Fill in the features of the tokens now waiting (after a replay), shard by shard."""
        self.features = self._storage
        waiting = self.token_ids[: self.n]
        shard_of = np.searchsorted(self.reader.shard_offsets, waiting, side="right") - 1
        for k in np.unique(shard_of):
            positions = np.flatnonzero(shard_of == k)
            local = waiting[positions] - self.reader.shard_offsets[k]
            order = np.argsort(local, kind="stable")  # read each shard front to back
            self.features[positions[order]] = self.reader.shard_features(int(k))[local[order]]

    def draw(self, count: int, *, gather: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """Remove ``count`` random tokens; the last ``count`` slots fill the holes they leave."""
        n = self.n
        take_b = self.rng.choice(n, size=count, replace=False)
        token_ids_b = self.token_ids[take_b]
        x_bd = self.features[take_b] if gather and self.features is not None else None
        keep = n - count
        holes = take_b[take_b < keep]
        if holes.size:
            tail = np.arange(keep, n)
            movers = tail[~np.isin(tail, take_b)]
            self.token_ids[holes] = self.token_ids[movers]
            if self.features is not None:
                self.features[holes] = self.features[movers]
        self.n = keep
        return x_bd, token_ids_b


def _select_rows(
    reader: StoreReader, shards: Sequence[int], tokens: np.ndarray | Sequence[int]
) -> tuple[dict[int, np.ndarray], str]:
    """``({shard: sorted local rows}, sha256 of the token numbers)`` of a selection inside ``shards``."""
    tokens_n = np.asarray(tokens)
    if tokens_n.ndim != 1 or (tokens_n.size and not np.issubdtype(tokens_n.dtype, np.integer)):
        raise StoreError(
            f"tokens must be a 1-D array of token numbers, got {tokens_n.dtype} {tokens_n.shape}"
        )
    tokens_n = tokens_n.astype(np.int64)
    if tokens_n.size and (np.diff(tokens_n) <= 0).any():
        raise StoreError("tokens must be sorted and unique")
    offsets = reader.shard_offsets
    shard_of_n = np.searchsorted(offsets, tokens_n, side="right") - 1
    outside = (
        ~np.isin(shard_of_n, np.asarray(shards, dtype=np.int64))
        | (tokens_n < 0)
        | (tokens_n >= reader.n_tokens)
    )
    if outside.any():
        raise StoreError(
            f"tokens hold {int(outside.sum())} token number(s) outside the stream's shards {list(shards)} "
            f"(first {int(tokens_n[outside][0])})"
        )
    rows_of = {int(k): tokens_n[shard_of_n == k] - offsets[k] for k in shards}
    return rows_of, sha256_bytes(tokens_n.tobytes())


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise StoreError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise StoreError(f"{name} must be a non-negative int (got {value!r})")
    return int(value)
