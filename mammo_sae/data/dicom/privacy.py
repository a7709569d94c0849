"""Keep identifying DICOM values out of messages: collect them from a data set, scrub them from text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

# Value representations that carry names, dates, times, identifiers or free text.
_IDENTIFYING_VRS = frozenset(
    {"PN", "DA", "DT", "TM", "UI", "LO", "LT", "SH", "ST", "UT", "UC", "UR", "AE", "AS"}
)
_BLOB_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: A private binary value longer than this is data no message ever quotes: it is not scanned for text.
MAX_SCANNED_BLOB = 64 * 1024
_MIN_LENGTH = 2  # single characters (sex "F", flags) cannot be scrubbed without mangling every message
_REDACTED = "<redacted>"


def identifying_strings(ds: Dataset) -> frozenset[str]:
    """Every string value of `ds` (nested sequences and file meta included) that could identify someone.

    Covers names, dates, times, non-standard UIDs, IDs, institutions, operators and free text (by VR),
    plus every private element whatever its VR. Standard UIDs (SOP classes, transfer syntaxes) are kept
    out because they identify nobody.
    """
    found: set[str] = set()
    datasets = top_datasets(ds)
    while datasets:
        dataset = datasets.pop()
        for tag in list(dataset.keys()):
            if tag == 0x7FE00010:
                continue
            try:
                elem = dataset[tag]
            except Exception:  # a corrupt element (bad VR, bad length) cannot be decoded: nothing to collect
                continue
            if elem.VR == "SQ":
                datasets.extend(elem.value or [])
            elif is_identifying(elem.tag, elem.VR, _value_length(elem.value)):
                found.update(_strings_of(elem.value, elem.VR))
    return frozenset(s for s in found if len(s) >= _MIN_LENGTH)


def top_datasets(ds: Dataset) -> list[Dataset]:
    """Where a walk over every element starts: the data set and its file meta (nested ones are pushed as
    their sequences are met)."""
    return [ds] if getattr(ds, "file_meta", None) is None else [ds, ds.file_meta]


def is_identifying(tag: BaseTag, vr: str | None, length: int) -> bool:
    """Whether an element's value is harvested as possibly identifying: text VRs, and private values
    unless they are long binary data (those are never quoted by pydicom or a decoder)."""
    if tag.is_private:
        return vr not in _BLOB_VRS or length <= MAX_SCANNED_BLOB
    return vr in _IDENTIFYING_VRS


def _value_length(value: object) -> int:
    return len(value) if isinstance(value, bytes | bytearray | str) else 0


def _strings_of(value: object, vr: str) -> Iterable[str]:
    if value is None:
        return
    if isinstance(value, list | tuple | MultiValue):
        for item in value:
            yield from _strings_of(item, vr)
        return
    if isinstance(value, bytes | bytearray):
        # Private or unknown elements: keep printable runs, the only part that can show up in text.
        yield from re.findall(rf"[\x20-\x7e]{{{_MIN_LENGTH},}}", value.decode("latin-1"))
        return
    if isinstance(value, int | float):
        return
    text = str(value).strip()
    if vr == "UI" and UID(text).name != text:
        return  # a registered standard UID
    yield text
    yield from (part.strip() for part in re.split(r"[\^=\\]", text) if part.strip())


def scrub(text: str, secrets: frozenset[str]) -> str:
    """`text` with every occurrence of a secret replaced; short secrets only as whole words.

    Only the secrets found in `text` are replaced, so the cost does not grow with their number (a header
    full of private text yields hundreds of thousands)."""
    present = sorted((secret for secret in secrets if secret in text), key=len, reverse=True)
    for secret in present:
        if len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
        else:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", _REDACTED, text)
    return text


class _DropValueMessages(logging.Filter):
    """Drops pydicom log records that quote element values (its VR validation messages do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Invalid value for VR" not in record.getMessage()


def install_pydicom_log_filter() -> None:
    """pydicom logs a UID or other value each time validation complains; never let those reach a log."""
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _DropValueMessages) for f in logger.filters):
        logger.addFilter(_DropValueMessages())
