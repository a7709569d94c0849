"""Review sessions: named, saved worklists that a presenter builds and steps through in a case review.

A session is an ordered list of studies, each with an optional note, plus its author and the UTC times it
was created and last saved. Sessions live beside the latent notes (``notes_folder``: the user's data
folder under the bundle's identity, never in the bundle), all in one file, ``review_sessions.json``,
written under ``review_sessions.lock`` by ``locked_json.update``::

    {"<key>": {"name": "Tuesday audit", "author": "Dr. Ada", "created": "...", "updated": "...",
               "items": [{"study": "<study id>", "note": "look at the marker"}, ...]}}

A name holds letters, digits, spaces and ``- _ .`` (at most 60 characters); its key is the name with its
whitespace collapsed and case ignored, so it is the same on every file system and "Tuesday audit" and
"tuesday  Audit" are one session. A session that names studies the bundle does not hold (a rebuilt bundle,
another split) still opens, with those studies marked missing. Notes are untrusted: show them as text.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mammo_sae.bundle.format import BundleError
from mammo_sae.bundle.locked_json import damaged, read_mapping, update
from mammo_sae.bundle.notes import notes_folder
from mammo_sae.bundle.verdicts import MAX_REVIEWER, study_key

SESSIONS_FILE = "review_sessions.json"
MAX_NAME, MAX_ITEM_NOTE, MAX_STUDIES = 60, 500, 5000
NAME_PUNCTUATION = " -_."
CONTENT = "a mapping of session name -> session"


def session_name(name: object) -> str:
    """``name`` with its whitespace collapsed; a BundleError that says what a name may hold otherwise."""
    name = unicodedata.normalize("NFC", " ".join(str(name or "").split()))
    if not name or not any(ch.isalnum() for ch in name):
        raise BundleError("a session needs a name with at least one letter or digit")
    if len(name) > MAX_NAME or not all(ch.isalnum() or ch in NAME_PUNCTUATION for ch in name):
        raise BundleError(
            f"a session name holds letters, digits, spaces, '-', '_' and '.' (at most {MAX_NAME}), got {name[:70]!r}"
        )
    return name


def session_key(name: object) -> str:
    """The storage key of a session name (the same for names that differ only in case or spacing)."""
    return session_name(name).casefold()


@dataclass(frozen=True)
class SessionItem:
    study: str
    note: str = ""
    missing: bool = False  # the bundle holds no such study (set by ``ReviewSessions.load``)


@dataclass(frozen=True)
class ReviewSession:
    name: str
    items: tuple[SessionItem, ...]
    author: str
    created: str  # UTC, ISO 8601
    updated: str

    @property
    def studies(self) -> list[str]:
        return [item.study for item in self.items]

    @property
    def missing(self) -> list[str]:
        return [item.study for item in self.items if item.missing]

    @property
    def present(self) -> list[str]:
        """The studies to step through: those the bundle holds, in order."""
        return [item.study for item in self.items if not item.missing]

    def note(self, study: str) -> str:
        return next((item.note for item in self.items if item.study == study), "")


Item = SessionItem | str | tuple[str, str] | Mapping[str, str]


def _items(items: Iterable[Item]) -> list[dict[str, str]]:
    """Validated ``{"study", "note"}`` entries from studies, (study, note) pairs, {"study", "note"}
    mappings (a data editor's records) or SessionItems."""
    entries, seen = [], set()
    for item in items:
        if isinstance(item, SessionItem):
            study, note = item.study, item.note
        elif isinstance(item, str):
            study, note = item, ""
        elif isinstance(item, Mapping):
            study, note = item.get("study", ""), item.get("note", "")
        elif isinstance(item, tuple) and len(item) == 2:
            study, note = item
        else:
            raise BundleError(f"a session item is a study id or (study, note), got {type(item).__name__}")
        study, note = study_key(study), note.strip() if isinstance(note, str) else ""  # a blank cell: NaN
        if study in seen:
            raise BundleError(f"study {study!r} is in the session twice; keep it once")
        if len(note) > MAX_ITEM_NOTE:
            raise BundleError(f"a note on a study holds at most {MAX_ITEM_NOTE} characters ({study})")
        seen.add(study)
        entries.append({"study": study, "note": note})
    if len(entries) > MAX_STUDIES:
        raise BundleError(f"a session holds at most {MAX_STUDIES} studies, this one {len(entries)}")
    return entries


def _check(data: Mapping[str, Any], path: Path) -> None:
    for key, session in data.items():
        fine = (
            isinstance(session, dict)
            and isinstance(session.get("name"), str)
            and isinstance(session.get("items"), list)
            and all(
                isinstance(item, dict) and isinstance(item.get("study"), str) for item in session["items"]
            )
        )
        if not fine:
            raise damaged(path, f"holds a malformed session {key[:70]!r}")


def _session(entry: Mapping[str, Any], known: Collection[str] | None) -> ReviewSession:
    items = tuple(
        SessionItem(
            item["study"], str(item.get("note", "")), known is not None and item["study"] not in known
        )
        for item in entry["items"]
    )
    return ReviewSession(
        entry["name"],
        items,
        str(entry.get("author", "")),
        str(entry.get("created", "")),
        str(entry.get("updated", "")),
    )


def _author(author: object) -> str:
    """A session's author, whitespace collapsed; BundleError when too long."""
    name = " ".join(str(author or "").split())
    if len(name) > MAX_REVIEWER:
        raise BundleError(f"an author's name holds at most {MAX_REVIEWER} characters")
    return name


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ReviewSessions:
    """The saved review sessions of one bundle, in ``folder`` (see ``for_bundle``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_bundle(cls, manifest: Mapping[str, Any], base: str | os.PathLike[str]) -> ReviewSessions:
        return cls(notes_folder(manifest, base))

    @property
    def path(self) -> Path:
        return self.folder / SESSIONS_FILE

    def _data(self) -> dict[str, Any]:
        data = read_mapping(self.path, CONTENT)
        _check(data, self.path)
        return data

    def _update(self, change) -> Any:
        return update(
            self.path, "the review sessions", CONTENT, change, check=lambda data: _check(data, self.path)
        )

    def names(self) -> list[str]:
        """The sessions' names, in alphabetical order (case ignored)."""
        return sorted((entry["name"] for entry in self._data().values()), key=str.casefold)

    def table(self) -> pd.DataFrame:
        """One row per session: name, studies, author, created, updated (newest first)."""
        rows = [
            {"name": e["name"], "studies": len(e["items"]), "author": e.get("author", ""),
             "created": e.get("created", ""), "updated": e.get("updated", "")}
            for e in self._data().values()
        ]  # fmt: skip
        table = pd.DataFrame(rows, columns=["name", "studies", "author", "created", "updated"])
        return table.sort_values("updated", ascending=False, kind="stable").reset_index(drop=True)

    def exists(self, name: str) -> bool:
        return session_key(name) in self._data()

    def load(self, name: str, known_studies: Collection[str] | None = None) -> ReviewSession:
        """The session called ``name``; with ``known_studies`` (the bundle's), the others are marked missing."""
        data = self._data()
        entry = data.get(session_key(name))
        if entry is None:
            saved = ", ".join(sorted((e["name"] for e in data.values()), key=str.casefold)) or "none yet"
            raise BundleError(f"there is no review session called {session_name(name)!r} (saved: {saved})")
        return _session(entry, None if known_studies is None else set(known_studies))

    def save(
        self,
        name: str,
        items: Iterable[Item],
        author: str = "",
        *,
        overwrite: bool = True,
    ) -> ReviewSession:
        """Save the worklist ``items`` (studies in order, optionally with a note each) as ``name``; an
        existing session of that name is replaced (its creation time kept), or refused with ``overwrite=False``."""
        name, entries = session_name(name), _items(items)
        author = _author(author)
        key, now = name.casefold(), _now()

        def change(data: dict[str, Any]) -> dict[str, Any]:
            old = data.get(key)
            if old is not None and not overwrite:
                raise BundleError(
                    f"a review session called {old['name']!r} exists already; choose another name"
                )
            created = old.get("created", now) if old else now
            data[key] = {"name": name, "author": author, "created": created, "updated": now, "items": entries}
            return data[key]

        return _session(self._update(change), None)

    def add(self, name: str, study: str, note: str = "", author: str = "") -> ReviewSession:
        """Append ``study`` (with ``note``) to the session ``name`` under the file's lock, creating the
        session when new; a study already in it keeps its place and gets the new note."""
        name, (entry,) = session_name(name), _items([(study, note)])
        author = _author(author)
        key, now = name.casefold(), _now()

        def change(data: dict[str, Any]) -> dict[str, Any]:
            old = data.get(key) or {"name": name, "author": author, "created": now, "items": []}
            items = [dict(i) for i in old["items"]]
            place = next((i for i in items if i["study"] == entry["study"]), None)
            if place is not None:
                place["note"] = entry["note"]
            else:
                items.append(entry)
            if len(items) > MAX_STUDIES:
                raise BundleError(f"a session holds at most {MAX_STUDIES} studies; {old['name']!r} is full")
            data[key] = {**old, "updated": now, "items": items}
            return data[key]

        return _session(self._update(change), None)

    def rename(self, old: str, new: str) -> ReviewSession:
        """Give the session ``old`` the name ``new`` (refused when another session has it)."""
        old_key, new = session_key(old), session_name(new)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            if old_key not in data:
                raise BundleError(f"there is no review session called {session_name(old)!r}")
            if new.casefold() != old_key and new.casefold() in data:
                raise BundleError(f"a review session called {new!r} exists already; choose another name")
            entry = {**data.pop(old_key), "name": new, "updated": _now()}
            data[new.casefold()] = entry
            return entry

        return _session(self._update(change), None)

    def delete(self, name: str) -> bool:
        """Remove the session ``name``; False when there was none."""
        key = session_key(name)
        return bool(self._update(lambda data: data.pop(key, None) is not None))
