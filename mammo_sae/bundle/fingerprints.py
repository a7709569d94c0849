"""What a bundle's manifest records of each input: its identity (content hashes, the phantom generator's
settings and pixel checksum, its file or folder name) and a path only when it lies inside the bundle folder,
so a manifest names no folder of the machine that built it (docs/bundle.md)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mammo_sae.bundle.format import inside
from mammo_sae.core.hashing import sha256_file
from mammo_sae.data.folder_import import IMPORT_MANIFEST, PROVENANCE_CSV, is_imported_root
from mammo_sae.data.phantom import PhantomConfig, is_phantom_dataset, load_manifest
from mammo_sae.models import Backbone, parse_spec
from mammo_sae.sae import CONFIG_FILE, WEIGHTS_FILE

DATASET_FILES = ("breast-level_annotations.csv", "finding_annotations.csv")
#: the tables an imported DICOM folder's root is read from (it has no finding CSV: no labels)
IMPORTED_FILES = ("breast-level_annotations.csv", PROVENANCE_CSV, IMPORT_MANIFEST)
SYNTHETIC_KIND, VINDR_KIND, IMPORTED_KIND = "synthetic phantoms", "VinDr-Mammo", "imported DICOM folder"
WEIGHTS_PLACEHOLDER = "BACKBONE_WEIGHTS"
#: keys of an input record that say where it is, not what it is


def state_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, values): equal weights, equal digest."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _where(path: str | os.PathLike[str], key: str, folder: Path) -> dict[str, str]:
    """``{key: path inside the bundle}`` when it is inside ``folder``, else nothing."""
    relative = inside(path, folder)
    return {key: relative} if relative is not None else {}


def dataset_fingerprint(root: str | Path, folder: Path) -> dict[str, Any]:
    root = Path(root)
    if is_imported_root(root):
        return imported_fingerprint(root, folder)
    record: dict[str, Any] = {
        "kind": VINDR_KIND,
        "name": root.resolve().name,
        **_where(root, "root", folder),
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
            "pixel_fingerprint": manifest.get("pixel_fingerprint", {}).get("value"),
        }
    return record


def imported_fingerprint(root: Path, folder: Path) -> dict[str, Any]:
    """An imported folder's identity: its tables' hashes and how many of its images are phantoms (the
    generator's own files re-exported; the models' outputs on any other image are judged by that)."""
    summary = json.loads((root / IMPORT_MANIFEST).read_text())
    return {
        "kind": IMPORTED_KIND,
        "name": root.resolve().name,
        **_where(root, "root", folder),
        "files": {name: sha256_file(root / name) for name in IMPORTED_FILES},
        "phantom": None,
        "imported": {
            "images": int(summary.get("mammograms", 0)),
            "phantom_images": int(summary.get("phantom_images", 0)),
            "orientation": summary.get("orientation", {}),
        },
    }


def all_phantoms(record: dict[str, Any] | None) -> bool:
    """Whether a dataset fingerprint's images are all synthetic phantoms (a phantom root, or an imported
    folder of nothing but the generator's files)."""
    if record is None:
        return False
    if record["kind"] == SYNTHETIC_KIND:
        return True
    imported = record.get("imported")
    return bool(imported) and 0 < imported["images"] == imported["phantom_images"]


def file_fingerprint(path: str | Path, folder: Path) -> dict[str, Any]:
    return {"name": Path(path).name, **_where(path, "path", folder), "sha256": sha256_file(path)}


def sae_fingerprint(path: str | Path, folder: Path) -> dict[str, Any]:
    path = Path(path)
    return {
        "name": path.resolve().name,
        **_where(path, "path", folder),
        "weights_sha256": sha256_file(path / WEIGHTS_FILE),
        "config_sha256": sha256_file(path / CONFIG_FILE),
    }


def portable_spec(spec: str) -> str:
    """A backbone spec with its weights path (if any) replaced by ``BACKBONE_WEIGHTS``."""
    weights = parse_spec(spec).path
    return spec[: len(spec) - len(weights)] + WEIGHTS_PLACEHOLDER if weights else spec


def backbone_fingerprint(backbone: Backbone, source: str, folder: Path) -> dict[str, Any]:
    """``source``: "spec" (built from ``backbone.spec``) or "classifier" (the first classifier's encoder)."""
    spec = parse_spec(backbone.spec) if source == "spec" else None
    weights = spec.path if spec is not None else None
    record = {
        "source": source,
        "spec": portable_spec(backbone.spec) if source == "spec" else None,
        "architecture": backbone.architecture,
        "layer": backbone.default_layer,
        "num_features": backbone.num_features,
        "weights_name": Path(weights).name if weights else None,
        **(_where(weights, "weights_path", folder) if weights else {}),
        "weights_sha256": backbone.weights_sha256 if weights else None,
        "state_sha256": state_digest(backbone),
    }
    return record


def phantom_command(phantom: Mapping[str, Any], out: str) -> str:
    """The generator command that makes a phantom dataset with these recorded settings."""
    parameters = dict(phantom["parameters"])
    defaults = PhantomConfig().to_dict()
    parts = ["python -m mammo_sae.phantom", f"--out {out}"]
    parts.append(f"--size {parameters.pop('height')}x{parameters.pop('width')}")
    for name, value in parameters.items():
        if value != defaults.get(name):
            shown = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else value
            parts.append(f"--{name.replace('_', '-')} {shown}")
    return " ".join(parts)
