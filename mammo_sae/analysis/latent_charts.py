"""Charts of one latent and of the whole dictionary for the Concept neurons page (Altair): a latent's
activation histogram with a log count axis, and the firing-frequency density of every latent on a log
frequency axis with the dense threshold and the shown latent marked.

hist = activation_histogram_chart(table)        # from, to, tokens (bundle.queries.latent_histogram)
density = density_chart(firing_density(freq), dense_threshold=0.1, marked=0.004)
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from mammo_sae.analysis.chart_axes import log_ticks

BAR_COLOUR, THRESHOLD_COLOUR, MARK_COLOUR = "#4c6ef5", "#e8590c", "#2b8a3e"
RISE_COLOUR, FALL_COLOUR = "#e03131", "#1c7ed6"  # as the Interventions page: red a rise, blue a fall


def activation_histogram_chart(table: pd.DataFrame, title: str = "Activation histogram") -> alt.Chart:
    """Bars of the tokens per activation bin (only where the latent fires) on a log count axis: the rare
    strong activations that define a concept stay visible beside the many weak ones. Empty bins are left
    out (a log axis has no zero)."""
    shown = table[table["tokens"] > 0].assign(base=0.5)  # a log axis has no 0: bars rise from half a token
    return (
        alt.Chart(shown, title=title)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=alt.X("from:Q", bin="binned", title="activation (where it fires)"),
            x2="to:Q",
            y=alt.Y(
                "tokens:Q",
                scale=alt.Scale(type="log", domainMin=0.5),
                title="tokens (log scale)",
                axis=alt.Axis(values=log_ticks(1, float(shown["tokens"].max())), format="~s"),
            ),
            y2="base:Q",
            tooltip=[alt.Tooltip("from:Q", format=".3f"), alt.Tooltip("to:Q", format=".3f"), "tokens:Q"],
        )
        .properties(height=220)
    )


def head_effect_chart(effects: pd.DataFrame, title: str = "Direct effect on each head's logit") -> alt.Chart:
    """One bar per head (``head``, ``effect``): the logit change per unit of the latent's mean activation,
    warm for a rise and cool for a fall, on an axis that always shows zero."""
    assert {"head", "effect"} <= set(effects.columns), list(effects.columns)
    table = effects.assign(
        head=effects["head"].astype(object),
        sign=effects["effect"].ge(0).map({True: "raises", False: "lowers"}),
    )
    return (
        alt.Chart(table, title=title)
        .mark_bar()
        .encode(
            x=alt.X("effect:Q", title="logit change per unit of mean activation", scale=alt.Scale(zero=True)),
            y=alt.Y("head:N", title=None, sort=list(table["head"])),
            color=alt.Color(
                "sign:N",
                scale=alt.Scale(domain=["raises", "lowers"], range=[RISE_COLOUR, FALL_COLOUR]),
                legend=None,
            ),
            tooltip=["head:N", alt.Tooltip("effect:Q", format="+.4f")],
        )
        .properties(height=alt.Step(28))
    )


def density_chart(
    density: pd.DataFrame, *, dense_threshold: float, marked: float | None = None, title: str | None = None
) -> alt.LayerChart:
    """Latents per firing-frequency bin (log frequency axis), a rule at the dense threshold and, given
    ``marked`` (the shown latent's frequency, > 0), a rule where that latent lies."""
    x = alt.X(
        "from:Q", bin="binned", scale=alt.Scale(type="log"), axis=alt.Axis(format="~%"),
        title="fires on this fraction of tokens (log scale)",
    )  # fmt: skip
    bars = (
        alt.Chart(density)
        .mark_bar(color=BAR_COLOUR)
        .encode(
            x=x,
            x2="to:Q",
            y=alt.Y("latents:Q", title="latents"),
            tooltip=[
                alt.Tooltip("from:Q", format=".2~%", title="from"),
                alt.Tooltip("to:Q", format=".2~%", title="to"),
                "latents:Q",
            ],
        )
    )
    rules = pd.DataFrame({"at": [dense_threshold], "what": [f"dense above {dense_threshold:.0%}"]})
    colours = [THRESHOLD_COLOUR]
    if marked is not None and marked > 0:
        rules = pd.concat([rules, pd.DataFrame({"at": [marked], "what": ["this latent"]})], ignore_index=True)
        colours.append(MARK_COLOUR)
    lines = (
        alt.Chart(rules)
        .mark_rule(strokeWidth=2, strokeDash=[5, 3])
        .encode(
            x="at:Q",
            color=alt.Color(
                "what:N", scale=alt.Scale(domain=rules["what"].tolist(), range=colours),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=["what:N", alt.Tooltip("at:Q", format=".3~%")],
        )
    )  # fmt: skip
    return alt.layer(bars, lines).properties(
        height=220, title=title or "Firing frequency of every latent (density)"
    )
