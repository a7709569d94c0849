"""The SAE package's error type (kept free of torch so that configs and the registry import fast)."""

from __future__ import annotations

from mammo_sae.core.errors import MammoSaeError


class SAEError(MammoSaeError):
    """An SAE file, architecture name, shape or argument is invalid or does not fit."""
