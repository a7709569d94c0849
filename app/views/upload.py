"""Upload: run the bundle's classifier and SAE on a DICOM or PNG of your own. The file stays in memory:
it is never written to disk, and only allow-listed metadata is shown."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

from mammo_sae.bundle.cases import sigmoid
from mammo_sae.overlays import COLOUR_MAPS

st.title("Upload a mammogram")
bundle = accessors.require_bundle()
st.caption(
    "Research use only. The file is read in memory and discarded with your session; nothing is stored. "
    "Accepted: a single-frame greyscale DICOM mammogram (.dcm, .dicom) or a PNG frame."
)
upload = st.file_uploader("DICOM or PNG", type=["dcm", "dicom", "png"], accept_multiple_files=False)
if upload is None:
    st.stop()
data = upload.getvalue()
try:
    live = accessors.live_models(bundle)
    if upload.name.lower().endswith(".png"):
        case = live.run_png(accessors.decode_png(data, upload.name))
        metadata = {}
    else:
        image = accessors.read_mammogram(data, name=upload.name)
        case = live.run_dicom(image)
        metadata = image.metadata.as_dict()
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))  # the message quotes the file name and DICOM values: untrusted
    st.stop()

cols = st.columns(len(bundle.tasks))
for column, task in zip(cols, bundle.tasks, strict=True):
    column.metric(
        f"{task} probability", f"{float(sigmoid(case.logits_original[task])):.3f}",
        help=f"with the SAE in place: {float(sigmoid(case.logits_sae[task])):.3f}",
    )  # fmt: skip
head = st.selectbox("Explain head", list(bundle.tasks))
notes = accessors.LatentNotes(bundle.path, bundle.d_sae)
table = live.contributions(case, head).head(15)
label = notes.labeller()
table["label"] = [label(int(t)) for t in table["latent"]]
left, right = st.columns([1, 1])
with left:
    latent = int(
        st.selectbox("Heatmap of", table["latent"].tolist(), format_func=notes.label) if len(table) else 0
    )
    colour_map = st.selectbox("Colour map", list(COLOUR_MAPS))
    overlay = accessors.render_live_case(case, latent, colour_map)
    st.image(overlay, caption=accessors.md_text(upload.name), width="stretch")
with right:
    st.altair_chart(
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title=f"contribution to the {head} logit"),
            y=alt.Y("label:N", sort=None),
        ),
        width="stretch",
    )
if metadata:
    with st.expander("Metadata (allow-listed)"):
        st.table(accessors.md_table(metadata))
