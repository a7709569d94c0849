"""JSON files in the user's data folder that several app sessions read and change at once.

A writer holds an exclusive ``fcntl`` lock on a sibling lock file while it re-reads the file, changes one
entry and replaces the file atomically, so concurrent saves of different entries are all kept and a reader
(who takes no lock) never sees a half-written file. A damaged file is never overwritten: reading it raises a
BundleError that says to restore or delete it. Used by latent notes, reviewer verdicts and review sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mammo_sae.bundle.format import BundleError
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.errors import os_error_message

T = TypeVar("T")


@contextlib.contextmanager
def locked(folder: Path, lock_name: str, what: str) -> Iterator[None]:
    """Hold ``folder/lock_name`` exclusively (making the folder first); a file-system error inside (a full
    disk, a read-only folder) becomes a BundleError "``what`` in ``folder`` were not saved: ...", and the
    files keep their previous content."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / lock_name, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError as error:
        raise BundleError(f"{what} in {folder} were not saved: {os_error_message(error)}") from None


def damaged(path: Path, problem: str) -> BundleError:
    """The error for a file that can not be used as it is, with what to do about it."""
    return BundleError(f"{path} {problem}; restore it from a backup or delete it to start afresh")


def read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when there is no file); ``expected`` names its content for the error
    ("a mapping of latent -> note") when the file is unreadable or holds something else."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise damaged(path, f"is unreadable ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise damaged(path, f"is not {expected}")
    return data


def write_mapping(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with ``data`` as indented JSON (call it under ``locked``)."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def update(
    path: Path,
    what: str,
    expected: str,
    change: Callable[[dict[str, Any]], T],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> T:
    """Under ``path``'s lock (``<stem>.lock`` beside it): read the mapping, ``check`` it (raises on a damaged
    file, before anything is written), apply ``change`` in place and write it back; returns what ``change``
    returned. A ``change`` that raises leaves the file as it was."""
    with locked(path.parent, path.stem + ".lock", what):
        data = read_mapping(path, expected)
        if check is not None:
            check(data)
        result = change(data)
        write_mapping(path, data)
    return result
