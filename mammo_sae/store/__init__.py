"""The activation store: sharded, memory-mapped fp16 token features named by a hash of their identity.

``StoreWriter`` writes shards resumably from one or many processes; ``StoreReader`` streams sequential
or shuffled batches in bounded memory; ``streaming_stats`` gives per-feature statistics in one pass.
The on-disk protocol is documented in docs/activation-store.md (``store_path``, ``identity_hash`` and
``image_list_digest`` are its naming rules).
"""

from mammo_sae.store.format import METADATA_FILE, StoreError, identity_hash, image_list_digest, store_path
from mammo_sae.store.reader import StoreReader, open_store
from mammo_sae.store.stats import FeatureStats, streaming_stats
from mammo_sae.store.writer import StoreWriter

__all__ = [
    "METADATA_FILE",
    "FeatureStats",
    "StoreError",
    "StoreReader",
    "StoreWriter",
    "identity_hash",
    "image_list_digest",
    "open_store",
    "store_path",
    "streaming_stats",
]
