"""Where a bundle's inputs are on this machine: kept in the user's data folder, never in the bundle.

A manifest records its inputs by identity (content hashes, generator settings) and a path only for an input
inside the bundle folder, so a shipped bundle names no folder of the machine that built it. The machine
that built it still knows where its inputs were: ``analyze`` writes them here, keyed by the bundle
folder's resolved path, together with the command line that rebuilds it with those paths. A user may add a
location too (``remember``), e.g. the dataset root of a bundle built elsewhere. Every location read back is
checked against the manifest's hashes before it is used (``bundle.inputs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.hashing import sha256_text, strict_json_text
from mammo_sae.core.user_data import user_data_dir

LOCATIONS_DIR = "input-locations"


def record_path(folder: Path) -> Path:
    return user_data_dir() / LOCATIONS_DIR / f"{sha256_text(str(folder.resolve()))[:24]}.json"


def recall(folder: Path, run_id: str) -> dict[str, Any]:
    """The locations recorded on this machine for the bundle at ``folder`` built as ``run_id`` ({} if none)."""
    try:
        record = json.loads(record_path(folder).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("run_id") != run_id:
        return {}  # a record of an earlier bundle in the same folder
    return record


def remember(folder: Path, run_id: str, updates: dict[str, Any]) -> bool:
    """Merge ``updates`` (e.g. ``{"dataset": "/data/vindr"}``, ``{"command": ...}``) into the record of the
    bundle at ``folder``; False when the user data folder cannot be written (the bundle is unaffected)."""
    record = recall(folder, run_id) or {"bundle": str(folder.resolve()), "run_id": run_id}
    record |= {key: _absolute(value) if key != "command" else value for key, value in updates.items()}
    path = record_path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, strict_json_text(record, indent=1) + "\n")
    except OSError:
        return False
    _forget_removed(path.parent)
    return True


def _forget_removed(records: Path) -> None:
    """Drop the records of bundle folders that no longer exist (so the folder does not grow forever)."""
    for path in records.glob("*.json"):
        try:
            bundle = json.loads(path.read_text()).get("bundle")
            if bundle and not Path(bundle).is_dir():
                path.unlink()
        except (OSError, ValueError, AttributeError):
            continue


def _absolute(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_absolute(v) for v in value]
    return str(Path(value).resolve())
