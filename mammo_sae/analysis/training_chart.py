"""One panel of the SAE training report (Altair): metrics against tokens or steps, on a log value axis when
they span decades, with vertical rules where something happened in training (the dead window filling,
each resampling of dead latents).

chart = training_chart(long, "tokens", "Loss parts", log=True, rules=rules)   # long: x, metric, value
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from mammo_sae.analysis.chart_axes import log_ticks

RULE_COLOUR = "#868e96"


def training_chart(
    long: pd.DataFrame, x: str, title: str, *, log: bool, rules: pd.DataFrame | None = None
) -> alt.Chart | alt.LayerChart:
    """Lines of ``value`` against ``x``, one per ``metric``; ``rules`` (columns ``at`` in ``x`` units and
    ``what``) are drawn as dashed vertical lines with their label in the tooltip."""
    positive = long["value"][long["value"] > 0]
    y = alt.Y(
        "value:Q",
        scale=alt.Scale(type="log") if log else alt.Scale(zero=False),
        title="value (log scale)" if log else "value",
        axis=alt.Axis(values=log_ticks(float(positive.min()), float(positive.max())), format="~g")
        if log and not positive.empty
        else alt.Axis(),
    )
    lines = (
        alt.Chart(long, title=title)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X(f"{x}:Q", title="training tokens" if x == "tokens" else x, axis=alt.Axis(format="~s")),
            y=y,
            color=alt.Color("metric:N", legend=alt.Legend(orient="top", title=None, offset=2)),
            tooltip=[f"{x}:Q", "metric:N", alt.Tooltip("value:Q", format=".4~g")],
        )
    )
    if rules is None or rules.empty:
        return lines
    marks = (
        alt.Chart(rules)
        .mark_rule(color=RULE_COLOUR, strokeDash=[4, 3])
        .encode(x="at:Q", tooltip=["what:N", alt.Tooltip("at:Q", format=",.0f", title=x)])
    )
    return alt.layer(lines, marks)
