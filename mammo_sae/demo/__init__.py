"""The embedded default: a phantom-trained classifier, SAE and analysis bundle, built by the project's own
commands (``python -m mammo_sae.demo``) and shipped in ``weights/demo``. Synthetic data, research use only.

    from mammo_sae.demo import demo_bundle_dir, ensure_demo_dataset
    root = ensure_demo_dataset()       # regenerates the held-out phantoms into the cache, checksum-verified
"""

from mammo_sae.demo.dataset import (
    DEMO_DIR,
    DemoError,
    demo_bundle_dir,
    demo_dataset_ready,
    demo_dataset_root,
    ensure_demo_dataset,
    read_demo_manifest,
)

__all__ = [
    "DEMO_DIR",
    "DemoError",
    "demo_bundle_dir",
    "demo_dataset_ready",
    "demo_dataset_root",
    "ensure_demo_dataset",
    "read_demo_manifest",
]
