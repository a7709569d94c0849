"""Fingerprints of a bundle's inputs, and the check that they still match what is on disk.

Everything cheap to re-hash is re-hashed (classifier files, SAE weights, backbone weights file, the
dataset CSVs); a phantom dataset also carries its generator's pixel checksum, compared through its
manifest (``verify_dataset`` re-decodes the pixels when that is wanted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from mammo_sae.bundle.format import relative_to, resolve_from
from mammo_sae.core.hashing import sha256_file
from mammo_sae.data.phantom import is_phantom_dataset, load_manifest
from mammo_sae.models import Backbone, parse_spec
from mammo_sae.sae import CONFIG_FILE, WEIGHTS_FILE

DATASET_FILES = ("breast-level_annotations.csv", "finding_annotations.csv")
SYNTHETIC_KIND, VINDR_KIND = "synthetic phantoms", "VinDr-Mammo"


def state_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, values): equal weights, equal digest."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def dataset_fingerprint(root: str | Path, folder: Path) -> dict[str, Any]:
    root = Path(root)
    record: dict[str, Any] = {
        "root": relative_to(root, folder),
        "kind": VINDR_KIND,
        "files": {name: sha256_file(root / name) for name in DATASET_FILES},
        "phantom": None,
    }
    if is_phantom_dataset(root):
        manifest = load_manifest(root)
        record["kind"] = SYNTHETIC_KIND
        record["phantom"] = {
            "generator_version": manifest["generator_version"],
            "seed": manifest["seed"],
            "parameters": manifest["parameters"],
            "pixel_checksum": manifest["pixel_checksum"]["value"],
        }
    return record


def file_fingerprint(path: str | Path, folder: Path) -> dict[str, Any]:
    return {"path": relative_to(path, folder), "sha256": sha256_file(path)}


def sae_fingerprint(path: str | Path, folder: Path) -> dict[str, Any]:
    path = Path(path)
    return {
        "path": relative_to(path, folder),
        "weights_sha256": sha256_file(path / WEIGHTS_FILE),
        "config_sha256": sha256_file(path / CONFIG_FILE),
    }


def backbone_fingerprint(backbone: Backbone, source: str, folder: Path) -> dict[str, Any]:
    """``source``: "spec" (built from ``backbone.spec``) or "classifier" (the first classifier's encoder)."""
    spec = parse_spec(backbone.spec) if source == "spec" else None
    weights = spec.path if spec is not None else None
    return {
        "source": source,
        "spec": backbone.spec if source == "spec" else None,
        "architecture": backbone.architecture,
        "layer": backbone.default_layer,
        "num_features": backbone.num_features,
        "weights_file": relative_to(weights, folder) if weights else None,
        "weights_sha256": backbone.weights_sha256 if weights else None,
        "state_sha256": state_digest(backbone),
    }


def _changed_file(label: str, recorded: str, sha: str, folder: Path) -> str | None:
    path = resolve_from(recorded, folder)
    if not path.is_file():
        return f"{label} {path} is missing"
    if sha256_file(path) != sha:
        return f"{label} {path} changed since the bundle was written"
    return None


def stale_reasons(inputs: dict[str, Any], folder: Path, data_root: Path | None = None) -> list[str]:
    """What no longer matches the recorded inputs. A missing dataset is not staleness (the bundle's
    tables stand alone); a dataset whose files differ is."""
    reasons = []
    for classifier in inputs["classifiers"]:
        reasons.append(_changed_file("classifier file", classifier["path"], classifier["sha256"], folder))
    sae = inputs["sae"]
    sae_dir = resolve_from(sae["path"], folder)
    reasons.append(_changed_file("SAE weights", str(sae_dir / WEIGHTS_FILE), sae["weights_sha256"], folder))
    backbone = inputs["backbone"]
    if backbone.get("weights_file"):
        reasons.append(
            _changed_file("backbone weights", backbone["weights_file"], backbone["weights_sha256"], folder)
        )
    reasons += _dataset_changes(
        inputs["dataset"], data_root or resolve_from(inputs["dataset"]["root"], folder)
    )
    if inputs.get("score_dataset"):
        score = inputs["score_dataset"]
        reasons += _dataset_changes(score, resolve_from(score["root"], folder))
    return [reason for reason in reasons if reason]


def _dataset_changes(dataset: dict[str, Any], root: Path) -> list[str]:
    reasons = []
    if root.is_dir():
        for name, sha in dataset["files"].items():
            if (root / name).is_file() and sha256_file(root / name) != sha:
                reasons.append(f"the dataset's {name} in {root} differs from the one analysed")
        phantom = dataset.get("phantom")
        if phantom and is_phantom_dataset(root):
            current = load_manifest(root).get("pixel_checksum", {}).get("value")
            if current != phantom["pixel_checksum"]:
                reasons.append(f"the phantom pixels in {root} differ from the ones analysed")
    return [reason for reason in reasons if reason]
