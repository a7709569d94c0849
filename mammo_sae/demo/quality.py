"""The demo's quality figures, measured from a bundle built on held-out phantoms, and their targets.

Every figure is recomputed from the bundle's own tables (the quality test does it again from the shipped
files and regenerated phantoms): classifier AUROC, SAE reconstruction quality, the pointing game of the
top-ranked class-1 latent, the keep/suppress interventions, and the latents that fire on the burned-in
markers (the confounder check).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mammo_sae.analysis import peaks
from mammo_sae.bundle import Bundle

TARGETS: dict[str, tuple[str, float]] = {
    "classifier_auroc.calcification": (">=", 0.95),
    "classifier_auroc.mass": (">=", 0.90),
    "sae.fvu": ("<=", 0.15),
    "sae.dead_fraction": ("<=", 0.10),
    "sae_auroc_gap.calcification": ("<=", 0.01),
    "sae_auroc_gap.mass": ("<=", 0.01),
    "pointing_top_latent.calcification": (">=", 0.80),
    "pointing_top_latent.mass": (">=", 0.70),
    "keep_top10_recovery.calcification": (">=", 0.95),
    "suppress_top50_auroc.calcification": ("<=", 0.60),
}


def _get(table: pd.DataFrame, column: str, **where: Any) -> float:
    mask = pd.Series(True, index=table.index)
    for key, value in where.items():
        mask &= table[key] == value
    rows = table[mask]
    assert len(rows) == 1, f"expected one row for {where}, found {len(rows)}"
    return float(rows[column].iloc[0])


def marker_latents(bundle: Bundle) -> list[dict[str, Any]]:
    """Every marker latent of the bundle (``analysis.peaks.marker_latents``, uncapped) as JSON-ready records."""
    n_markers = int((bundle.boxes["kind"] == "marker").sum())
    hits = peaks.marker_latents(bundle.latents, n_markers)
    return [
        {"latent": int(latent), **{c: round(float(row[c]), 5) for c in hits.columns}}
        for latent, row in hits.iterrows()
    ]


def measure(bundle: Bundle) -> dict[str, Any]:
    """Every quality figure of the demo, per image of the held-out test split."""
    base, curves, loc = bundle.baselines, bundle.curves, bundle.localisation
    tasks = [t for t in ("calcification", "mass") if t in bundle.tasks]
    sae = bundle.manifest["summary"]["sae"]
    figures: dict[str, Any] = {
        "classifier_auroc": {},
        "sae_auroc": {},
        "sae_auroc_gap": {},
        "pointing_top_latent": {},
        "top_latent": {},
        "keep_top10_recovery": {},
        "keep_top10_auroc": {},
        "suppress_top50_auroc": {},
    }
    for task in tasks:
        original = _get(base, "auroc", head=task, unit="image", variant="original")
        with_sae = _get(base, "auroc", head=task, unit="image", variant="sae")
        own = curves[
            (curves["concept"] == task)
            & (curves["head"] == task)
            & (curves["unit"] == "image")
            & ~curves["error_term"]
        ]
        keep10 = _get(own, "auroc", mode="keep", k_label="10")
        figures["classifier_auroc"][task] = original
        figures["sae_auroc"][task] = with_sae
        figures["sae_auroc_gap"][task] = abs(original - with_sae)
        figures["pointing_top_latent"][task] = _get(loc, "pointing", concept=task, cls=1, rank=0, target=task)
        figures["top_latent"][task] = int(_get(loc, "latent", concept=task, cls=1, rank=0, target=task))
        figures["keep_top10_auroc"][task] = keep10
        figures["keep_top10_recovery"][task] = keep10 / with_sae
        figures["suppress_top50_auroc"][task] = _get(own, "auroc", mode="suppress", k_label="50")
    figures["sae"] = {"fvu": sae["fvu"], "dead_fraction": sae["dead_fraction"], "l0": sae["l0"]}
    figures["marker_latents"] = marker_latents(bundle)
    return figures


def lookup(figures: dict[str, Any], dotted: str) -> float:
    group, _, key = dotted.partition(".")
    return float(figures[group][key])


def failures(figures: dict[str, Any]) -> list[str]:
    """The targets a set of figures misses, as readable lines (empty when all hold)."""
    missed = []
    for name, (op, bound) in TARGETS.items():
        value = lookup(figures, name)
        ok = value >= bound if op == ">=" else value <= bound
        if not ok or math.isnan(value):
            missed.append(f"{name} = {value:.4f}, target {op} {bound}")
    return missed
