"""The contribution bars of a case: one builder (Case review and Upload), largest |contribution| on top
whatever order the rows come in, and the order is in the spec (Vega keeps a previous dataset's order when
a chart with `sort: null` is redrawn with new data)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import vl_convert

from mammo_sae.analysis.charts import contributions_chart
from mammo_sae.analysis.interventions import InterventionError


def contributions(seed: int, n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latents = rng.choice(500, size=n, replace=False)
    values = rng.normal(scale=0.05, size=n)
    return pd.DataFrame(
        {
            "latent": latents,
            "zbar": np.abs(values),
            "effect": np.sign(values),
            "contribution": values,
            "label": [f"#{t} name {t}" for t in latents],
        }
    )


def ranked_labels(table: pd.DataFrame) -> list[str]:
    order = np.lexsort((table["latent"].to_numpy(), -np.abs(table["contribution"].to_numpy())))
    return table["label"].to_numpy()[order].tolist()


def drawn_labels(chart) -> list[str]:
    """The y-axis labels of the rendered chart, top to bottom (vl-convert renders offline)."""
    svg = vl_convert.vegalite_to_svg(chart.to_json())
    return re.findall(r">(#\d+ name \d+)<", svg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bars_are_drawn_largest_first_whatever_the_row_order(seed: int) -> None:
    table = contributions(seed).sample(frac=1.0, random_state=seed)  # rows in no particular order
    chart = contributions_chart(table, "mass")
    assert chart.to_dict()["encoding"]["y"]["sort"] == ranked_labels(table), "the order is in the spec"
    assert drawn_labels(chart) == ranked_labels(table)


def test_bar_colours_follow_the_sign_and_the_axis_names_the_head() -> None:
    spec = contributions_chart(contributions(3), "calcification").to_dict()
    assert spec["encoding"]["x"]["title"] == "contribution to the calcification logit"
    assert spec["encoding"]["color"]["condition"]["test"] == "datum.contribution > 0"


def test_a_table_without_labels_or_with_repeated_labels_is_refused() -> None:
    table = contributions(4)
    with pytest.raises(InterventionError, match="lacks columns"):
        contributions_chart(table.drop(columns="label"), "mass")
    table.loc[1, "label"] = table.loc[0, "label"]
    with pytest.raises(InterventionError, match="its own label"):
        contributions_chart(table, "mass")
