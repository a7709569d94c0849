"""A reliability diagram (Altair / Vega-Lite): per head, the observed positive rate against the mean
predicted probability in each bin, beside the diagonal of perfect calibration, with each series' expected
calibration error in the panel's subtitle, the bin counts as point sizes and tooltips, and optionally the
head's operating point as a vertical rule.

table = pd.concat([reliability_bins(p, y).assign(head="mass", series="calibrated"), ...])
chart = reliability_chart(table, thresholds={"mass": 0.52})   # one panel per head, a line per series
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import pandas as pd

from mammo_sae.analysis.operating_points import OperatingPointError, expected_calibration_error

CHART_COLUMNS = ("head", "series", "mean_predicted", "observed", "count")
SERIES_COLOURS = ("#e0a040", "#9aa0a6", "#5b8def")  # calibrated first, then the classifier's own
DIAGONAL_COLOUR = "#bbbbbb"
MUTED = "#9aa0a6"  # readable on the light and the dark theme
THRESHOLD_COLOUR = "#e05a5a"


def series_ece(table: pd.DataFrame) -> pd.DataFrame:
    """head, series, ece, count for each (head, series) of a chart table, in the table's order."""
    rows = [
        {
            "head": head,
            "series": series,
            "ece": expected_calibration_error(part),
            "count": int(part["count"].sum()),
        }
        for (head, series), part in table.groupby(["head", "series"], sort=False)
    ]
    return pd.DataFrame(rows, columns=["head", "series", "ece", "count"])


def reliability_chart(
    table: pd.DataFrame,
    *,
    thresholds: Mapping[str, float] | None = None,
    size: int = 240,
    series_order: Sequence[str] | None = None,
) -> alt.HConcatChart:
    """Panels side by side, one per head (in the table's order), each ``size`` px square: the dashed
    diagonal, and per series a line through its bins' (mean predicted, observed) with points sized by the
    bin's count; a head's entry in ``thresholds`` (a finite probability) adds a vertical rule there, the
    operating point. The subtitle gives each series' ECE."""
    missing = [name for name in CHART_COLUMNS if name not in table.columns]
    if missing:
        raise OperatingPointError(
            f"the reliability table lacks columns {missing}; pass reliability_bins rows"
        )
    if table.empty:
        raise OperatingPointError("the reliability table is empty: there is no labelled image to draw")
    order = list(series_order or dict.fromkeys(table["series"]))
    colours = alt.Scale(domain=order, range=list(SERIES_COLOURS[: len(order)]))
    eces = series_ece(table)
    diagonal = pd.DataFrame({"mean_predicted": [0.0, 1.0], "observed": [0.0, 1.0]})
    panels = []
    for head, part in table.groupby("head", sort=False):
        errors = eces[eces["head"] == head]
        subtitle = ", ".join(f"ECE {r.ece:.3f} {r.series}" for r in errors.itertuples())
        axis = alt.Scale(domain=[0, 1])
        x = alt.X("mean_predicted:Q", scale=axis, title="mean predicted probability")
        y = alt.Y("observed:Q", scale=axis, title="observed positive rate")
        base = alt.Chart(diagonal).mark_line(strokeDash=[4, 4], color=DIAGONAL_COLOUR).encode(x=x, y=y)
        data = part[list(CHART_COLUMNS)].copy()
        colour = alt.Color(
            "series:N", scale=colours, legend=alt.Legend(title=None, orient="bottom", labelLimit=0)
        )
        tooltip = [
            "series:N",
            alt.Tooltip("mean_predicted:Q", format=".3f", title="mean predicted"),
            alt.Tooltip("observed:Q", format=".3f", title="observed"),
            alt.Tooltip("count:Q", title="images"),
        ]
        lines = alt.Chart(data).mark_line(strokeWidth=1.5).encode(x=x, y=y, color=colour, detail="series:N")
        points = (
            alt.Chart(data)
            .mark_circle(opacity=0.9)
            .encode(
                x=x,
                y=y,
                color=colour,
                size=alt.Size(
                    "count:Q",
                    title="images in bin",
                    scale=alt.Scale(zero=False, range=[15, 300]),
                    legend=alt.Legend(orient="bottom", symbolFillColor=MUTED, symbolStrokeColor=MUTED),
                ),
                tooltip=tooltip,
            )
        )
        layers = [base, lines, points]
        threshold = (thresholds or {}).get(head)
        if threshold is not None and 0.0 <= threshold <= 1.0:
            rule = pd.DataFrame(
                {"mean_predicted": [threshold], "label": [f"operating point {threshold:.2f}"]}
            )
            layers.append(
                alt.Chart(rule)
                .mark_rule(color=THRESHOLD_COLOUR, strokeDash=[2, 2])
                .encode(x=x, tooltip=[alt.Tooltip("label:N", title="threshold")])
            )
        panels.append(
            alt.layer(*layers).properties(
                width=size,
                height=size,
                title=alt.Title(str(head), subtitle=subtitle, subtitleColor=MUTED, subtitleFontSize=12),
            )
        )
    return alt.hconcat(*panels).resolve_scale(color="shared", size="shared")
