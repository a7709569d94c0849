"""Laterality and view of a mammogram from its header: the tags first, then the descriptive text.

Real exports put these values in several places: ``ImageLaterality`` (the image's own), ``Laterality`` (the
series', often where ``ImageLaterality`` should be), ``ViewPosition``, the coded ``ViewCodeSequence``, and
otherwise only the series, protocol or image-comment text ("LEFT_CC", "L MLO", "RMLO"). Each value found is
returned with where it came from and how far it can be trusted; the text is read, never kept (only the name
of the attribute it came from is).

    found = header_orientation(dataset)
    found.laterality.value, found.laterality.source, found.laterality.confidence   # "L", "ImageLaterality", 1.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

LATERALITIES = ("L", "R")
VIEWS = ("CC", "MLO")
#: ViewPosition values of the cranio-caudal and medio-lateral oblique families (PS3.3 C.8.11.7, DICOM CID 4014).
VIEW_POSITIONS = {
    "CC": "CC",
    "XCCL": "CC",
    "XCCM": "CC",
    "FB": "CC",
    "MLO": "MLO",
    "SIO": "MLO",
    "LMO": "MLO",
}
#: View codes (SNOMED RT and SNOMED CT) of the two views, from ViewCodeSequence; other codes go by their meaning.
VIEW_CODES = {"R-10242": "CC", "399162004": "CC", "R-10226": "MLO", "399368009": "MLO"}
#: Where the descriptive text is looked for, most specific first.
TEXT_ATTRIBUTES = (
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "AcquisitionDeviceProcessingDescription",
)
CONFIDENCE = {"ImageLaterality": 1.0, "ViewPosition": 1.0, "ViewCodeSequence": 0.97, "Laterality": 0.95}
TEXT_CONFIDENCE = 0.85  # a description names the view as a person typed it

_GLUED = re.compile(r"^(L|R|LEFT|RIGHT)(CC|MLO)$")  # "LCC", "RMLO", "LEFTCC"
_SIDE_WORDS = {"L": "L", "LEFT": "L", "LT": "L", "R": "R", "RIGHT": "R", "RT": "R"}
_VIEW_WORDS = {"CC": "CC", "CRANIOCAUDAL": "CC", "MLO": "MLO", "OBLIQUE": "MLO"}


@dataclass(frozen=True)
class Found:
    """One value with its provenance: ``source`` names the attribute (or "image"), "" when nothing was found."""

    value: str | None
    source: str = ""
    confidence: float = 0.0

    def __post_init__(self) -> None:
        assert (self.value is None) == (self.source == ""), "a value always says where it came from"
        assert 0.0 <= self.confidence <= 1.0, self.confidence


NOTHING = Found(None)


@dataclass(frozen=True)
class Orientation:
    """Laterality ("L" / "R") and view ("CC" / "MLO") of one image, each with its provenance."""

    laterality: Found
    view: Found

    @property
    def complete(self) -> bool:
        return self.laterality.value is not None and self.view.value is not None


def header_orientation(ds: Dataset) -> Orientation:
    """Laterality and view from the tags, else from the text; ``NOTHING`` where neither says."""
    return Orientation(laterality=_laterality(ds), view=_view(ds))


def _laterality(ds: Dataset) -> Found:
    for keyword in ("ImageLaterality", "Laterality"):
        side = _code(ds.get(keyword))
        if side in LATERALITIES:
            return Found(side, keyword, CONFIDENCE[keyword])
    for keyword, words in _texts(ds):
        side = _side_in(words)
        if side:
            return Found(side, keyword, TEXT_CONFIDENCE)
    return NOTHING


def _view(ds: Dataset) -> Found:
    position = VIEW_POSITIONS.get(_code(ds.get("ViewPosition")) or "")
    if position:
        return Found(position, "ViewPosition", CONFIDENCE["ViewPosition"])
    coded = _coded_view(ds)
    if coded:
        return Found(coded, "ViewCodeSequence", CONFIDENCE["ViewCodeSequence"])
    for keyword, words in _texts(ds):
        view = _view_in(words)
        if view:
            return Found(view, keyword, TEXT_CONFIDENCE)
    return NOTHING


def _coded_view(ds: Dataset) -> str | None:
    """The view family of the first item of ViewCodeSequence, by code value or by its meaning."""
    try:
        items = list(ds.get("ViewCodeSequence") or [])
    except TypeError:
        return None
    for item in items[:1]:
        code = str(item.get("CodeValue", "") or "").strip().upper()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
        meaning = re.sub(r"[^a-z]", "", str(item.get("CodeMeaning", "") or "").lower())
        if "mediolateraloblique" in meaning:
            return "MLO"
        if "craniocaudal" in meaning:  # exaggerated cranio-caudal views included, as XCCL / XCCM are
            return "CC"
    return None


def _texts(ds: Dataset) -> list[tuple[str, list[str]]]:
    """(attribute, its words upper-cased) for each descriptive attribute that holds text."""
    out = []
    for keyword in TEXT_ATTRIBUTES:
        value = ds.get(keyword)
        if value is None:
            continue
        words = [w for w in re.split(r"[^A-Z0-9]+", str(value).upper()) if w]
        if words:
            out.append((keyword, words))
    return out


def _side_in(words: list[str]) -> str | None:
    """The one side the words name ("L MLO", "LEFT_CC", "RMLO"); None when none or both are named."""
    sides = {m.group(1)[0] for w in words if (m := _GLUED.match(w))} | {
        _SIDE_WORDS[w] for w in words if w in _SIDE_WORDS
    }
    return sides.pop() if len(sides) == 1 else None


def _view_in(words: list[str]) -> str | None:
    """The one view the words name; None when none or both are named."""
    views = {m.group(2) for w in words if (m := _GLUED.match(w))} | {
        _VIEW_WORDS[w] for w in words if w in _VIEW_WORDS
    }
    return views.pop() if len(views) == 1 else None


def _code(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().upper()
    return text or None
