"""Training report: the SAE's loss parts, L0, FVU, dead and dense fractions and schedules over training, on
log axes where they span decades, with where the dead window filled and dead latents were resampled."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Training report")
bundle = accessors.require_bundle()
try:
    report = accessors.pages.training_report(bundle)
except accessors.MammoSaeError as error:
    st.info(accessors.md_text(error))
    st.stop()
if report.single is not None:
    st.info(
        "The SAE's training log holds a single step, so there are no curves to draw (a curve needs two "
        "logged steps or more; train longer or log more often with --log-every). The step's values:"
    )
    st.dataframe(report.single, hide_index=True, width="content")
    st.stop()
st.caption(
    f"{report.steps:,} logged steps from the SAE's metrics.jsonl. A panel whose values span a decade or more "
    "has a log value axis; dashed lines mark training events (hover them)."
)
columns = st.columns(2)
for i, panel in enumerate(report.panels):
    with columns[i % 2]:
        st.altair_chart(accessors.pages.training_chart(panel), width="stretch")
        if panel.note:
            st.caption(accessors.md_text(panel.note))
