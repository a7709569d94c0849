"""Every latent of a bundle as one searchable table for the Concept neurons page: the chosen concept and
class's ranking with scores, statistics, effects, localisation, flags, names and categories; filtered by
name, category and flag; a one-line explanation of every column; the dictionary's dead and dense latents;
and the ``latent`` of a link (``?latent=N``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from mammo_sae.analysis.latent_density import DENSE_THRESHOLD, dead_and_dense, firing_density
from mammo_sae.analysis.scores import describe_ranking
from mammo_sae.bundle.notes import LatentNotes
from mammo_sae.bundle.queries import concept_table
from mammo_sae.bundle.reader import Bundle
from mammo_sae.core.errors import MammoSaeError

UNNAMED = "(not named yet)"  # the category filter's choice for latents nobody has named


def catalogue(bundle: Bundle, concept: str, cls: int, notes: LatentNotes | None = None) -> pd.DataFrame:
    """Every latent in the ``concept`` class-``cls`` ranking order (``queries.concept_table`` over the whole
    dictionary) with ``name`` and ``category`` from the notes ("" and UNNAMED for latents nobody named)."""
    table = concept_table(bundle, concept, cls, top=bundle.d_sae, notes=notes)
    entries = notes.all() if notes is not None else {}
    table["name"] = [str(entries.get(int(t), {}).get("name", "")) for t in table["latent"]]
    table["category"] = [
        str(entries[int(t)].get("category") or UNNAMED) if int(t) in entries else UNNAMED
        for t in table["latent"]
    ]
    first = ["rank", "latent", "name", "category", "flags"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def _matches(text: str, search: str) -> bool:
    return search in text.lower()


def filter_catalogue(
    table: pd.DataFrame, search: str = "", categories: Iterable[str] = (), flags: Iterable[str] = ()
) -> pd.DataFrame:
    """The rows whose name contains ``search`` (any case; ``#12`` or ``12`` finds latent 12), whose category
    is one of ``categories`` and that carry at least one of ``flags`` (an empty filter keeps every row)."""
    keep = np.ones(len(table), dtype=bool)
    search = search.strip().lower()
    if search:
        by_id = search.lstrip("#")
        keep &= np.array(
            [
                (by_id.isdigit() and int(t) == int(by_id)) or _matches(name, search)
                for t, name in zip(table["latent"], table["name"], strict=True)
            ],
            dtype=bool,
        )
    categories = set(categories)
    if categories:
        keep &= table["category"].isin(categories).to_numpy()
    wanted = set(flags)
    if wanted:
        keep &= np.array([bool(wanted & set(f)) for f in table["flags"]], dtype=bool)
    return table[keep].reset_index(drop=True)


def column_help(bundle: Bundle, concept: str, cls: int) -> dict[str, str]:
    """One line per column of ``catalogue``: what it is and how it was measured."""
    split = bundle.manifest["splits"]
    try:
        ranked_by = describe_ranking(bundle.rank_by, cls)
    except MammoSaeError:
        ranked_by = f"the manifest's score {bundle.rank_by!r}"
    top = f" (measured for the ranking's first {bundle.manifest['config'].get('localise_top', 10)} only)"
    heads = {
        f"effect {t}": f"change of the {t} logit per unit of the latent's mean activation over an image "
        "(its decoder direction through the head): + raises, - lowers"
        for t in bundle.tasks
    }
    return {
        "rank": f"place in the {concept} class-{cls} ranking, by {ranked_by} ({split['score']} split)",
        "latent": "the latent's index in the SAE dictionary; a link to its page is ?latent=N",
        "name": "the name a reader gave it (yours or a colleague's; blank: not named yet)",
        "category": "the category a reader filed it under",
        "flags": "off-breast: fires mostly outside the breast; marker: mostly on burned-in markers; "
        "<category> lesion: its peaks land in that category's boxes",
        "class mean": f"its mean activation over the {concept} class-{cls} images",
        "score": f"class-{cls} mean activation minus the all-image mean (the paper's deviation)",
        "peak score": f"class-{cls} mean of each image's peak activation minus the all-image mean of peaks",
        "frequency": f"share of all tokens of the {split['analysis']} split on which it fires",
        "mean active": "its mean activation on the tokens where it fires",
        **heads,
        "pointing": f"share of {concept} boxes whose strongest token of this latent falls inside the box{top}",
        "IoU": f"mean overlap (intersection over union) of its thresholded map with the {concept} boxes{top}",
        "AP@0.3": f"average precision of its predicted boxes against the {concept} boxes at IoU 0.3{top}",
    }


def latent_rank(table: pd.DataFrame, latent: int) -> int | None:
    """The 1-based rank of ``latent`` in ``table`` (None when the table does not hold it)."""
    hit = table.index[table["latent"] == int(latent)]
    return int(table.loc[hit[0], "rank"]) if len(hit) else None


def parse_latent(value: Any, d_sae: int) -> int | None:
    """The latent of a link's ``latent=N`` (None when absent, not a number or outside 0..d_sae-1)."""
    text = str(value if value is not None else "").strip().lstrip("#")
    if not text.isdigit():
        return None
    latent = int(text)
    return latent if 0 <= latent < d_sae else None


def dictionary_health(bundle: Bundle, dense_threshold: float = DENSE_THRESHOLD) -> dict[str, Any]:
    """The firing-frequency density of every latent and its dead and dense latents (ids and frequencies)."""
    frequency_l = bundle.latents["frequency"].to_numpy(dtype=np.float64)
    dead, dense = dead_and_dense(frequency_l, dense_threshold)
    return {
        "density": firing_density(frequency_l),
        "dead": pd.DataFrame({"latent": dead, "frequency": frequency_l[dead]}),
        "dense": pd.DataFrame({"latent": dense, "frequency": frequency_l[dense]}),
        "dense_threshold": dense_threshold,
        "split": bundle.manifest["splits"]["analysis"],
        "d_sae": bundle.d_sae,
    }
