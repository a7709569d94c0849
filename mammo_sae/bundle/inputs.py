"""Where a bundle's inputs are on this machine, and whether they changed since it was written.

A manifest records each input by identity (``bundle.fingerprints``): content hashes, the phantom generator's
settings and pixel checksum, its file or folder name, and a path only inside the bundle. To find an input, the
reader tries, in order: the path inside the bundle (or, in version-1 manifests, the recorded relative path),
the location this machine recorded when it built the bundle (``bundle.locations``), the same name beside
the bundle folder, and for a dataset also ``MAMMO_SAE_DATA`` and the phantom cache of the user data folder.
The first candidate whose content matches wins; a candidate at a recorded place whose content differs makes
the bundle stale (an absent dataset does not: the tables stand alone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammo_sae.bundle.fingerprints import DATASET_FILES
from mammo_sae.bundle.format import resolve_from
from mammo_sae.core.hashing import sha256_file
from mammo_sae.core.user_data import user_data_dir
from mammo_sae.data.phantom import is_phantom_dataset, load_manifest
from mammo_sae.data.phantom.pixel_fingerprint import same_pixels
from mammo_sae.models import parse_spec
from mammo_sae.sae import CONFIG_FILE, WEIGHTS_FILE

DATA_ENV = "MAMMO_SAE_DATA"


@dataclass(frozen=True)
class Candidate:
    path: Path
    recorded: bool  # a place the bundle or this machine recorded: differing content there is staleness


@dataclass(frozen=True)
class Found:
    path: Path | None  # the input, its content checked against the manifest
    differs: Path | None  # a recorded place holding other content (when nothing matched)


def _first(
    candidates: list[Candidate], exists: Callable[[Path], bool], matches: Callable[[Path], bool]
) -> Found:
    differs = None
    seen: set[Path] = set()
    for candidate in candidates:
        path = candidate.path.resolve()
        if path in seen or not exists(path):
            continue
        seen.add(path)
        if matches(path):
            return Found(path, None)
        if candidate.recorded and differs is None:
            differs = path
    return Found(None, differs)


def _recorded(
    record: Mapping[str, Any], key: str, folder: Path, remembered: Any, name_key: str
) -> list[Candidate]:
    """The recorded places of an input: in (or, version 1, relative to) the bundle, this machine's record,
    the same name beside the bundle folder."""
    out = []
    if record.get(key):
        out.append(Candidate(resolve_from(record[key], folder), True))
    if remembered:
        out.append(Candidate(Path(remembered), True))
    name = record.get(name_key) or (Path(record[key]).name if record.get(key) else None)
    if name:
        out.append(Candidate(folder.resolve().parent / name, True))
    return out


def locate_file(record: Mapping[str, Any], folder: Path, remembered: Any = None) -> Found:
    """A classifier file: ``{name, path?, sha256}``."""
    candidates = _recorded(record, "path", folder, remembered, "name")
    return _first(candidates, Path.is_file, lambda p: sha256_file(p) == record["sha256"])


def locate_sae(record: Mapping[str, Any], folder: Path, remembered: Any = None) -> Found:
    """An SAE folder: ``{name, path?, weights_sha256, config_sha256}``."""

    def matches(path: Path) -> bool:
        return (
            (path / CONFIG_FILE).is_file()
            and sha256_file(path / WEIGHTS_FILE) == record["weights_sha256"]
            and sha256_file(path / CONFIG_FILE) == record["config_sha256"]
        )

    candidates = _recorded(record, "path", folder, remembered, "name")
    return _first(candidates, lambda p: (p / WEIGHTS_FILE).is_file(), matches)


def locate_backbone_weights(record: Mapping[str, Any], folder: Path, remembered: Any = None) -> Found:
    """The weights file of a spec-built backbone (``weights_path`` in version 2, ``weights_file`` in 1)."""
    if not record.get("weights_sha256"):
        return Found(None, None)
    key = "weights_path" if record.get("weights_path") else "weights_file"
    candidates = _recorded(record, key, folder, remembered, "weights_name")
    return _first(candidates, Path.is_file, lambda p: sha256_file(p) == record["weights_sha256"])


def dataset_matches(record: Mapping[str, Any], root: Path) -> bool:
    """The dataset at ``root`` has the recorded CSVs (and, for phantoms, the recorded pixel checksum)."""
    for name, sha in record["files"].items():
        if not (root / name).is_file() or sha256_file(root / name) != sha:
            return False
    phantom = record.get("phantom")
    if phantom:
        if not is_phantom_dataset(root):
            return False
        return same_pixels(load_manifest(root), phantom)
    return True


def _is_dataset(root: Path) -> bool:
    return (root / DATASET_FILES[0]).is_file()


def locate_dataset(
    record: Mapping[str, Any], folder: Path, remembered: Any = None, explicit: Path | None = None
) -> Found:
    """A dataset root: the explicit one, the recorded places, then ``MAMMO_SAE_DATA`` and, for phantoms,
    the regenerated sets of the user data folder (named after their pixel checksum)."""
    candidates = [Candidate(explicit, True)] if explicit is not None else []
    candidates += _recorded(record, "root", folder, remembered, "name")
    if os.environ.get(DATA_ENV):
        candidates.append(Candidate(Path(os.environ[DATA_ENV]), False))
    phantom = record.get("phantom")
    cache = user_data_dir()
    if phantom and cache.is_dir():
        tag = phantom["pixel_checksum"][:12]
        candidates += [Candidate(p, False) for p in sorted(cache.glob(f"*{tag}")) if p.is_dir()]
    return _first(candidates, _is_dataset, lambda root: dataset_matches(record, root))


@dataclass(frozen=True)
class InputLocations:
    """Every input of a bundle on this machine (None: not found), and why the bundle is stale if it is."""

    classifiers: list[Path | None]
    sae: Path | None
    backbone_weights: Path | None
    dataset: Path | None
    score_dataset: Path | None
    reasons: list[str]


def _dataset_reason(record: Mapping[str, Any], root: Path) -> str:
    for name, sha in record["files"].items():
        if (root / name).is_file() and sha256_file(root / name) != sha:
            return f"the dataset's {name} in {root} differs from the one analysed"
    if record.get("phantom"):
        return f"the phantom pixels in {root} differ from the ones analysed"
    return f"the dataset in {root} is not the one analysed (its annotation CSVs are missing)"


def _file_reason(label: str, record: Mapping[str, Any], found: Found) -> str | None:
    if found.path is not None:
        return None
    if found.differs is not None:
        return f"{label} {found.differs} changed since the bundle was written"
    name = record.get("name") or Path(record.get("path") or record.get("weights_file") or "?").name
    return f"{label} {name} is missing (looked beside the bundle and where this machine built it)"


def locate_inputs(
    inputs: Mapping[str, Any],
    folder: Path,
    remembered: Mapping[str, Any] | None = None,
    data_root: Path | None = None,
) -> InputLocations:
    """Find every input of the manifest's ``inputs`` (``remembered``: this machine's record, if any)."""
    remembered = remembered or {}
    reasons: list[str | None] = []
    classifiers = []
    known = list(remembered.get("classifiers") or [])
    for i, record in enumerate(inputs["classifiers"]):
        found = locate_file(record, folder, known[i] if i < len(known) else None)
        reasons.append(_file_reason("classifier file", record, found))
        classifiers.append(found.path)
    sae = locate_sae(inputs["sae"], folder, remembered.get("sae"))
    reasons.append(_file_reason("SAE weights", inputs["sae"], sae))
    weights = locate_backbone_weights(inputs["backbone"], folder, remembered.get("backbone_weights"))
    if inputs["backbone"].get("weights_sha256"):
        reasons.append(_file_reason("backbone weights", inputs["backbone"], weights))
    datasets = {}
    for key, explicit in (("dataset", data_root), ("score_dataset", None)):
        record = inputs.get(key)
        found = locate_dataset(record, folder, remembered.get(key), explicit) if record else Found(None, None)
        if found.differs is not None:
            reasons.append(_dataset_reason(record, found.differs))
        datasets[key] = found.path
    return InputLocations(
        classifiers,
        sae.path,
        weights.path,
        datasets["dataset"],
        datasets["score_dataset"],
        [reason for reason in reasons if reason],
    )


def backbone_spec(record: Mapping[str, Any], weights: Path | None) -> str | None:
    """The spec that rebuilds a spec-built backbone here, with its weights file where it was found."""
    spec = record.get("spec")
    if not spec:
        return None
    recorded = parse_spec(spec).path
    if not recorded:
        return spec
    if weights is None:
        return None
    return spec[: len(spec) - len(recorded)] + str(weights)
