"""The bundle: one folder that ties a dataset, a backbone, heads and an SAE to their analysis tables.

    bundle = open_bundle("weights/demo/bundle")          # BundleStaleError when its inputs changed
    bundle.contributions(image_id, "calcification")      # ranked latent contributions to the logit
    bundle.logits(scale_vector(bundle.d_sae, suppress=bundle.topk_union("mass", 10)))

The format is documented in docs/bundle.md.
"""

from mammo_sae.bundle.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    BundleError,
    BundleStaleError,
    DatasetNotFoundError,
)
from mammo_sae.bundle.reader import Bundle, open_bundle

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "BundleStaleError",
    "DatasetNotFoundError",
    "open_bundle",
]
