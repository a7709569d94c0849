"""Laterality and view from a DICOM header: the image's own tags, the series' misplaced ones, the coded view,
then the descriptive text; each value says where it came from, and ambiguous text gives nothing."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from mammo_sae.data.dicom.orientation import (
    CONFIDENCE,
    NOTHING,
    TEXT_CONFIDENCE,
    Found,
    header_orientation,
)


def header(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def view_code(value: str, meaning: str, scheme: str = "SRT") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def test_the_images_own_tags_win_over_the_series_and_the_text() -> None:
    found = header_orientation(
        header(ImageLaterality="L", Laterality="R", ViewPosition="MLO", SeriesDescription="R CC")
    )
    assert found.laterality == Found("L", "ImageLaterality", CONFIDENCE["ImageLaterality"])
    assert found.view == Found("MLO", "ViewPosition", 1.0)
    assert found.complete


def test_a_misplaced_laterality_and_a_coded_view_are_read() -> None:
    found = header_orientation(
        header(Laterality="R", ViewCodeSequence=[view_code("R-10242", "cranio-caudal")])
    )
    assert found.laterality == Found("R", "Laterality", CONFIDENCE["Laterality"])
    assert found.view == Found("CC", "ViewCodeSequence", CONFIDENCE["ViewCodeSequence"])
    snomed_ct = header(ViewCodeSequence=[view_code("399368009", "medio-lateral oblique", "SCT")])
    assert header_orientation(snomed_ct).view.value == "MLO"
    by_meaning = header(ViewCodeSequence=[view_code("X-1", "Medio-lateral oblique", "99LOCAL")])
    assert header_orientation(by_meaning).view.value == "MLO", "an unknown code goes by its meaning"


@pytest.mark.parametrize(
    ("text", "side", "view"),
    [
        ("LEFT_CC", "L", "CC"),
        ("L MLO", "L", "MLO"),
        ("RMLO", "R", "MLO"),
        ("r-cc tomo off", "R", "CC"),
        ("Right craniocaudal", "R", "CC"),
        ("MAMMO SCREENING", None, None),
        ("L CC and R CC", None, "CC"),  # both sides named: no laterality
        ("LCC RMLO", None, None),
    ],
)
def test_text_names_the_side_and_view_only_when_it_names_one(
    text: str, side: str | None, view: str | None
) -> None:
    found = header_orientation(header(SeriesDescription=text))
    assert found.laterality.value == side and found.view.value == view
    for part in (found.laterality, found.view):
        assert part == NOTHING or (part.source == "SeriesDescription" and part.confidence == TEXT_CONFIDENCE)


def test_the_text_is_looked_for_in_the_protocol_and_comments_too() -> None:
    found = header_orientation(
        header(SeriesDescription="Mammo", ProtocolName="Screening", ImageComments="L MLO")
    )
    assert found.laterality == Found("L", "ImageComments", TEXT_CONFIDENCE)
    assert found.view.source == "ImageComments"


def test_values_that_are_not_a_side_or_view_fall_through() -> None:
    found = header_orientation(header(ImageLaterality="B", ViewPosition="ML", SeriesDescription="R MLO"))
    assert found.laterality.source == "SeriesDescription", "B (both) is not one breast's side"
    assert found.view == Found("MLO", "SeriesDescription", TEXT_CONFIDENCE), "ML is a lateral view, not MLO"
    empty = header_orientation(Dataset())
    assert empty.laterality == NOTHING and empty.view == NOTHING and not empty.complete


def test_a_value_always_names_its_source() -> None:
    with pytest.raises(AssertionError):
        Found("L")
    with pytest.raises(AssertionError):
        Found(None, "ImageLaterality")
