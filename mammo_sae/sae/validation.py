"""Which tokens of a store train the SAE and which measure it (``eval.json``), and why.

Whole shards (so whole images) are held out when the store has enough of them: the validation tokens
then come from images the SAE never saw. A store with a single shard holding tokens (a few extracted
images) or one where the fraction would take every shard falls back to holding out tokens drawn at
random (their images also give training tokens); a store too small even for that, or
``--validation-fraction 0``, is evaluated on its training tokens. The choice and its reason are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mammo_sae.core.hashing import sha256_bytes
from mammo_sae.store import StoreError, StoreReader

KINDS = ("shards", "tokens", "none")


@dataclass(frozen=True, eq=False)
class Split:
    """Training and validation tokens: shards, narrowed to ``*_tokens`` (sorted global token numbers)
    where tokens rather than shards are held out."""

    kind: str  # "shards" | "tokens" | "none"
    reason: str
    fraction: float
    train_shards: list[int]
    val_shards: list[int]  # empty for "none"
    train_tokens: np.ndarray | None = None  # kind "tokens" only
    val_tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert (self.kind == "tokens") == (self.train_tokens is not None) == (self.val_tokens is not None)
        assert (self.kind == "none") == (not self.val_shards)

    @property
    def warning(self) -> str | None:
        """What a user should know about this split (None for the default, held-out shards)."""
        return None if self.kind == "shards" else self.reason

    def checkpoint_record(self) -> dict[str, Any]:
        """What a resumed run must find again (shard lists; the held-out tokens by their hash)."""
        record: dict[str, Any] = {"train": self.train_shards, "validation": self.val_shards}
        if self.val_tokens is not None:
            record["validation_tokens_sha256"] = sha256_bytes(self.val_tokens.tobytes())
        return record

    def eval_record(self, reader: StoreReader) -> dict[str, Any]:
        """The ``validation`` entry of eval.json: which tokens were held out, how many, and why."""
        if self.kind == "none":
            held = 0
        elif self.val_tokens is not None:
            held = len(self.val_tokens)
        else:
            held = int(sum(int(reader.shard_token_counts[k]) for k in self.val_shards))
        return {"kind": self.kind, "fraction": self.fraction, "held_out_tokens": held, "reason": self.reason}


def choose_split(reader: StoreReader, fraction: float, seed: int) -> Split:
    """The split of ``reader`` for ``--validation-fraction fraction`` (see the module docstring)."""
    every = list(range(reader.n_shards))
    if fraction == 0:
        reason = "--validation-fraction 0: the metrics in eval.json are on the training tokens"
        return Split("none", reason, 0.0, every, [])
    try:
        train, validation = reader.split_shards(fraction, seed=seed)
    except StoreError as error:
        why = str(error)
    else:
        reason = f"{len(validation)} whole shard(s) held out (their images are not in training)"
        return Split("shards", reason, float(fraction), train, validation)
    nonempty = [k for k in every if reader.shard_token_counts[k] > 0]
    n_held = max(1, round(fraction * reader.n_tokens))
    if reader.n_tokens - n_held < 1:
        reason = (
            f"no validation: {why}, and the store's {reader.n_tokens} token(s) are too few to hold out "
            "tokens; the metrics in eval.json are on the training tokens (extract more images)"
        )
        return Split("none", reason, float(fraction), every, [])
    order = np.random.default_rng([seed, 11]).permutation(reader.n_tokens)
    val_tokens = np.sort(order[:n_held]).astype(np.int64)
    train_tokens = np.sort(order[n_held:]).astype(np.int64)
    reason = (
        f"{n_held} token(s) ({fraction:.0%}) held out at random instead of whole shards because {why}; "
        "their images also give training tokens, so the metrics in eval.json are optimistic (extract more "
        "images, or fewer images per shard, for a held-out set of unseen images)"
    )
    return Split("tokens", reason, float(fraction), nonempty, nonempty, train_tokens, val_tokens)
