"""Memory-mapped arrays whose pages do not pile up in the resident set.

Every page of a memory map that a process touches stays in its resident set (RSS) until the map is closed,
so one pass over a mapped file as large as the data makes peak RSS grow with the data, although the kernel
could drop those pages at any time. Passes over large maps (the analysis's codes and mean latents) call
:func:`release_pages` after each bounded step: the pages leave the resident set (``MADV_DONTNEED``) while
their data stays in the file and the page cache, written pages of a shared map included, and a later read
simply maps them again.
"""

from __future__ import annotations

import mmap

import numpy as np


def shared_memmap(array: object) -> np.memmap | None:
    """The numpy memory map behind ``array`` (itself, or the map it views), if it is a shared one."""
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap):
            return array if array.mode != "c" else None  # "c": private copy-on-write pages
        array = array.base
    return None


def release_pages(*arrays: object) -> None:
    """Drop the resident pages of the shared memory maps behind ``arrays`` (a view releases its whole map).
    In-memory arrays and copy-on-write maps, whose private changes the advice would discard, are left
    alone, and so is everything on a platform without madvise."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    for array in arrays:
        mapping = getattr(shared_memmap(array), "_mmap", None)
        if advice is not None and isinstance(mapping, mmap.mmap) and not mapping.closed:
            mapping.madvise(advice)
