"""Training report: the SAE's loss parts, L0, FVU and dead fraction over training."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

st.title("Training report")
bundle = accessors.require_bundle()
try:
    panels, steps = accessors.training_report(bundle)
except accessors.MammoSaeError as error:
    st.info(accessors.md_text(error))
    st.stop()
columns = st.columns(2)
for i, (title, x, long) in enumerate(panels):
    chart = (
        alt.Chart(long, title=title)
        .mark_line()
        .encode(x=alt.X(f"{x}:Q", title=x), y="value:Q", color="metric:N")
    )
    columns[i % 2].altair_chart(chart, width="stretch")
st.caption(f"{steps} logged steps from the SAE's metrics.jsonl.")
