"""Finding categories: the CSV's list strings parse safely and map to stable label column names."""

from __future__ import annotations

import pytest

from mammo_sae.data.categories import TARGETS, category_key, order_categories, parse_category_list


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Mass", "mass"),
        ("Suspicious Calcification", "calcification"),
        ("Suspicious_Calcification", "calcification"),
        ("Focal Asymmetry", "focal_asymmetry"),
        ("Architectural Distortion", "architectural_distortion"),
        ("Suspicious Lymph Node", "suspicious_lymph_node"),
        ("No Finding", "no_finding"),
        ("  Weird-Thing (new) ", "weird_thing_new"),
    ],
)
def test_category_names_become_snake_case_columns(name: str, key: str) -> None:
    assert category_key(name) == key


def test_single_and_multiple_categories_parse() -> None:
    assert parse_category_list("['Mass']") == ("Mass",)
    assert parse_category_list("['Suspicious Calcification', 'Mass']") == ("Suspicious Calcification", "Mass")
    assert parse_category_list('["No Finding"]') == ("No Finding",)


@pytest.mark.parametrize(
    "text", ["['Mass'", "Mass", "[1]", "[]", "['']", "{'Mass'}", "__import__('os').getcwd()", "", "[" * 3000]
)
def test_malformed_category_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_category_list(text)


def test_column_order_puts_targets_first_and_unknown_last_sorted() -> None:
    order = order_categories(["zebra_sign", "focal_asymmetry", "no_finding", "alpha_sign", "mass"])
    assert order == (*TARGETS, "focal_asymmetry", "alpha_sign", "zebra_sign")
    assert order_categories([]) == TARGETS
