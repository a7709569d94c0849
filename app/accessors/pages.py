"""Accessors of the Interventions, Concept neurons, Training report and Dataset pages (issue 19, point 8):
the case's evidence before and after an intervention, the latent catalogue with its explanations and
charts, a latent's link, the training report's panels, and the Dataset page's first root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import accessors
from mammo_sae.analysis import latent_charts
from mammo_sae.analysis import training_chart as training_charts
from mammo_sae.bundle import cases
from mammo_sae.bundle import evidence_queries as evq
from mammo_sae.bundle import intervention_views as iv
from mammo_sae.bundle import latent_catalogue as lc
from mammo_sae.bundle import training_view as tv
from mammo_sae.bundle.notes import CATEGORIES, LatentNotes
from mammo_sae.bundle.reader import Bundle
from mammo_sae.bundle.stamps import FileStamp, file_stamp
from mammo_sae.bundle.viewer import ViewOptions
from mammo_sae.core.errors import MammoSaeError
from mammo_sae.core.hashing import sha256_json

LATENT_PARAM = "latent"  # the query parameter of a latent's page: /concepts?latent=N
FALLBACK_DATA_ROOT = "data/phantoms"


# --- interventions --------------------------------------------------------------------------------------------


def intervention_ks(bundle: Bundle) -> list[int]:
    """The k choices: 10 to 50 latents per class ranking, none above the SAE's size."""
    return iv.intervention_ks(bundle.d_sae)


def _positions(views: list[cases.HangingView]) -> list[int]:
    return [v.position for v in views if v.position is not None]


def finding_head(bundle: Bundle, views: list[cases.HangingView]) -> str:
    """The head a study opens on: the finding on its views, else the most probable head."""
    return iv.finding_head(bundle, _positions(views))


def finding_view(bundle: Bundle, views: list[cases.HangingView], head: str) -> int:
    """The index in ``views`` of the view to open: the one with ``head``'s finding, else the strongest."""
    position = iv.finding_view(bundle, _positions(views), head)
    return next(i for i, v in enumerate(views) if v.position == position)


def change_colour(change: float) -> str:
    """The colour of a probability change: red for a rise, blue for a fall (gray for none)."""
    return iv.change_colour(change)


@st.cache_data(show_spinner=False, max_entries=24)
def _evidence_pair(
    path: str,
    stamp: FileStamp,
    image: str,
    image_stamp: FileStamp,
    position: int,
    options: ViewOptions,
    head: str,
    scale_l: np.ndarray,
    error_term: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    bundle = accessors._bundle(path, stamp)
    pair = iv.evidence_pair(bundle, position, head, scale_l, error_term=error_term)
    before, after = iv.render_pair(
        bundle, position, accessors._mammogram(image, image_stamp), options, pair, tuple(bundle.concepts)
    )
    facts = {
        "vmax": pair.vmax,
        "logit_before": pair.logit_before,
        "logit_after": pair.logit_after,
        "map_before": float(pair.before_gw.sum() + pair.bias),
        "map_after": float(pair.after_gw.sum() + pair.bias),
    }
    return before.pixels, after.pixels, facts


def evidence_pair(
    bundle: Bundle,
    root: str | Path,
    position: int,
    options: ViewOptions,
    head: str,
    scale_l: np.ndarray,
    *,
    error_term: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The view drawn with ``head``'s evidence map before and after the intervention (one colour scale),
    and the numbers the captions quote (cached per bundle, image file, view, head and scale)."""
    path = accessors.image_path(root, bundle.images.iloc[position]["image_id"])
    return _evidence_pair(
        *accessors._key(bundle), path, file_stamp(path), position, options, head,
        np.asarray(scale_l, dtype=np.float32), error_term,
    )  # fmt: skip


def curve_rows(bundle: Bundle, unit: str, error_term: bool) -> pd.DataFrame:
    """The precomputed keep / suppress curves up to the SAE's size."""
    return iv.curves_within(accessors.curve_rows(bundle, unit, error_term), bundle.d_sae)


def paper_curves(bundle: Bundle) -> pd.DataFrame:
    """The paper's VinDr curves at the k values this SAE's curves have."""
    return iv.curves_within(accessors.paper_curves(), bundle.d_sae)


# --- concept neurons ------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def _catalogue(
    path: str, stamp: FileStamp, concept: str, cls: int, notes_dir: str, notes_stamp: FileStamp
) -> pd.DataFrame:
    bundle = accessors._bundle(path, stamp)
    return lc.catalogue(bundle, concept, cls, LatentNotes(notes_dir, bundle.d_sae))


def catalogue(bundle: Bundle, concept: str, cls: int) -> pd.DataFrame:
    """Every latent in the concept and class ranking order, with names, categories and flags (cached per
    bundle, choice and notes file)."""
    notes = accessors.latent_notes(bundle)
    return _catalogue(*accessors._key(bundle), concept, cls, str(notes.folder), file_stamp(notes.path))


def filter_catalogue(
    table: pd.DataFrame, search: str, categories: list[str], flags: list[str]
) -> pd.DataFrame:
    return lc.filter_catalogue(table, search, categories, flags)


def category_choices() -> list[str]:
    return [*CATEGORIES, lc.UNNAMED]


def flag_choices(bundle: Bundle) -> list[str]:
    return evq.flag_options(bundle)


def flag_text(flag: str) -> str:
    return evq.flag_text(flag)


def catalogue_columns(bundle: Bundle, table: pd.DataFrame, concept: str, cls: int) -> dict[str, Any]:
    """``column_config`` of the catalogue: every column named, formatted and explained in one line."""
    helps = lc.column_help(bundle, concept, cls)
    number, text = st.column_config.NumberColumn, st.column_config.TextColumn
    config: dict[str, Any] = {
        "rank": number("rank", format="%d", width="small", help=helps["rank"]),
        "latent": number("latent", format="%d", width="small", help=helps["latent"]),
        "name": text("name", help=helps["name"]),
        "category": text("category", help=helps["category"]),
        "frequency": number("frequency", format="percent", help=helps["frequency"]),
    }
    for column in table.columns:
        if column not in config and column != "flags":
            config[column] = number(column, format="%.3f", help=helps.get(column))
    flags = accessors.flag_columns(bundle, table)["flags"]
    flags["help"] = helps["flags"]
    return {**config, "flags": flags}


def table_key(concept: str, cls: int, search: str, categories: list[str], flags: list[str], gen: int) -> str:
    """The catalogue table's widget key: new for every filter (and each ``gen``), so a selected row index
    always refers to the rows on screen."""
    return (
        "cn-table-"
        + sha256_json([concept, int(cls), search, sorted(categories), sorted(flags), int(gen)])[:16]
    )


def latent_rank(table: pd.DataFrame, latent: int) -> int | None:
    return lc.latent_rank(table, latent)


def url_latent(bundle: Bundle) -> int | None:
    """The latent a link names (``?latent=N``), or None."""
    return lc.parse_latent(st.query_params.get(LATENT_PARAM), bundle.d_sae)


def show_latent(latent: int) -> None:
    """Make ``latent`` the shown one, in the session and in the page's address (a link to it)."""
    st.session_state["latent"] = int(latent)
    st.query_params[LATENT_PARAM] = str(int(latent))


def latent_link(latent: int) -> str:
    """The address of a latent's page on this server (the path and query when the host is unknown)."""
    base = str(getattr(st.context, "url", "") or "").split("?", 1)[0].rstrip("/")
    page = base if base.endswith("/concepts") else f"{base}/concepts" if base else "/concepts"
    return f"{page}?{LATENT_PARAM}={int(latent)}"


def histogram_chart(bundle: Bundle, latent: int) -> alt.Chart:
    """The latent's activation histogram on a log count axis."""
    return latent_charts.activation_histogram_chart(
        accessors.latent_histogram(bundle, latent), title="Activation histogram (log count)"
    )


def effect_chart(bundle: Bundle, latent: int) -> alt.Chart:
    """The latent's direct effect on each head's logit."""
    return latent_charts.head_effect_chart(accessors.latent_effects(bundle, latent))


@st.cache_data(show_spinner=False, max_entries=8)
def _health(path: str, stamp: FileStamp) -> dict[str, Any]:
    return lc.dictionary_health(accessors._bundle(path, stamp))


def dictionary_health(bundle: Bundle) -> dict[str, Any]:
    """The firing-frequency density of every latent and the dead and dense ones."""
    return _health(*accessors._key(bundle))


def density_chart(bundle: Bundle, latent: int | None) -> alt.LayerChart:
    """Latents per firing frequency (log axis), the dense threshold and the shown latent marked."""
    health = dictionary_health(bundle)
    marked = float(bundle.latents.loc[latent, "frequency"]) if latent is not None else None
    return latent_charts.density_chart(
        health["density"], dense_threshold=health["dense_threshold"], marked=marked,
        title=f"How often each of the {bundle.d_sae:,} latents fires",
    )  # fmt: skip


# --- training report --------------------------------------------------------------------------------------


def training_report(bundle: Bundle) -> tv.TrainingReport:
    """The SAE's training report (BundleError when it kept no log)."""
    return tv.training_report(bundle)


def training_chart(panel: tv.Panel) -> alt.Chart | alt.LayerChart:
    """One panel of the report: log value axis where its values span decades, its events as rules."""
    return training_charts.training_chart(panel.long, panel.x, panel.title, log=panel.log, rules=panel.rules)


# --- dataset ----------------------------------------------------------------------------------------------


def dataset_root() -> str:
    """The root the Dataset page opens on: ``MAMMO_SAE_DATA``, else the picked bundle's images (the demo's
    phantoms, generated with a progress bar on a fresh machine), else the README's phantom folder."""
    if os.environ.get("MAMMO_SAE_DATA"):
        return accessors.default_data_root()
    path = st.session_state.get("bundle_path") or accessors.default_bundle_path()
    try:
        root = accessors.bundle_data_root(accessors.open_bundle(path))
    except (MammoSaeError, OSError):
        return FALLBACK_DATA_ROOT
    return str(root) if root is not None else FALLBACK_DATA_ROOT
