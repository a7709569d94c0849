"""The demo phantoms shared between test modules: generated once per session (conftest's ``demo_phantoms``),
each module gets a data folder of its own that holds them as hard links."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: a real copy
        shutil.copy2(source, target)


def linked_demo_cache(demo_phantoms: Path, cache: Path) -> Path:
    """``cache`` made a data folder holding the demo phantoms (hard links: the app reads them, never writes
    them), with nothing else of another module's (notes, verdicts, sessions) in it."""
    shutil.copytree(demo_phantoms, cache / demo_phantoms.name, copy_function=_link_or_copy)
    return cache
