"""Synthetic mammography phantoms in the exact VinDr-Mammo layout, with ground truth (research use only).

Real VinDr-Mammo images are credentialed; these phantoms let the whole pipeline (classifier, SAE,
concept neurons, confounder analysis) run and be tested anywhere. They are NOT patient data and carry
no diagnostic validity: every file says so (DICOM tags, manifest, docs/phantoms.md).

    from mammo_sae.data.phantom import PhantomConfig, generate_dataset
    summary = generate_dataset("data/phantoms", PhantomConfig(studies=50, seed=0))
"""

from mammo_sae.data.phantom.config import (
    DEFAULT_SIZE,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    OutputNotEmptyError,
    PhantomConfig,
    PhantomConfigError,
    PhantomError,
    parse_size,
)
from mammo_sae.data.phantom.dataset import (
    BREAST_COLUMNS,
    FINDING_COLUMNS,
    MANIFEST,
    METADATA_COLUMNS,
    SYNTHETIC_NOTICE,
    TRUTH_COLUMNS,
    TRUTH_CSV,
    generate_dataset,
    generate_from_config,
    is_phantom_dataset,
    load_manifest,
    pixel_checksum,
    verify_dataset,
)
from mammo_sae.data.phantom.plan import VIEWS, ImagePlan, PlannedObject, plan_dataset
from mammo_sae.data.phantom.render import RenderedImage, TruthObject, render_image

__all__ = [
    "BREAST_COLUMNS",
    "DEFAULT_SIZE",
    "FINDING_COLUMNS",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "MANIFEST",
    "METADATA_COLUMNS",
    "SYNTHETIC_NOTICE",
    "TRUTH_COLUMNS",
    "TRUTH_CSV",
    "VIEWS",
    "ImagePlan",
    "OutputNotEmptyError",
    "PhantomConfig",
    "PhantomConfigError",
    "PhantomError",
    "PlannedObject",
    "RenderedImage",
    "TruthObject",
    "generate_dataset",
    "generate_from_config",
    "is_phantom_dataset",
    "load_manifest",
    "parse_size",
    "pixel_checksum",
    "plan_dataset",
    "render_image",
    "verify_dataset",
]
