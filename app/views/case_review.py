"""Case review: a study's four views in the hanging protocol, each head's probability, ground-truth boxes,
a latent's heatmap, a full-resolution zoom, and the latents that drive the case's logits."""

from __future__ import annotations

from dataclasses import replace

import accessors
import altair as alt
import streamlit as st

from mammo_sae.bundle.queries import concept_table, contributions_table, latent_peak
from mammo_sae.overlays import COLOUR_MAPS, zoom_region

st.title("Case review")
bundle = accessors.require_bundle()
root = accessors.require_data_root(bundle)
notes = accessors.LatentNotes(bundle.path, bundle.d_sae)
if bundle.synthetic:
    st.caption("**Synthetic phantoms:** generated images with planted lesions, not patient data.")

# --- pick a study ------------------------------------------------------------------------------------
studies = accessors.studies(bundle)
with st.sidebar:
    st.subheader("Find a study")
    split = st.selectbox("Split", ["any", *sorted(studies["split"].unique())])
    positive = st.multiselect("Positive for", list(bundle.concepts))
    birads = st.multiselect("BI-RADS", sorted(studies["birads"].astype(str).unique()))
    density = st.multiselect("Density", sorted(studies["density"].astype(str).unique()))
    search = st.text_input("Study id contains")
matches = accessors.filter_studies(
    studies, split=None if split == "any" else split, positive=tuple(positive), birads=tuple(birads),
    density=tuple(density), search=search,
)  # fmt: skip
if matches.empty:
    st.info("No study matches these filters.")
    st.stop()
ids = matches["study_id"].tolist()
current = st.session_state.get("study")
study = st.selectbox(f"Study ({len(ids):,} match)", ids, index=ids.index(current) if current in ids else 0)
st.session_state["study"] = study
views = accessors.hanging_views(bundle, study)

# --- display and latent options ----------------------------------------------------------------------
top = st.columns([1, 1, 1, 1])
invert = top[0].toggle("Invert", value=False)
show_boxes = top[1].toggle("Ground-truth boxes", value=True)
height = top[2].select_slider("View height", [360, 480, 560, 720], value=480)
preset_choice = top[3].selectbox("Window", ["file default", "full range"])
preset = None if preset_choice == "file default" else "full range"

with st.expander("Latent heatmap", expanded=True):
    pick = st.columns([1.2, 1.2, 1, 1, 1, 1])
    source = pick[0].radio("Latent from", ["none", "case contributors", "concept table", "number"], index=1)
    latent: int | None = None
    if source == "case contributors":
        head = pick[1].selectbox("Head", list(bundle.tasks), key="contrib-head")
        position = max((v.position for v in views if v.position is not None),
                       key=lambda p: bundle.images.iloc[p][f"logit_{head}_original"])  # fmt: skip
        table = contributions_table(bundle, position, head, top=10, notes=notes)
        options = dict(zip(table["label"], table["latent"], strict=True))
        latent = (
            int(options[pick[1].selectbox("Top contributor (strongest view)", list(options))])
            if options
            else None
        )
    elif source == "concept table":
        concept = pick[1].selectbox("Concept", list(bundle.concepts))
        ranked = concept_table(bundle, concept, 1, top=20, notes=notes)
        labels = list(map(notes.labeller(), ranked["latent"].astype(int)))
        latent = int(ranked["latent"].iloc[labels.index(pick[1].selectbox("Class-1 latent", labels))])
    elif source == "number":
        latent = int(
            pick[1].number_input("Latent", 0, bundle.d_sae - 1, value=int(st.session_state.get("latent", 0)))
        )
    colour_map = pick[2].selectbox("Colour map", list(COLOUR_MAPS))
    opacity = pick[3].slider("Opacity", 0.0, 1.0, 0.45, 0.05)
    threshold = pick[4].slider("Threshold", 0.0, 1.0, 0.3, 0.05, help="fraction of the map's maximum")
    predicted = pick[5].toggle("Predicted boxes", value=False)
    if latent is not None:
        st.session_state["latent"] = latent
        st.caption(
            f"Showing {accessors.md_text(notes.label(latent))}; its map is thresholded at {threshold:.0%} of its maximum."
        )

options = accessors.ViewOptions(
    preset=preset, invert=invert, max_height=height, show_boxes=show_boxes, colour_map=colour_map,
    opacity=opacity, threshold=threshold, show_predicted=predicted,
)  # fmt: skip
kinds = tuple(bundle.concepts)

# --- the hanging protocol ------------------------------------------------------------------------------
for row_views in (views[:2], views[2:]):
    columns = st.columns(2)
    for column, view in zip(columns, row_views, strict=True):
        with column:
            if view.position is None:
                st.caption(f"{view.laterality} {view.view}: not in this study")
                continue
            try:
                pixels = accessors.case_view(
                    str(bundle.path), str(root), view.position, options, latent, kinds
                )
            except accessors.MammoSaeError as error:
                st.error(accessors.md_text(error))  # may quote DICOM values
                continue
            st.image(pixels, caption=f"{view.laterality} {view.view}", width="stretch")
            probabilities = accessors.view_probabilities(bundle, view.position)
            text = " · ".join(
                f"**{r.head}** {r.original:.2f} (SAE {r.sae:.2f})" for r in probabilities.itertuples()
            )
            st.markdown(text)

# --- zoom ------------------------------------------------------------------------------------------------
with st.expander("Zoom at full resolution"):
    present = [v for v in views if v.position is not None]
    names = [f"{v.laterality} {v.view}" for v in present]
    zoom_view = present[names.index(st.selectbox("View", names, key="zoom-view"))]
    try:
        full = accessors.case_view(
            str(bundle.path), str(root), zoom_view.position,
            replace(options, max_height=100_000, hang=False), latent, kinds,
        )  # fmt: skip
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
        st.stop()
    centre_choice = st.radio("Centre on", ["heatmap peak", "first box", "image centre"], horizontal=True)
    centre = (full.shape[1] / 2, full.shape[0] / 2)
    if centre_choice == "heatmap peak" and latent is not None:
        centre = latent_peak(bundle, zoom_view.position, latent)
    elif centre_choice == "first box":
        boxes = accessors.view_boxes(bundle, zoom_view.position, kinds)
        if len(boxes):
            b = boxes.iloc[0]
            centre = ((b.xmin + b.xmax) / 2, (b.ymin + b.ymax) / 2)
    half = st.select_slider("Window (pixels)", [64, 128, 192, 256, 384], value=192)
    st.image(
        zoom_region(full, centre, half), caption="full resolution, not mirrored", width=min(2 * half * 2, 768)
    )

# --- contributions ---------------------------------------------------------------------------------------
st.subheader("What drives this case's logits")
chart_cols = st.columns(2)
head = chart_cols[0].selectbox("Head", list(bundle.tasks), key="chart-head")
present = [v for v in views if v.position is not None]
names = [f"{v.laterality} {v.view}" for v in present]
chosen = present[names.index(chart_cols[1].selectbox("View", names, key="chart-view"))]
table = contributions_table(bundle, chosen.position, head, top=15, notes=notes)
chart = (
    alt.Chart(table)
    .mark_bar()
    .encode(
        x=alt.X("contribution:Q", title=f"contribution to the {head} logit"),
        y=alt.Y("label:N", sort=None, title="latent"),
        color=alt.condition("datum.contribution > 0", alt.value("#e0a040"), alt.value("#5b8def")),
        tooltip=["latent", "zbar", "effect", "contribution"],
    )
)
st.altair_chart(chart, width="stretch")
st.caption(
    f"Each bar is a latent's mean activation on this view times its direct effect on the {head} logit; with the "
    f"constant {table.attrs['const']:+.3f} they add up to the logit with the SAE in place."
)
