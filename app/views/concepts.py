"""Concept neurons: latents ranked per finding and class, with their flags as badges; a latent's top
patches (marked where they hit a ground-truth box, each opening its case), activation histogram, where it
fires and its effect on each head; naming latents (kept in the user's data folder with their author and
time, exported as CSV)."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

st.title("Concept neurons")
bundle = accessors.require_bundle()
notes = accessors.latent_notes(bundle)

left, right = st.columns([1, 1])
concept = left.selectbox("Concept", list(bundle.concepts))
cls = right.radio(
    "Class", [1, 0], horizontal=True, format_func=lambda c: f"class {c} ({'positive' if c else 'negative'})"
)
table = accessors.concept_table(bundle, concept, cls, top=50)
st.caption(
    accessors.md_text(
        f"{accessors.ranking_caption(bundle, cls)}; localisation against the {concept} boxes of the analysed split."
    )
)
selection = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="concept-table",
    column_config=accessors.flag_columns(bundle, table),
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
badges = accessors.latent_badges(bundle, latent)
if badges:
    st.markdown(badges)
stats = accessors.latent_stats(bundle, latent)
cols = st.columns(4)
cols[0].metric("Fires on tokens", f"{100 * stats['frequency']:.2f}%")
cols[1].metric("Fires on images", f"{100 * stats['images']:.1f}%")
cols[2].metric("Mean when active", f"{stats['mean_active']:.3f}")
cols[3].metric("Max", f"{stats['max']:.3f}")

st.subheader("Top-activating patches")
patches = accessors.top_patches(bundle, latent, 12)
if patches.empty:
    st.info("This latent never fires on the analysed split.")
else:
    root = accessors.bundle_data_root(bundle)
    if root is None:
        st.dataframe(patches, hide_index=True)
    else:
        grid = st.columns(6)
        gallery = accessors.patch_gallery(bundle, root, patches)
        for i, ((crop, caption), patch) in enumerate(zip(gallery, patches.itertuples(), strict=True)):
            cell = grid[i % 6]
            if crop is None:
                cell.error(caption)  # already escaped
                continue
            cell.image(crop, caption=caption, width="stretch")
            if cell.button(
                "Open case", key=f"open-{latent}-{i}", help=f"study {patch.study_id}, with this latent's map"
            ):
                accessors.open_case(patch.study_id, latent)
                st.switch_page("views/case_review.py")
        st.caption(
            "A caption naming a finding kind marks a patch that overlaps a ground-truth box of that kind."
        )

chart_cols = st.columns(3)
chart_cols[0].altair_chart(
    alt.Chart(accessors.latent_histogram(bundle, latent), title="Activation histogram (non-zero tokens)")
    .mark_bar()
    .encode(
        x=alt.X("from:Q", title="activation", bin="binned"), x2="to:Q", y=alt.Y("tokens:Q", title="tokens")
    ),
    width="stretch",
)
chart_cols[1].altair_chart(
    alt.Chart(accessors.latent_by_label(bundle, latent), title="Mean activation per image, by label")
    .mark_boxplot()
    .encode(x=alt.X("label:N"), y=alt.Y("mean activation:Q"), column=alt.Column("concept:N", title=None)),
)
chart_cols[2].altair_chart(
    alt.Chart(accessors.latent_effects(bundle, latent), title="Direct effect on each head's logit")
    .mark_bar()
    .encode(x="effect:Q", y="head:N"),
    width="stretch",
)


def save_latent_notes(notes: accessors.LatentNotes, latent: int) -> None:
    """Form callback: save this latent's fields over what the form started from (``base``), so edits other
    sessions made since to the fields left alone are kept; then show the merged entry in the form."""
    state = st.session_state
    fields = {field: state[f"note-{field}-{latent}"] for field in ("name", "category", "note")}
    try:
        saved = accessors.save_note(notes, latent, base=state[f"note-base-{latent}"], **fields)
    except accessors.MammoSaeError as error:
        state["note-message"] = ("error", accessors.md_text(error))
        return
    state[f"note-base-{latent}"] = saved
    for field in fields:
        state[f"note-{field}-{latent}"] = saved[field]
    state["note-message"] = ("success", f"Saved {accessors.md_text(notes.label(latent))}.")


def start_form(notes: accessors.LatentNotes, latent: int) -> None:
    """Fill a fresh form from the saved entry and remember that entry as the base of its edits."""
    entry = {**accessors.EMPTY_NOTE, **(notes.get(latent) or {})}
    if entry["category"] not in accessors.CATEGORIES:
        entry["category"] = "unclear"
    st.session_state[f"note-base-{latent}"] = entry
    for field in ("name", "category", "note"):
        st.session_state[f"note-{field}-{latent}"] = entry[field]


st.subheader("Name this latent")
if f"note-name-{latent}" not in st.session_state:
    start_form(notes, latent)
with st.form(f"name-{latent}"):
    st.text_input("Name", max_chars=80, key=f"note-name-{latent}")
    st.selectbox("Category", accessors.CATEGORIES, key=f"note-category-{latent}")
    st.text_area("Note", max_chars=2000, key=f"note-note-{latent}")
    st.form_submit_button("Save", on_click=save_latent_notes, args=(notes, latent))
kind, message = st.session_state.pop("note-message", (None, ""))
if kind == "success":
    st.success(message)
elif kind == "error":
    st.error(message)
author = accessors.note_author()
st.caption(
    f"Saved as {accessors.md_text(author)} (the name in the sidebar)." if author else
    "Type your name in the sidebar to sign the notes you save."
)  # fmt: skip
named = notes.table()
if not named.empty:
    st.dataframe(named, hide_index=True, width="stretch")
    st.download_button(
        "Export names and notes (CSV)", notes.to_csv(), file_name="latent_notes.csv", mime="text/csv"
    )
