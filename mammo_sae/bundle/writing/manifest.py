"""The manifest of a bundle being written: what it was computed from (by identity, never by a path of this
machine outside the bundle), the command that rebuilds it on a fresh machine, warnings and headline numbers.

The recorded command runs in the folder that holds the bundle. An input inside the bundle appears as its
path there, one beside the bundle folder as its name, any other as a placeholder (``DATA``, ``CLASSIFIER``,
``SAE``, ...) whose meaning ``placeholders`` gives: the phantom generator command that remakes a synthetic
dataset, or the content hash that identifies a file or a VinDr root.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mammo_sae import __version__
from mammo_sae.bundle import format as bf
from mammo_sae.bundle.fingerprints import (
    WEIGHTS_PLACEHOLDER,
    all_phantoms,
    phantom_command,
    portable_spec,
)
from mammo_sae.bundle.format import without_locations
from mammo_sae.bundle.writing.config import LOCATION_KNOBS, RUNTIME_KNOBS, AnalyzeConfig
from mammo_sae.core.hashing import sha256_json
from mammo_sae.models import parse_spec
from mammo_sae.sae import SparseAutoencoder


def run_identity(config: AnalyzeConfig, fingerprints: dict[str, Any]) -> str:
    """What a complete bundle or an unfinished run must match to be reused: every knob that changes the
    numbers and the inputs' content (not where they are)."""
    knobs = {k: v for k, v in asdict(config).items() if k not in (*LOCATION_KNOBS, *RUNTIME_KNOBS)}
    knobs["backbone"] = None if config.backbone is None else portable_spec(config.backbone)
    identity = {"config": knobs, "inputs": without_locations(fingerprints), "package_version": __version__}
    return sha256_json(identity)


class Placeholders:
    """How the recorded command names each input, relative to the folder that holds the bundle."""

    def __init__(self, out: Path) -> None:
        self.bundle = out.resolve()
        self.meanings: dict[str, str] = {}

    def name(self, path: str | Path, placeholder: str, meaning: str) -> str:
        target = Path(path).resolve()
        if target.is_relative_to(self.bundle):
            return (Path(self.bundle.name) / target.relative_to(self.bundle)).as_posix()
        if target.parent == self.bundle.parent:
            return target.name
        self.meanings[placeholder] = meaning
        return placeholder


def _dataset_meaning(record: dict[str, Any], placeholder: str) -> str:
    phantom = record.get("phantom")
    if phantom:
        return f"the synthetic phantoms made by: {phantom_command(phantom, placeholder)}"
    hashes = ", ".join(f"{name} sha256 {sha}" for name, sha in record["files"].items())
    return f"the {record['kind']} root ({hashes})"


def portable_locations(
    config: AnalyzeConfig, fingerprints: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(location knob -> how the manifest's command names it, placeholder -> what to put there)."""
    names = Placeholders(Path(config.out))
    classifiers = tuple(
        names.name(
            path,
            "CLASSIFIER" if len(config.classifier) == 1 else f"CLASSIFIER_{i + 1}",
            f"the classifier file {record['name']} (sha256 {record['sha256']})",
        )
        for i, (path, record) in enumerate(zip(config.classifier, fingerprints["classifiers"], strict=True))
    )
    sae = fingerprints["sae"]
    values: dict[str, Any] = {
        "out": Path(config.out).resolve().name,
        "data": names.name(config.data, "DATA", _dataset_meaning(fingerprints["dataset"], "DATA")),
        "classifier": classifiers,
        "sae": names.name(
            config.sae, "SAE", f"the SAE folder {sae['name']} (weights sha256 {sae['weights_sha256']})"
        ),
        "score_data": None,
        "score_bundle": None,
        "backbone": None,
    }
    if config.score_data is not None:
        score = fingerprints["score_dataset"]
        values["score_data"] = names.name(
            config.score_data, "SCORE_DATA", _dataset_meaning(score, "SCORE_DATA")
        )
    if config.score_bundle is not None:
        score = fingerprints["score_bundle"]
        values["score_bundle"] = names.name(
            config.score_bundle, "SCORE_BUNDLE", f"the bundle {score['name']} (run {score['run_id']})"
        )
    if config.backbone is not None:
        backbone = fingerprints["backbone"]
        spec = portable_spec(config.backbone)
        if backbone.get("weights_name"):
            weights = names.name(
                parse_spec(config.backbone).path,
                WEIGHTS_PLACEHOLDER,
                f"the backbone weights file {backbone['weights_name']} (sha256 {backbone['weights_sha256']})",
            )
            spec = spec.removesuffix(WEIGHTS_PLACEHOLDER) + weights
        values["backbone"] = spec
    return values, names.meanings


def build_manifest(
    *,
    config: AnalyzeConfig,
    fingerprints: dict[str, Any],
    run_id: str,
    sae: SparseAutoencoder,
    tasks: tuple[str, ...],
    concepts: tuple[str, ...],
    frame_size: tuple[int, int],
    grid: tuple[int, int],
    frames: dict[str, Any] | None,
    skipped: dict[str, str],
    warnings: list[str],
    summary: dict[str, Any],
    labelled: bool = True,
) -> dict[str, Any]:
    """Everything but ``files`` (the writer adds those last). ``labelled``: whether the analysed root has
    labels (an imported DICOM folder has none)."""
    locations, placeholders = portable_locations(config, fingerprints)
    recorded_config = asdict(config) | {
        k: list(v) if isinstance(v, tuple) else v for k, v in locations.items()
    }
    return {
        "format": bf.FORMAT,
        "format_version": bf.FORMAT_VERSION,
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "run_id": run_id,
        "command": config.command(locations),
        "placeholders": placeholders,
        "config": recorded_config,
        "dataset_kind": fingerprints["dataset"]["kind"],
        "synthetic": summary["synthetic"],
        # the models were trained on phantoms (judged by their score data, which is the training data's
        # kind): their outputs on any image that is not a phantom mean nothing
        "models_synthetic": summary["synthetic"]
        or all_phantoms(fingerprints["score_dataset"])
        or bool((fingerprints.get("score_bundle") or {}).get("models_synthetic")),
        "labelled": labelled,
        "inputs": fingerprints,
        "tasks": list(tasks),
        "concepts": list(concepts),
        "splits": {"analysis": config.split, "score": config.score_split},
        "frame_size": list(frame_size),
        "grid": list(grid),
        # the model-input frame policy (data.frame_policy.frame_policy_record); None: the DICOM's Mammo-CLIP
        # preprocessing, as every bundle made before frame policies
        "frames": frames,
        "sae": {
            "architecture": sae.architecture,
            "d_in": sae.d_in,
            "d_sae": sae.d_sae,
            "hparams": sae.hparams,
        },
        "skipped": skipped,
        "warnings": list(warnings),
        "summary": summary,
    }


def local_command(config: AnalyzeConfig) -> str:
    """The command with this machine's absolute paths (kept in the user data folder, not the manifest)."""
    absolute = {
        "data": str(Path(config.data).resolve()),
        "classifier": tuple(str(Path(p).resolve()) for p in config.classifier),
        "sae": str(Path(config.sae).resolve()),
        "out": str(Path(config.out).resolve()),
        "score_data": None if config.score_data is None else str(Path(config.score_data).resolve()),
        "score_bundle": None if config.score_bundle is None else str(Path(config.score_bundle).resolve()),
    }
    return config.command(absolute)
