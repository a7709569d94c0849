"""The user's data folder: where the app and the commands keep what must never go into the repository
(regenerated demo phantoms, latent notes, where a bundle's inputs are on this machine)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MAMMO_SAE_CACHE"


def user_data_dir() -> Path:
    """``$MAMMO_SAE_CACHE`` or ``~/.cache/mammo-sae`` (never inside the repository)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mammo-sae").expanduser()
