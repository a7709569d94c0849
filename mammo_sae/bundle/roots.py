"""Where a typed bundle path may point: only inside configured root folders.

The dashboard lets a user type a bundle folder; it must not become a way to read any folder on the
server. A path is resolved (``~``, ``..`` and symlinks) and accepted only when the result lies inside one
of the roots: the defaults the caller gives (the app: the repository's ``weights/`` and the user cache),
every entry of ``MAMMO_SAE_BUNDLE_ROOTS`` (``os.pathsep``-separated) and the ``MAMMO_SAE_BUNDLE`` path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from mammo_sae.bundle.format import BundleError

ROOTS_ENV = "MAMMO_SAE_BUNDLE_ROOTS"
BUNDLE_ENV = "MAMMO_SAE_BUNDLE"


class BundlePathError(BundleError):
    """A bundle path lies outside the folders bundles may be opened from."""


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def bundle_roots(
    defaults: Iterable[str | os.PathLike[str]] = (), environ: Mapping[str, str] | None = None
) -> tuple[Path, ...]:
    """The resolved root folders: ``defaults``, each ``MAMMO_SAE_BUNDLE_ROOTS`` entry, ``MAMMO_SAE_BUNDLE``."""
    env = os.environ if environ is None else environ
    extra = [p for p in env.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    bundle = [env[BUNDLE_ENV]] if env.get(BUNDLE_ENV, "").strip() else []
    return tuple(dict.fromkeys(_resolved(p) for p in (*defaults, *extra, *bundle)))


def resolve_bundle_path(path: str | os.PathLike[str], roots: Iterable[Path]) -> Path:
    """``path`` resolved, when it lies inside one of ``roots`` (already resolved); BundlePathError if not."""
    roots = tuple(roots)
    folder = _resolved(path)
    if any(folder.is_relative_to(root) for root in roots):
        return folder
    allowed = ", ".join(str(root) for root in roots) or "(none)"
    raise BundlePathError(
        f"{path} is outside the folders bundles may be opened from ({allowed}). "
        f"To open it, add its parent to {ROOTS_ENV} ({os.pathsep}-separated) or set {BUNDLE_ENV} to it, "
        "and restart the app."
    )
