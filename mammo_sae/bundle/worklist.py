"""The reading worklist: one row per study with what a reader sorts and filters on (ground-truth findings,
each head's highest view probability, BI-RADS, density, split, reviewed), stepping through it, and the
address parameters that link to what the reading screen shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from mammo_sae.bundle.cases import study_table
from mammo_sae.bundle.reader import Bundle

NO_FINDING = "none"


def study_findings(bundle: Bundle) -> pd.Series:
    """Per study id, its ground-truth box categories in a fixed order (``"mass, calcification"``), or
    ``"none"``; categories come from the boxes table, so benign findings and markers are named too."""
    boxes = bundle.boxes.merge(bundle.images[["position", "study_id"]], on="position", how="inner")
    order = {kind: i for i, kind in enumerate((*bundle.concepts, *sorted(set(boxes["kind"]))))}
    named = boxes.groupby("study_id")["kind"].agg(lambda kinds: ", ".join(sorted(set(kinds), key=order.get)))
    return named.reindex(bundle.images["study_id"].unique()).fillna(NO_FINDING)


def worklist_table(
    bundle: Bundle,
    view_probability: pd.DataFrame,
    reviewed: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per study: ``study_id``, ``split``, ``findings``, ``p_<head>`` (the highest view
    probability of each head, from ``view_probability`` indexed by image position with a column per head),
    ``birads``, ``density``, ``views`` and ``reviewed``; in the bundle's study order."""
    assert set(bundle.tasks) <= set(view_probability.columns), "one probability column per head"
    studies = study_table(bundle)
    images = bundle.images[["position", "study_id"]]
    per_view = images.join(view_probability[list(bundle.tasks)], on="position")
    highest = per_view.groupby("study_id")[list(bundle.tasks)].max().add_prefix("p_")
    table = studies.join(highest, on="study_id").join(
        study_findings(bundle).rename("findings"), on="study_id"
    )
    table["reviewed"] = table["study_id"].isin(set(reviewed))
    table["birads"] = table["birads"].astype(str)
    table["density"] = table["density"].astype(str)
    columns = ["study_id", "split", "findings", *highest.columns, "birads", "density", "views", "reviewed"]
    return table[columns].reset_index(drop=True)


def filter_worklist(
    table: pd.DataFrame,
    *,
    split: str | None = None,
    findings: Sequence[str] = (),
    birads: Sequence[str] = (),
    density: Sequence[str] = (),
    reviewed: str = "all",
    search: str = "",
) -> pd.DataFrame:
    """The rows matching every filter: ``findings`` lists categories that must all be present (``"none"``
    for studies without any), ``reviewed`` is ``all``, ``reviewed`` or ``not reviewed``, ``search`` a
    case-insensitive substring of the study id."""
    if reviewed not in ("all", "reviewed", "not reviewed"):
        raise ValueError(f"reviewed must be all, reviewed or not reviewed, got {reviewed!r}")
    mask = pd.Series(True, index=table.index)
    if split:
        mask &= table["split"] == split
    named = table["findings"].str.split(", ")
    for finding in findings:
        mask &= named.map(lambda kinds, finding=finding: finding in kinds)
    if birads:
        mask &= table["birads"].isin([str(b) for b in birads])
    if density:
        mask &= table["density"].isin([str(d) for d in density])
    if reviewed != "all":
        mask &= table["reviewed"] == (reviewed == "reviewed")
    if search.strip():
        mask &= table["study_id"].str.contains(search.strip(), case=False, regex=False)
    return table[mask]


def sort_worklist(table: pd.DataFrame, by: str, descending: bool = False) -> pd.DataFrame:
    """The rows sorted by one column (ties keep the bundle's order)."""
    if by not in table.columns:
        raise ValueError(f"cannot sort the worklist by {by!r}; its columns are {', '.join(table.columns)}")
    return table.sort_values(by, ascending=not descending, kind="stable")


def step(ids: Sequence[str], current: str | None, offset: int) -> str | None:
    """The study ``offset`` places from ``current`` in ``ids``, stopping at either end (a reader at the last
    study stays there); the first study when ``current`` is not in the list; None for an empty list."""
    if not ids:
        return None
    if current not in ids:
        return ids[0]
    index = min(max(ids.index(current) + offset, 0), len(ids) - 1)
    return ids[index]


def filter_choices(table: pd.DataFrame) -> Mapping[str, list[str]]:
    """The values each worklist filter offers."""
    kinds = sorted({kind for named in table["findings"] for kind in named.split(", ")} - {NO_FINDING})
    return {
        "split": sorted(table["split"].unique()),
        "findings": [*kinds, NO_FINDING],
        "birads": sorted(table["birads"].unique()),
        "density": sorted(table["density"].unique()),
    }


# --- links: the reading screen's address holds the study, view, head, overlay, latent and review session -----

OVERLAY_LABELS = {"evidence": "evidence map", "latent": "latent map", "none": "no map"}
LINK_KEYS = {
    "study": "study",
    "view": "view",
    "head": "head",
    "overlay": "overlay",
    "latent": "latent",
    "session": "review-session",
}  # fmt: skip  (address parameter: page state key)


def link_params(
    study: str, view: str, head: str, overlay: str, latent: int | None, session: str | None
) -> dict[str, str]:
    """The address parameters of what the reading screen shows (raw values, never display labels); the latent
    only when its map is shown and the session only when one is open (``None``: the whole worklist)."""
    params = {"study": study, "view": view, "head": head, "overlay": overlay}
    if overlay == "latent" and latent is not None:
        params["latent"] = str(int(latent))
    if session:
        params["session"] = session
    return params


def linked_choices(params: Mapping[str, str]) -> dict[str, Any]:
    """Session-state values from an address's parameters: the overlay also by its label, the latent only
    when it is a number; unknown parameters are dropped (values are checked against the bundle later)."""
    choices: dict[str, Any] = {}
    for param, key in LINK_KEYS.items():
        text = str(params.get(param, "")).strip()
        if not text:
            continue
        if param == "latent":
            if text.isdigit():
                choices[key] = int(text)
            continue
        if param == "overlay":
            text = {label: kind for kind, label in OVERLAY_LABELS.items()}.get(text, text)
        choices[key] = text
    return choices
