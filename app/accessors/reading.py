"""The reading screen's worklist: each study's findings and highest view probabilities, filtered, sorted
and stepped through. (Its widgets persist across pages with ``persist_state="session"``; the page writes the
case, view, head, overlay, latent and session into the address with raw values, never display labels.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import streamlit as st

import accessors
from mammo_sae.bundle import verdicts as vd
from mammo_sae.bundle import worklist as wl
from mammo_sae.bundle.stamps import FileStamp
from mammo_sae.data.folder_import import UNLABELLED_SPLIT


@st.cache_data(max_entries=8, show_spinner=False)
def _worklist(path: str, stamp: FileStamp, probabilities: pd.DataFrame) -> pd.DataFrame:
    return wl.worklist_table(accessors._bundle(path, stamp), probabilities)


def worklist(bundle: accessors.Bundle, probabilities: pd.DataFrame, reviewed: Iterable[str]) -> pd.DataFrame:
    """The bundle's worklist with each head's highest view probability (``probabilities``: a column per
    head, indexed by image position) and the studies in ``reviewed`` marked."""
    table = _worklist(*accessors._key(bundle), probabilities).copy()
    table["reviewed"] = table["study_id"].isin(set(reviewed))
    return table


def link_params(
    study: str, view: str, head: str, overlay: str, latent: int | None, session: str
) -> dict[str, str]:
    return wl.link_params(study, view, head, overlay, latent, None if session == ALL_STUDIES else session)


def linked_choices(params: Mapping[str, str]) -> dict[str, Any]:
    return wl.linked_choices(params)


def worklist_choices(table: pd.DataFrame) -> Mapping[str, list[str]]:
    return wl.filter_choices(table)


def filter_worklist(table: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    return wl.filter_worklist(table, **filters)


def sort_worklist(table: pd.DataFrame, by: str, descending: bool) -> pd.DataFrame:
    return wl.sort_worklist(table, by, descending)


def step(ids: list[str], current: str | None, offset: int) -> str | None:
    return wl.step(ids, current, offset)


def short_id(study: str) -> str:
    """A study id as a reader quotes it: its first eight characters."""
    return str(study)[:8]


WORKLIST_SORTS = {
    "worklist order": None,
    "highest probability": "p_",
    "BI-RADS": "birads",
    "density": "density",
    "findings": "findings",
}

OVERLAY_LABELS = wl.OVERLAY_LABELS
ALL_STUDIES = "(all studies)"  # the review-session choice that means "the filtered worklist"


def worklist_view(table: pd.DataFrame, choices: Mapping[str, Any], tasks: tuple[str, ...]) -> pd.DataFrame:
    """The worklist as the sidebar's filters and sort (``choices``: the ``wl-*`` session values) show it."""
    shown = wl.filter_worklist(
        table,
        split=None if choices["wl-split"] == "all" else choices["wl-split"],
        findings=choices["wl-findings"],
        birads=choices["wl-birads"],
        density=choices["wl-density"],
        reviewed=choices["wl-reviewed"],
        search=choices["wl-search"],
    )
    column = WORKLIST_SORTS[choices["wl-sort"]]
    if column is None:
        return shown
    if column == "p_":  # the highest of the heads' highest view probabilities
        ranked = shown.assign(_p=shown[[f"p_{task}" for task in tasks]].max(axis=1))
        return wl.sort_worklist(ranked, "_p", choices["wl-descending"]).drop(columns="_p")
    return wl.sort_worklist(shown, column, choices["wl-descending"])


def session_view(table: pd.DataFrame, session: Any) -> pd.DataFrame:
    """A review session's studies in its order (those the bundle lacks left out), with its notes."""
    notes = {item.study: item.note for item in session.items if not item.missing}
    rows = table.set_index("study_id").loc[[s for s in notes if s in set(table["study_id"])]].reset_index()
    return rows.assign(session_note=[notes[s] for s in rows["study_id"]])


def position_of(bundle: accessors.Bundle, study: str, name: str) -> int | None:
    """The image position of the view called ``name`` ("R CC") in ``study``; None when it has none."""
    for view in accessors.hanging_views(bundle, study):
        if view.position is not None and accessors.view_name(view) == name:
            return int(view.position)
    return None


def study_label(table: pd.DataFrame):
    """A study's label in the study picker: ``abcd1234 · mass, calcification``."""
    findings = dict(zip(table["study_id"], table["findings"], strict=True))
    return lambda study: f"{short_id(study)} · {findings.get(study, '?')}"


def study_caption(table: pd.DataFrame, ids: list[str], study: str) -> str:
    """Where the study lies in the worklist and what a reader files it under (Markdown-safe)."""
    row = table.set_index("study_id").loc[study]
    where = f"{ids.index(study) + 1} of {len(ids)}" if study in ids else "outside the filtered worklist"
    reviewed = " · reviewed" if row["reviewed"] else ""
    if row["split"] == UNLABELLED_SPLIT:  # an imported DICOM folder: nothing is known of the case
        return f"{where} · no labels (an imported DICOM study){reviewed}"
    return f"{where} · BI-RADS {row['birads']} · density {row['density']} · {row['split']}{reviewed}"


def worklist_display(shown: pd.DataFrame) -> pd.DataFrame:
    """The worklist's columns as the reader sees them (study ids shortened)."""
    columns = [c for c in shown.columns if c not in ("views",)]
    return shown[columns].assign(study_id=shown["study_id"].map(short_id))


def worklist_columns(tasks: tuple[str, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "study_id": st.column_config.TextColumn("study", help="the study id's first eight characters"),
        "split": st.column_config.TextColumn("split", help="the dataset split the study belongs to"),
        "findings": st.column_config.TextColumn("findings", help="ground-truth box categories in the study"),
        "birads": st.column_config.TextColumn("BI-RADS", help="the study's highest breast-level BI-RADS"),
        "density": st.column_config.TextColumn("density", help="breast density (A-D)"),
        "reviewed": st.column_config.CheckboxColumn("reviewed", help="someone saved a verdict on it"),
        "session_note": st.column_config.TextColumn("note", help="the presenter's note for this study"),
    }
    for task in tasks:
        config[f"p_{task}"] = st.column_config.ProgressColumn(
            f"{task} p", min_value=0.0, max_value=1.0, format="percent",
            help=f"the highest calibrated {task} probability among the study's views",
        )  # fmt: skip
    return config


def slot_captions(
    bundle: accessors.Bundle, views: list[Any], calibrated: pd.DataFrame, points: Mapping[str, Any]
) -> dict[int, str]:
    """Under each view (plain text): each head's calibrated probability, ▲ where it passes the head's
    operating point, and where the view's laterality and view came from when not its tags (an imported folder:
    "inferred from the image")."""
    captions = {}
    tags = accessors.orientation_tags(bundle, views)
    for view in views:
        if view.position is None:
            continue
        parts = []
        for head in bundle.tasks:
            p = float(calibrated.loc[view.position, head])
            parts.append(f"{head} {p:.0%}{' ▲' if head in points and p >= points[head].threshold else ''}")
        tag = tags.get(accessors.view_name(view))  # first: a long caption is cut at its end
        captions[int(view.position)] = " · ".join([*([tag] if tag else []), *parts])
    return captions


def overlay_choice(kind: str, head: str, latent: int | None, choices: Mapping[str, Any]) -> Any:
    """The views' heatmap from the page's choices (``kind``: evidence, latent or none)."""
    latent_map = kind == "latent" and latent is not None
    return accessors.viewer.overlay(
        kind if kind != "latent" or latent_map else "none",
        head=head,
        latent=latent if latent_map else None,
        colour_map=choices.get("colour-map", "inferno"),
        opacity=0.45 if latent_map else 0.7,
        threshold=0.3 if latent_map else 0.1,
    )


def view_scores(
    bundle: accessors.Bundle, views: list[Any], calibrated: pd.DataFrame, points: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per present view, a column per head: ``98% ▲ (raw 0.31)``, the calibrated probability,
    ▲ where it passes the operating point, and the classifier's own probability."""
    rows = []
    for view in views:
        if view.position is None:
            continue
        raw = accessors.view_probabilities(bundle, view.position).set_index("head")
        row: dict[str, Any] = {"view": accessors.view_name(view)}
        for head in bundle.tasks:
            p = float(calibrated.loc[view.position, head])
            marked = " ▲" if head in points and p >= points[head].threshold else ""
            row[head] = f"{p:.0%}{marked} (raw {float(raw.loc[head, 'original']):.2f})"
        rows.append(row)
    return pd.DataFrame(rows)


def view_score_columns(tasks: tuple[str, ...]) -> dict[str, Any]:
    return {
        task: st.column_config.TextColumn(
            task,
            help="calibrated probability (Platt scaling on the analysed split); ▲ = at or above the "
            "operating point, so the view carries a CAD mark; raw = the classifier's own probability",
        )
        for task in tasks
    }


def finding_spots(findings: pd.DataFrame, views: list[Any]) -> dict[str, tuple[int, tuple[float, ...], str]]:
    """Each ground-truth finding of the study as a spot for "what fires here": label -> (position, frame
    box, view name)."""
    names = {int(v.position): accessors.view_name(v) for v in views if v.position is not None}
    return {
        row.label: (
            int(row.position),
            (row.frame_x0, row.frame_y0, row.frame_x1, row.frame_y1),
            names[int(row.position)],
        )
        for row in findings.itertuples()
    }


def marks_caption(study_marks: Mapping[int, list[Any]], names: Mapping[int, str]) -> str:
    """What the CAD marks on this study say (Markdown-safe): one entry per mark, or that there is none."""
    entries = [
        f"{names[position]} {accessors.md_text(mark.head)} {mark.score:.0%}"
        for position, found in study_marks.items()
        for mark in found
    ]
    if not entries:
        return "No view passes an operating point: no CAD marks on this study."
    return (
        f"CAD marks ({len(entries)}): "
        + ", ".join(entries)
        + ". A mark sits where the head's evidence is strongest."
    )


# The verdict form's choices (the library's, named here so the page needs no import).
EVIDENCE_CHOICES = list(vd.EVIDENCE)
MODEL_ERRORS = list(vd.MODEL_ERRORS)
COHERENT_CHOICES = list(vd.COHERENT)
MAX_NOTE = vd.MAX_NOTE


def slot_names(bundle: accessors.Bundle, study: str) -> list[str]:
    """The study's four hanging slots by name ("R CC"), "" where the study lacks that view."""
    return [
        accessors.view_name(v) if v.position is not None else ""
        for v in accessors.hanging_views(bundle, study)
    ]


def add_to_session(bundle: accessors.Bundle, name: str, study: str, note: str = "") -> None:
    """Append ``study`` (with ``note``) to the review session ``name`` under the file's lock, creating it
    when new; a study already in it keeps its place and gets the new note."""
    accessors.verdicts.sessions(bundle).add(name, study, note, accessors.verdicts.reviewer() or "")
