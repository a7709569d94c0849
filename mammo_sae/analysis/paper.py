"""The Mammo-SAE paper's VinDr-Mammo test numbers (per CSV row, fine-tuned models), for side-by-side
display. These are published figures for real mammograms; never compare them with phantom results as if
they measured the same thing."""

from __future__ import annotations

import pandas as pd

SOURCE = "Mammo-SAE paper, VinDr-Mammo test (per CSV row)"

# AUROC original -> with the SAE reconstruction in place of the features
SAE_AUROC: dict[tuple[str, str], tuple[float, float]] = {
    ("calcification", "fine-tuned"): (0.9790, 0.9790),
    ("calcification", "linear probe"): (0.9515, 0.9327),
    ("mass", "fine-tuned"): (0.8562, 0.8555),
    ("mass", "linear probe"): (0.7866, 0.7638),
}
# AUROC of the fine-tuned models with only T_k kept / T_k suppressed (k per class); None = "all"
KEEP_AUROC: dict[str, dict[int | None, float]] = {
    "calcification": {1: 0.668, 5: 0.911, 10: 0.964, 50: 0.978, 250: 0.979, 500: 0.979, 1000: 0.979},
    "mass": {1: 0.726, 5: 0.785, 10: 0.845, 50: 0.854, 250: 0.855, 500: 0.855, 1000: 0.855},
}
SUPPRESS_AUROC: dict[str, dict[int | None, float]] = {
    "calcification": {1: 0.972, 5: 0.969, 10: 0.973, 50: 0.50},
    "mass": {1: 0.849, 5: 0.844, 10: 0.846, 50: 0.625, 100: 0.50},
}
# mAP of the top class-1 neurons (fine-tuned mass model: ~0.30 for the top 4; linear probe 0.02-0.05)
LOCALISATION_MAP = {"mass fine-tuned (top 4 neurons)": 0.30, "mass linear probe": "0.02-0.05"}


def paper_curves() -> pd.DataFrame:
    """The keep/suppress AUROC points in the layout of a bundle's curve table (concept = head)."""
    records = [
        {
            "concept": task,
            "head": task,
            "unit": "row",
            "mode": mode,
            "k": k,
            "k_label": str(k),
            "auroc": value,
            "source": SOURCE,
        }
        for mode, table in (("keep", KEEP_AUROC), ("suppress", SUPPRESS_AUROC))
        for task, points in table.items()
        for k, value in points.items()
    ]
    return pd.DataFrame.from_records(records)
