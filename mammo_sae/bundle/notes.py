"""Radiologists' names and notes for latents, kept in the user's data folder, never in the bundle.

A bundle may be shipped or read-only, so its notes live in ``BASE/<identity>/latent_notes.json``, where
BASE is the app's notes location (``MAMMO_SAE_NOTES``, or ``notes/`` in the user cache) and the identity
is a hash of what the bundle was computed from (backbone, heads, SAE, dataset content; no path), so a
bundle moved or rebuilt from the same inputs keeps its notes. Every entry records its author (optional)
and the UTC time of its last save.

Several app sessions may write at once: every save takes an exclusive lock on ``latent_notes.lock``,
re-reads the file, changes one latent and replaces the file atomically (see ``locked_json``), so
concurrent edits of different latents are all kept and a reader never sees a half-written file. A save
given the entry its editor started from (``base``) writes only the fields changed since, so two sessions
editing different fields of one latent keep both edits. The text is untrusted: show it as text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_sae.bundle.format import BundleError, without_locations
from mammo_sae.bundle.locked_json import locked, read_mapping, write_mapping
from mammo_sae.bundle.spreadsheet import safe_csv
from mammo_sae.core.hashing import sha256_json

NOTES_FILE, LOCK_FILE = "latent_notes.json", "latent_notes.lock"
NOTES_ENV = "MAMMO_SAE_NOTES"
CATEGORIES = ("calcification", "mass", "artifact / marker", "anatomy", "unclear")
MAX_NAME, MAX_NOTE, MAX_AUTHOR = 80, 2000, 80
COLUMNS = ["latent", "name", "category", "note", "author", "updated"]
EMPTY_ENTRY = {"name": "", "category": "unclear", "note": ""}
NOTES_CONTENT = "a mapping of latent -> note"


def bundle_identity(manifest: Mapping[str, Any]) -> str:
    """A short hash of what a bundle was computed from (its inputs' content hashes, the SAE, the heads),
    without any location: the same for a copy, a move or a rebuild from the same inputs."""
    identity = {
        "inputs": without_locations(manifest["inputs"]),
        "sae": manifest.get("sae"),
        "tasks": manifest.get("tasks"),
    }
    return sha256_json(identity)[:24]


def notes_folder(manifest: Mapping[str, Any], base: str | os.PathLike[str]) -> Path:
    """Where the notes of the bundle with ``manifest`` live under the notes location ``base``."""
    return Path(base).expanduser() / bundle_identity(manifest)


def _merge(edited: dict[str, str], base: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, str]:
    """Three-way merge of one entry: a field the editor left as in ``base`` keeps its ``current`` value."""
    return {
        field: value
        if value != base.get(field, EMPTY_ENTRY[field])
        else current.get(field, EMPTY_ENTRY[field])
        for field, value in edited.items()
    }


def _label(latent: int, entry: Mapping[str, Any] | None) -> str:
    return f"#{latent} {entry['name']}" if entry and entry.get("name") else f"#{latent}"


class LatentNotes:
    """Names, categories and notes of a bundle's latents, in ``folder`` (see ``for_bundle``)."""

    def __init__(self, folder: str | os.PathLike[str], d_sae: int) -> None:
        self.folder, self.d_sae = Path(folder), d_sae

    @classmethod
    def for_bundle(cls, manifest: Mapping[str, Any], base: str | os.PathLike[str]) -> LatentNotes:
        """The notes of the bundle with ``manifest``, kept under the notes location ``base``."""
        return cls(notes_folder(manifest, base), int(manifest["sae"]["d_sae"]))

    @property
    def path(self) -> Path:
        return self.folder / NOTES_FILE

    def all(self) -> dict[int, dict[str, Any]]:
        return {int(k): v for k, v in read_mapping(self.path, NOTES_CONTENT).items()}

    def get(self, latent: int) -> dict[str, Any] | None:
        return self.all().get(int(latent))

    def label(self, latent: int) -> str:
        """``#123`` or ``#123 name`` for charts and tables."""
        return _label(latent, self.get(latent))

    def labeller(self) -> Callable[[int], str]:
        """``label`` over one read of the notes file, for lists of thousands of latents."""
        entries = self.all()
        return lambda latent: _label(latent, entries.get(int(latent)))

    def save(
        self,
        latent: int,
        name: str,
        category: str,
        note: str = "",
        *,
        base: Mapping[str, Any] | None = None,
        author: str = "",
    ) -> dict[str, Any]:
        """Set one latent's entry (an empty name, category "unclear" and empty note remove it), stamped
        with ``author`` (may be empty) and the UTC time.

        ``base``: the entry as the editor loaded it; fields equal to it are not written, so edits made by
        others since are kept (the same field edited by both: the last save wins)."""
        latent = int(latent)
        if not 0 <= latent < self.d_sae:
            raise BundleError(f"latent {latent} is outside 0..{self.d_sae - 1}")
        if category not in CATEGORIES:
            raise BundleError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
        name, note, author = str(name).strip(), str(note).strip(), " ".join(str(author).split())
        if len(name) > MAX_NAME or len(note) > MAX_NOTE or len(author) > MAX_AUTHOR:
            raise BundleError(
                f"a name holds at most {MAX_NAME} characters, a note {MAX_NOTE} and an author {MAX_AUTHOR}"
            )
        edited = {"name": name, "category": category, "note": note}
        with locked(self.folder, LOCK_FILE, "the notes"):
            data = read_mapping(self.path, NOTES_CONTENT)
            if base is not None:
                edited = _merge(edited, base, data.get(str(latent), {}))
            entry = {**edited, "author": author, "updated": datetime.now(UTC).isoformat(timespec="seconds")}
            if edited == EMPTY_ENTRY:
                data.pop(str(latent), None)
            else:
                data[str(latent)] = entry
            write_mapping(self.path, dict(sorted(data.items(), key=lambda kv: int(kv[0]))))
        return entry

    def table(self) -> pd.DataFrame:
        rows = [
            {"latent": latent, **{k: entry.get(k, "") for k in COLUMNS[1:]}}
            for latent, entry in sorted(self.all().items())
        ]
        return pd.DataFrame(rows, columns=COLUMNS)

    def to_csv(self) -> str:
        """The table as CSV, a cell a spreadsheet would run as a formula neutralised (``spreadsheet``)."""
        return safe_csv(self.table())
