"""Upload: run the bundle's classifier and SAE on a DICOM or PNG of your own. The file stays in memory:
it is never written to disk, and only allow-listed metadata is shown."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Upload a mammogram")
bundle = accessors.require_bundle()
st.caption(
    "Research use only. The file is read in memory and discarded with your session; nothing is stored. "
    "Accepted: a single-frame greyscale DICOM mammogram (.dcm, .dicom) or a PNG frame."
)
upload = st.file_uploader("DICOM or PNG", type=["dcm", "dicom", "png"], accept_multiple_files=False)
if upload is None:
    st.stop()
try:
    case, metadata = accessors.run_upload(bundle, upload.name, upload.getvalue())
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))  # the message quotes the file name and DICOM values: untrusted
    st.stop()

probabilities = accessors.live_probabilities(bundle, case)
cols = st.columns(len(probabilities))
for column, row in zip(cols, probabilities.itertuples(), strict=True):
    column.metric(
        f"{row.head} probability", f"{row.original:.3f}", help=f"with the SAE in place: {row.sae:.3f}"
    )
head = st.selectbox("Explain head", list(bundle.tasks))
table = accessors.live_contributions(bundle, case, head, top=15)
labels = dict(zip(table["latent"], table["label"], strict=True))
left, right = st.columns([1, 1])
with left:
    latent = st.selectbox("Heatmap of", list(labels), format_func=labels.get) if labels else None
    colour_map = st.selectbox("Colour map", accessors.colour_maps())
    overlay = accessors.render_live_case(case, None if latent is None else int(latent), colour_map)
    st.image(overlay, caption=accessors.md_text(upload.name), width="stretch")
with right:
    st.altair_chart(accessors.contributions_chart(table, head), width="stretch")
    st.dataframe(
        table[["label", "flags", "contribution"]], hide_index=True, width="stretch",
        column_config=accessors.flag_columns(bundle, table),
    )  # fmt: skip
if metadata:
    with st.expander("Metadata (allow-listed)"):
        st.table(accessors.md_table(metadata))
