"""Training report: the SAE's loss parts, L0, FVU and dead fraction over training."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

from mammo_sae.bundle.queries import training_metrics

st.title("Training report")
bundle = accessors.require_bundle()
try:
    metrics = training_metrics(bundle)
except accessors.MammoSaeError as error:
    st.info(str(error))
    st.stop()
x = "tokens" if "tokens" in metrics else "step"
panels = [
    ("Loss parts", [c for c in ("loss", "mse", "sparsity", "aux") if c in metrics]),
    ("Active latents per token (L0)", ["l0"]),
    ("Fraction of variance unexplained", ["fvu"]),
    ("Dead and dense latents (fraction)", [c for c in ("dead_fraction", "dense_fraction") if c in metrics]),
]
columns = st.columns(2)
for i, (title, fields) in enumerate(panels):
    fields = [f for f in fields if f in metrics]
    if not fields:
        continue
    long = metrics[[x, *fields]].melt(x, var_name="metric", value_name="value")
    chart = (
        alt.Chart(long, title=title)
        .mark_line()
        .encode(x=alt.X(f"{x}:Q", title=x), y="value:Q", color="metric:N")
    )
    columns[i % 2].altair_chart(chart, width="stretch")
st.caption(f"{len(metrics)} logged steps from the SAE's metrics.jsonl.")
