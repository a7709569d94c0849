"""Safe metadata: an allow-list of technical DICOM attributes plus a salted key; nothing that identifies.

Patient and study identifiers, names, dates, UIDs, institutions, operators, free text and private
elements never leave the reader. The only link back to the source file is `key`, a salted SHA-256 of
the SOP Instance UID: stable for one salt, useless without it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from mammo_sae.data.dicom.display import WindowPreset

#: Salt used when neither the `salt` argument nor the MAMMO_SAE_ID_SALT environment variable is set.
DEFAULT_ID_SALT = "mammo-sae/v1"
ID_SALT_ENV = "MAMMO_SAE_ID_SALT"
KEY_HEX_CHARS = 16

_CODE_STRING = re.compile(r"^[A-Z0-9 _]{1,16}$")  # a well-formed CS value; anything else is dropped


@dataclass(frozen=True)
class SafeMetadata:
    """Non-identifying attributes of one image, safe to show, log and store."""

    key: str | None
    modality: str | None
    laterality: str | None
    view: str | None
    rows: int
    columns: int
    number_of_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    photometric: str | None
    transfer_syntax: str
    presentation_intent: str | None
    window_presets: tuple[WindowPreset, ...]
    pixel_spacing_mm: tuple[float, float] | None
    manufacturer_model_name: str | None

    def as_dict(self) -> dict[str, object]:
        """Plain values for display (window presets as dicts, spacing as a list)."""
        out = asdict(self)
        out["window_presets"] = [asdict(w) for w in self.window_presets]
        out["pixel_spacing_mm"] = list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None
        return out


def resolve_salt(salt: str | None = None) -> str:
    """The salt for `key`: the argument, else $MAMMO_SAE_ID_SALT, else DEFAULT_ID_SALT."""
    if salt is not None:
        return salt
    return os.environ.get(ID_SALT_ENV) or DEFAULT_ID_SALT


def salted_key(sop_instance_uid: str, salt: str | None = None) -> str:
    """Truncated hex SHA-256 of salt + UID: an identifier that cannot be traced back without the salt."""
    digest = hashlib.sha256((resolve_salt(salt) + sop_instance_uid.strip()).encode("utf-8"))
    return digest.hexdigest()[:KEY_HEX_CHARS]


def window_presets_of(ds: Dataset) -> tuple[WindowPreset, ...]:
    """WindowCenter/WindowWidth pairs named by WindowCenterWidthExplanation ("WINDOW n" if unnamed).

    Pairs with a width below 1 (invalid per PS3.3 C.11.2.1.2) are skipped; duplicate names get " (n)".
    """
    centers, widths = _floats(ds.get("WindowCenter")), _floats(ds.get("WindowWidth"))
    names = _strings(ds.get("WindowCenterWidthExplanation"))
    presets: list[WindowPreset] = []
    seen: dict[str, int] = {}
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if not width >= 1:
            continue
        name = names[i] if i < len(names) and names[i] else f"WINDOW {i + 1}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        presets.append(WindowPreset(center=center, width=width, name=name))
    return tuple(presets)


def safe_metadata(ds: Dataset, *, salt: str | None = None) -> SafeMetadata:
    """Build SafeMetadata from `ds` through the allow-list only."""
    sop_uid = ds.get("SOPInstanceUID")
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    frames = _int(ds.get("NumberOfFrames"), 1) or 1
    return SafeMetadata(
        key=salted_key(str(sop_uid), salt) if sop_uid else None,
        modality=_code(ds.get("Modality")),
        laterality=_code(ds.get("ImageLaterality")) or _code(ds.get("Laterality")),
        view=_code(ds.get("ViewPosition")),
        rows=_int(ds.get("Rows"), 0),
        columns=_int(ds.get("Columns"), 0),
        number_of_frames=frames,
        samples_per_pixel=_int(ds.get("SamplesPerPixel"), 1),
        bits_allocated=_int(ds.get("BitsAllocated"), 0),
        bits_stored=_int(ds.get("BitsStored"), 0),
        photometric=_code(ds.get("PhotometricInterpretation")),
        transfer_syntax=syntax.name if syntax else "unknown",
        presentation_intent=_code(ds.get("PresentationIntentType")),
        window_presets=window_presets_of(ds),
        pixel_spacing_mm=_spacing(ds),
        manufacturer_model_name=_short_text(ds.get("ManufacturerModelName")),
    )


def _as_list(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _floats(value: object) -> list[float]:
    out = []
    for item in _as_list(value):
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _strings(value: object) -> list[str]:
    return [str(v).strip() for v in _as_list(value)]


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _code(value: object) -> str | None:
    """A CS value if it looks like one (upper-case code), else None: a malformed value is not echoed."""
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if _CODE_STRING.match(text) else None


def _short_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:64] or None


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds.get(keyword))
        if len(values) == 2 and all(v > 0 for v in values):
            return (values[0], values[1])
    return None
