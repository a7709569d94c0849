"""Case review: a study's four views in the hanging protocol, each head's probability, ground-truth boxes,
a latent's heatmap, a full-resolution zoom, and the latents that drive the case's logits."""

from __future__ import annotations

from dataclasses import replace

import accessors
import streamlit as st

st.title("Case review")
bundle = accessors.require_bundle()
root = accessors.require_data_root(bundle)
notes = accessors.latent_notes(bundle)

# --- pick a study ------------------------------------------------------------------------------------
choices = accessors.study_filter_options(bundle)
with st.sidebar:
    st.subheader("Find a study")
    split = st.selectbox("Split", choices["split"])
    positive = st.multiselect("Positive for", list(bundle.concepts))
    birads = st.multiselect("BI-RADS", choices["birads"])
    density = st.multiselect("Density", choices["density"])
    search = st.text_input("Study id contains")
ids = accessors.filter_studies(
    bundle, split=split, positive=tuple(positive), birads=tuple(birads), density=tuple(density), search=search
)
if not ids:
    st.info("No study matches these filters.")
    st.stop()
current = st.session_state.get("study")
study = st.selectbox(f"Study ({len(ids):,} match)", ids, index=ids.index(current) if current in ids else 0)
st.session_state["study"] = study
views = accessors.hanging_views(bundle, study)
present = accessors.present_views(bundle, study)
names = [accessors.view_name(v) for v in present]

# --- display and latent options ----------------------------------------------------------------------
top = st.columns([1, 1, 1, 1])
invert = top[0].toggle("Invert", value=False, help="grey levels only; the views hang the same way")
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
        strongest = accessors.strongest_view(bundle, views, head)
        table = accessors.contributions(bundle, strongest, head, top=10)
        options = dict(zip(table["label"], table["latent"], strict=True))
        latent = (
            int(options[pick[1].selectbox("Top contributor (strongest view)", list(options))])
            if options
            else None
        )
    elif source == "concept table":
        concept = pick[1].selectbox("Concept", list(bundle.concepts))
        ranked = accessors.concept_table(bundle, concept, 1, top=20)
        labels = dict(zip(map(notes.labeller(), ranked["latent"]), ranked["latent"], strict=True))
        latent = int(labels[pick[1].selectbox("Class-1 latent", list(labels))])
    elif source == "number":
        latent = int(
            pick[1].number_input("Latent", 0, bundle.d_sae - 1, value=int(st.session_state.get("latent", 0)))
        )
    colour_map = pick[2].selectbox("Colour map", accessors.colour_maps())
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
                st.caption(f"{accessors.view_name(view)}: not in this study")
                continue
            try:
                pixels = accessors.case_view(bundle, root, view.position, options, latent, kinds)
            except accessors.MammoSaeError as error:
                st.error(accessors.md_text(error))  # may quote DICOM values
                continue
            st.image(pixels, caption=accessors.view_name(view), width="stretch")
            st.markdown(accessors.probability_line(bundle, view.position))

# --- zoom ------------------------------------------------------------------------------------------------
with st.expander("Zoom at full resolution"):
    zoom_view = present[names.index(st.selectbox("View", names, key="zoom-view"))]
    try:
        full = accessors.case_view(
            bundle, root, zoom_view.position, replace(options, max_height=100_000, hang=False), latent, kinds
        )
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
        st.stop()
    centre = st.radio("Centre on", accessors.zoom_centres(), horizontal=True)
    half = st.select_slider("Window (pixels)", [64, 128, 192, 256, 384], value=192)
    st.image(
        accessors.zoom(bundle, full, zoom_view.position, centre, latent, half),
        caption="full resolution, not mirrored",
        width=min(2 * half * 2, 768),
    )

# --- contributions ---------------------------------------------------------------------------------------
st.subheader("What drives this case's logits")
chart_cols = st.columns(2)
head = chart_cols[0].selectbox("Head", list(bundle.tasks), key="chart-head")
chosen = present[names.index(chart_cols[1].selectbox("View", names, key="chart-view"))]
table = accessors.contributions(bundle, chosen.position, head, top=15)
st.altair_chart(accessors.contributions_chart(table, head), width="stretch")
st.caption(
    f"Each bar is a latent's mean activation on this view times its direct effect on the {accessors.md_text(head)} "
    f"logit, largest first; with the constant {table.attrs['const']:+.3f} they add up to the logit with the SAE in place."
)
