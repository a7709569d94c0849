"""Concept scores taken from another bundle: an analysis of images without labels (an imported DICOM folder)
ranks its latents by the class-wise scores a bundle of the same SAE computed on labelled images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_sae.bundle import format as bf
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.writing.config import AnalyzeError


@dataclass(frozen=True)
class ScoreSource:
    """The scores table of a bundle, the concepts it scores, its score split and what the manifest records."""

    scores: pd.DataFrame
    concepts: tuple[str, ...]
    split: str
    fingerprint: dict[str, Any]


def load_score_bundle(path: str | Path, sae_fingerprint: dict[str, Any], concepts: str | None) -> ScoreSource:
    """The scores of the bundle at ``path`` (checked whole), after checking it was built with the same SAE;
    ``concepts``: the --concepts flag (a subset of the bundle's), None for all of them."""
    try:
        bundle = Bundle.open(path, check_inputs=False, verify=True)
    except bf.BundleError as error:
        raise AnalyzeError(f"--score-bundle {path}: {error}") from None
    theirs = bundle.manifest["inputs"]["sae"]
    if theirs["weights_sha256"] != sae_fingerprint["weights_sha256"]:
        raise AnalyzeError(
            f"--score-bundle {path} was built with another SAE ({theirs['name']}, weights sha256 "
            f"{theirs['weights_sha256'][:12]}): its scores rank other latents. Give a bundle of this SAE, or "
            "--score-data with a labelled root"
        )
    chosen = bundle.concepts
    if concepts:
        chosen = tuple(c.strip() for c in concepts.split(",") if c.strip())
        unknown = [c for c in chosen if c not in bundle.concepts]
        if unknown:
            raise AnalyzeError(
                f"--concepts {unknown} are not scored by --score-bundle {path} ({bundle.concepts})"
            )
    split = str(bundle.manifest["splits"]["score"])
    fingerprint = {
        "name": bundle.path.resolve().name,
        "run_id": bundle.manifest["run_id"],
        "scores_sha256": bundle.manifest["files"][bf.SCORES]["sha256"],
        "score_split": split,
        "dataset_kind": bundle.manifest["dataset_kind"],
        "models_synthetic": bundle.models_synthetic,
    }
    return ScoreSource(bundle.scores, chosen, split, fingerprint)
