"""Stamps that change whenever a file is rewritten or replaced: the app's caches are keyed on them.

A stamp is (modification time in ns, size, inode): an atomic replace (a new analysis into the same
folder) gives a new inode even when time and size happen to agree; an absent file stamps as zeros.
"""

from __future__ import annotations

import os
from pathlib import Path

from mammo_sae.bundle.format import MANIFEST
from mammo_sae.data.csv_tables import BREAST_CSV, FINDING_CSV, MAMMO_CLIP_CSV, MAMMO_CLIP_SEARCH

FileStamp = tuple[int, int, int]
ABSENT: FileStamp = (0, 0, 0)
PHANTOM_MANIFEST = "phantom.json"  # rewritten whenever a phantom set is regenerated


def file_stamp(path: str | os.PathLike[str]) -> FileStamp:
    """(mtime_ns, size, inode) of ``path``, or ABSENT when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return ABSENT
    return info.st_mtime_ns, info.st_size, info.st_ino


def bundle_stamp(folder: str | os.PathLike[str]) -> FileStamp:
    """A bundle's stamp: its manifest's (written last by every analysis, so it changes with any table)."""
    return file_stamp(Path(folder) / MANIFEST)


def dataset_stamp(root: str | os.PathLike[str]) -> tuple[FileStamp, ...]:
    """A dataset root's stamp: the tables its index is read from, and a phantom set's manifest."""
    folder = Path(root)
    names = [
        BREAST_CSV,
        FINDING_CSV,
        *(f"{sub}/{MAMMO_CLIP_CSV}" for sub in MAMMO_CLIP_SEARCH),
        PHANTOM_MANIFEST,
    ]
    return tuple(file_stamp(folder / name) for name in names)
