"""The bundle folder's on-disk format: file names, the manifest's schema, and its checks.

A bundle ties a dataset, a backbone, classification heads and an SAE to the analysis tables computed
from them. ``manifest.json`` is written last, so its presence means the bundle is complete; it records
every input's identity (content hashes; a path only for an input inside the bundle folder) and each
output file's size and sha256, so that a bundle whose inputs have changed since is detected, never
silently shown. It is strict JSON (no NaN). docs/bundle.md describes every file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.hashing import file_record, strict_json_text

FORMAT = "mammo-sae-bundle"
#: 3: token evidence, regions, location profiles and flags, the shortcut audit (and, on phantoms, the
#: marker counterfactual); 2: inputs recorded by identity (a path only inside the bundle), top-level
#: "frames"; 1 recorded paths relative to the bundle (both still read, without the version 3 files)
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
WORK_DIR = "work"  # chunks of an unfinished run (removed when the bundle completes)

IMAGES = "images.parquet"
ROWS = "rows.parquet"
MEAN_LATENTS = "mean_latents.npy"
CODES_DIR = "codes"
HEADS = "heads.npz"
LATENTS = "latents.parquet"
HISTOGRAMS = "histograms.npy"
SCORES = "scores.parquet"
RANKINGS = "rankings.parquet"
PATCHES = "patches.parquet"
LOCALISATION = "localisation.parquet"
BOXES = "boxes.parquet"
BASELINES = "baselines.parquet"
CURVES = "curves.parquet"
CURVES_JSON = "curves.json"
CURVES_SPEC = "curves.vl.json"
CURVES_PNG = "curves.png"
REPORT = "report.md"
EVIDENCE = "evidence.npy"
REGIONS = "regions.npz"
EVIDENCE_REGIONS = "evidence_regions.parquet"
EVIDENCE_SPLIT = "evidence_split.parquet"
SHORTCUTS = "shortcuts.parquet"
COUNTERFACTUAL = "counterfactual.parquet"
COUNTERFACTUAL_LATENTS = "counterfactual_latents.parquet"
#: where each analysed image's laterality and view came from (bundles of an imported DICOM folder only)
ORIENTATION = "orientation.parquet"

#: every output file (or folder) of a complete bundle, in the manifest's order
OUTPUTS = (
    IMAGES,
    ROWS,
    MEAN_LATENTS,
    CODES_DIR,
    HEADS,
    LATENTS,
    HISTOGRAMS,
    SCORES,
    RANKINGS,
    PATCHES,
    BOXES,
    LOCALISATION,
    BASELINES,
    CURVES,
    CURVES_JSON,
    CURVES_SPEC,
    CURVES_PNG,
    EVIDENCE,
    REGIONS,
    EVIDENCE_REGIONS,
    EVIDENCE_SPLIT,
    SHORTCUTS,
    REPORT,
)
#: outputs only some bundles have (the marker counterfactual needs phantoms that can be re-rendered)
OPTIONAL_OUTPUTS = (COUNTERFACTUAL, COUNTERFACTUAL_LATENTS, ORIENTATION)
#: top-level manifest keys every readable version has
REQUIRED_KEYS = (
    "format",
    "format_version",
    "run_id",
    "command",
    "config",
    "dataset_kind",
    "synthetic",
    "inputs",
    "tasks",
    "concepts",
    "splits",
    "frame_size",
    "grid",
    "sae",
    "warnings",
    "summary",
    "files",
)


class BundleError(MammoSaeError):
    """A bundle folder is missing, incomplete, corrupted or from an unsupported version."""


class DatasetNotFoundError(BundleError):
    """A bundle's dataset (its images and boxes) is not on this machine; its tables still open."""


class BundleStaleError(BundleError):
    """A bundle's inputs (dataset, classifier, SAE, backbone) changed after it was written."""

    def __init__(self, path: Path, reasons: list[str], command: str | None) -> None:
        self.reasons = reasons
        rebuild = (
            f" Rebuild it with:\n  {command}" if command else " Rebuild it with python -m mammo_sae.analyze."
        )
        super().__init__(f"the bundle {path} is stale: " + "; ".join(reasons) + "." + rebuild)


def inside(path: str | os.PathLike[str], folder: Path) -> str | None:
    """``path`` relative to the bundle ``folder`` (POSIX form) when it lies inside it, else None: a manifest
    records no path outside its bundle."""
    target, root = Path(path).resolve(), folder.resolve()
    return target.relative_to(root).as_posix() if target.is_relative_to(root) else None


def resolve_from(recorded: str, folder: Path) -> Path:
    """A path recorded in a manifest (relative to the bundle ``folder``, or absolute in old bundles)."""
    return (folder / recorded).resolve() if not Path(recorded).is_absolute() else Path(recorded)


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as strict JSON (NaN and infinities become null, never the non-standard NaN token)."""
    return strict_json_text(manifest, indent=1) + "\n"


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, manifest_text(manifest))


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"no bundle at {folder}: the folder does not exist")
    if not path.is_file():
        hint = (
            "an analysis was started there but did not finish: rerun the same analyze command to resume it"
            if (folder / WORK_DIR).is_dir()
            else "build one with python -m mammo_sae.analyze (or python -m mammo_sae.demo for the demo)"
        )
        raise BundleError(f"{folder} is not a complete bundle (no {MANIFEST}); {hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(
            f"{path} is unreadable ({error}); rebuild the bundle with its analyze command"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a mammo-sae bundle manifest")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise BundleError(
            f"{path} has bundle format version {manifest.get('format_version')}; this mammo-sae reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: rebuild the bundle with this version's analyze command"
        )
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(
            f"{path} lacks {', '.join(missing)}; rebuild the bundle with python -m mammo_sae.analyze --overwrite"
        )
    return manifest


def file_records(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """name -> {bytes, sha256} of output files (a folder name covers the files inside it)."""
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        target = folder / name
        paths = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for path in paths:
            records[path.relative_to(folder).as_posix()] = file_record(path)
    return records


def damaged_error(folder: Path, command: str, problems: list[str]) -> BundleError:
    """The error for a bundle whose output files fail their checks: what is wrong and the rebuild command."""
    return BundleError(
        f"the bundle {folder} is damaged: {'; '.join(problems[:5])}; rebuild it with:\n  {command} --overwrite"
    )


#: keys of an input record that say where the input is, not what it is
LOCATION_KEYS = frozenset({"root", "path", "name", "weights_file", "weights_path", "weights_name"})


def without_locations(value: Any) -> Any:
    """An input record (or a structure of them) without the keys that say where an input is."""
    if isinstance(value, Mapping):
        return {k: without_locations(v) for k, v in value.items() if k not in LOCATION_KEYS}
    if isinstance(value, list):
        return [without_locations(v) for v in value]
    return value
