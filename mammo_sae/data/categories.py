"""VinDr-Mammo finding categories: parse the CSV's list strings and name one label column per category."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

# The two concepts the Mammo-SAE paper explains; their label columns exist even when no row has them.
TARGETS: tuple[str, ...] = ("mass", "calcification")

# "No Finding" marks an image without findings: it is the absence of a label, not a label column.
NO_FINDING = "no_finding"

# Column order for the categories of the VinDr-Mammo release; unknown categories follow, sorted.
KNOWN_CATEGORIES: tuple[str, ...] = (
    "mass",
    "calcification",
    "focal_asymmetry",
    "architectural_distortion",
    "asymmetry",
    "suspicious_lymph_node",
    "skin_thickening",
    "global_asymmetry",
    "nipple_retraction",
    "skin_retraction",
)

# Snake-cased release names whose column name differs (the paper calls it "calcification").
_RENAMES = {"suspicious_calcification": "calcification"}

# A list string longer than this is not a VinDr category list; refuse it before parsing.
_MAX_LIST_CHARS = 2000


def category_key(name: str) -> str:
    """Column name of a category: "Mass" -> "mass", "Suspicious Calcification" -> "calcification".

    Any other name is snake-cased ("Focal Asymmetry" -> "focal_asymmetry", "Suspicious_Lymph_Node" ->
    "suspicious_lymph_node"), so unknown categories keep a column of their own.
    """
    snake = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    if not snake:
        raise ValueError(f"category name {name!r} has no letters or digits")
    return _RENAMES.get(snake, snake)


def parse_category_list(text: str) -> tuple[str, ...]:
    """Names in a finding_categories cell such as "['Suspicious Calcification', 'Mass']".

    The cell is a Python list literal of non-empty strings; it is evaluated with ``ast.literal_eval``
    (never ``eval``). Anything else raises ValueError.
    """
    if len(text) > _MAX_LIST_CHARS:
        raise ValueError(f"value is {len(text)} characters long, too long for a category list")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a Python list literal ({type(exc).__name__})") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"a Python list was expected, got {type(value).__name__}")
    if not value:
        raise ValueError("the list is empty (an image without findings has \"['No Finding']\")")
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise ValueError("every item must be a non-empty string")
    return tuple(item.strip() for item in value)


def order_categories(keys: Iterable[str]) -> tuple[str, ...]:
    """Label columns in a stable order: the targets, the other release categories, then unknown ones sorted.

    ``TARGETS`` are always included; ``NO_FINDING`` never is.
    """
    seen = set(keys) | set(TARGETS)
    seen.discard(NO_FINDING)
    known = [key for key in KNOWN_CATEGORIES if key in seen]
    return (*known, *sorted(seen - set(KNOWN_CATEGORIES)))
