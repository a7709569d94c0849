"""The activation store: sharded, memory-mapped fp16 token features named by a hash of their identity.

``StoreWriter`` writes shards resumably from one or many processes; ``StoreReader`` streams sequential
or shuffled batches in bounded memory; ``streaming_stats`` gives per-feature statistics in one pass.
The on-disk protocol is documented in docs/activation-store.md.
"""

from mammo_sae.store.format import (
    FORMAT_VERSION,
    METADATA_FILE,
    PLAN_FILE,
    StoreError,
    identity_hash,
    image_list_digest,
    store_path,
    suggest_images_per_shard,
)
from mammo_sae.store.reader import StoreReader, open_store
from mammo_sae.store.stats import FeatureStats, RunningStats, streaming_stats
from mammo_sae.store.stream import DEFAULT_BUFFER_TOKENS, BatchStream
from mammo_sae.store.writer import StoreWriter, shard_files

__all__ = [
    "DEFAULT_BUFFER_TOKENS",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "PLAN_FILE",
    "BatchStream",
    "FeatureStats",
    "RunningStats",
    "StoreError",
    "StoreReader",
    "StoreWriter",
    "identity_hash",
    "image_list_digest",
    "open_store",
    "shard_files",
    "store_path",
    "streaming_stats",
    "suggest_images_per_shard",
]
