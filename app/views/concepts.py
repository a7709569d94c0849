"""Concept neurons: latents ranked per finding and class; a latent's top patches, activation histogram,
where it fires and its effect on each head; naming latents (saved in the bundle, exported as CSV)."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

from mammo_sae.bundle.queries import concept_table, latent_by_label, latent_effects, latent_histogram
from mammo_sae.overlays import patch_crop

st.title("Concept neurons")
bundle = accessors.require_bundle()
notes = accessors.LatentNotes(bundle.path, bundle.d_sae)
if bundle.synthetic:
    st.caption("**Synthetic phantoms:** generated images with planted lesions, not patient data.")

left, right = st.columns([1, 1])
concept = left.selectbox("Concept", list(bundle.concepts))
cls = right.radio(
    "Class", [1, 0], horizontal=True, format_func=lambda c: f"class {c} ({'positive' if c else 'negative'})"
)
table = concept_table(bundle, concept, cls, top=50, notes=notes)
st.caption(
    f"Ranked by class-{cls} mean activation minus the all-image mean on the "
    f"{bundle.manifest['splits']['score']} split; localisation against the {concept} boxes of the analysed split."
)
selection = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="concept-table",
)
rows = selection.selection.rows if selection else []
default = (
    int(table["latent"].iloc[rows[0]])
    if rows
    else int(st.session_state.get("latent", table["latent"].iloc[0]))
)
latent = int(st.number_input("Latent", 0, bundle.d_sae - 1, value=default))
st.session_state["latent"] = latent

st.header(accessors.md_text(notes.label(latent)))
stats = bundle.latents.loc[latent]
cols = st.columns(4)
cols[0].metric("Fires on tokens", f"{100 * stats['frequency']:.2f}%")
cols[1].metric("Fires on images", f"{100 * stats['images']:.1f}%")
cols[2].metric("Mean when active", f"{stats['mean_active']:.3f}")
cols[3].metric("Max", f"{stats['max']:.3f}")

st.subheader("Top-activating patches")
patches = bundle.patches[bundle.patches["latent"] == latent].sort_values("rank").head(12)
if patches.empty:
    st.info("This latent never fires on the analysed split.")
else:
    root = accessors.bundle_data_root(bundle)
    if root is None:
        st.dataframe(patches, hide_index=True)
    else:
        paths = accessors.dataset_index(root).images.set_index("image_id")["path"]
        grid = st.columns(6)
        for i, patch in enumerate(patches.itertuples()):
            try:
                image = accessors.mammogram(paths[patch.image_id])
                box = (patch.orig_x0, patch.orig_y0, patch.orig_x1, patch.orig_y1)
                crop = patch_crop(accessors.display_image(image), box)
            except accessors.MammoSaeError as error:
                grid[i % 6].error(str(error))
                continue
            grid[i % 6].image(crop, caption=f"{patch.value:.2f} · {patch.image_id[:8]}", width="stretch")

chart_cols = st.columns(3)
hist = latent_histogram(bundle, latent)
chart_cols[0].altair_chart(
    alt.Chart(hist, title="Activation histogram (non-zero tokens)")
    .mark_bar()
    .encode(
        x=alt.X("from:Q", title="activation", bin="binned"), x2="to:Q", y=alt.Y("tokens:Q", title="tokens")
    ),
    width="stretch",
)
by_label = latent_by_label(bundle, latent).melt(
    ["image_id", "study_id", "mean activation"], var_name="concept", value_name="label"
)
chart_cols[1].altair_chart(
    alt.Chart(by_label, title="Mean activation per image, by label")
    .mark_boxplot()
    .encode(x=alt.X("label:N"), y=alt.Y("mean activation:Q"), column=alt.Column("concept:N", title=None)),
)
chart_cols[2].altair_chart(
    alt.Chart(latent_effects(bundle, latent), title="Direct effect on each head's logit")
    .mark_bar()
    .encode(x="effect:Q", y="head:N"),
    width="stretch",
)

st.subheader("Name this latent")
entry = notes.get(latent) or {}
with st.form(f"name-{latent}"):
    name = st.text_input("Name", value=entry.get("name", ""), max_chars=80)
    category = st.selectbox(
        "Category", accessors.CATEGORIES, index=accessors.CATEGORIES.index(entry.get("category", "unclear"))
    )
    note = st.text_area("Note", value=entry.get("note", ""), max_chars=2000)
    if st.form_submit_button("Save"):
        try:
            notes.save(latent, name, category, note)
            st.success(f"Saved {accessors.md_text(notes.label(latent))}.")
        except accessors.MammoSaeError as error:
            st.error(str(error))
named = notes.table()
if not named.empty:
    st.dataframe(named, hide_index=True, width="stretch")
    st.download_button(
        "Export names and notes (CSV)", notes.to_csv(), file_name="latent_notes.csv", mime="text/csv"
    )
