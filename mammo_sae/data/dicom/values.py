"""Tolerant conversion of DICOM element values: a malformed value reads as missing, never raises."""

from __future__ import annotations


def float_or_none(value: object) -> float | None:
    try:
        return None if value is None or value == "" else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def int_or_none(value: object) -> int | None:
    try:
        return None if value is None or value == "" else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
