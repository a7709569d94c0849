"""Concept neurons: every latent in a concept's ranking, searchable by name, category and flag (each column
explained), beside the page of one latent (reachable by link: ``/concepts?latent=N``): its flags, firing
statistics, activation histogram (log count), effect on each head, top patches (each opening its case),
where it lies in the dictionary's firing-frequency density (dead and dense latents listed) and its name
(kept in the user's data folder with its author and time, exported as CSV)."""

from __future__ import annotations

import accessors
import altair as alt
import streamlit as st

st.title("Concept neurons")
bundle = accessors.require_bundle()
notes = accessors.latent_notes(bundle)
pages = accessors.pages
state = st.session_state

linked = pages.url_latent(bundle)  # a link names the latent to open; it wins over the session's
if linked is not None:
    state["latent"] = linked

# --- the catalogue ------------------------------------------------------------------------------------------
row = st.columns([1.1, 1.5, 1.5, 1.6, 1.6], vertical_alignment="bottom")
concept = row[0].selectbox("Concept", list(bundle.concepts), key="cn-concept")
cls = row[1].radio(
    "Class", [1, 0], horizontal=True, key="cn-class",
    format_func=lambda c: f"class {c} ({'positive' if c else 'negative'})",
)  # fmt: skip
search = row[2].text_input("Search names", key="cn-search", placeholder="a name, or #id")
categories = row[3].multiselect("Category filter", pages.category_choices(), key="cn-categories")
flags = row[4].multiselect(
    "Flag filter", pages.flag_choices(bundle), format_func=pages.flag_text, key="cn-flags"
)
full = pages.catalogue(bundle, concept, cls)
table = pages.filter_catalogue(full, search, categories, flags)
if "latent" not in state:
    pages.show_latent(int((table if len(table) else full)["latent"].iloc[0]))


def on_number(key: str) -> None:
    """Open the typed latent and clear the table's selection (a fresh table key)."""
    pages.show_latent(int(state[key]))
    state["cn-table-gen"] = state.get("cn-table-gen", 0) + 1


left, right = st.columns([1.25, 1], gap="medium")
with left:
    st.caption(
        accessors.md_text(
            f"{accessors.ranking_caption(bundle, cls)}; localisation against the {concept} boxes of the "
            f"analysed split. {len(table):,} of {bundle.d_sae:,} latents match."
        )
        + " Click a row to open its latent; hover a column's name for what it means."
    )
    # a new filter or a typed latent gives the table a fresh key, so a selection always means this table's row
    key = pages.table_key(concept, cls, search, categories, flags, state.get("cn-table-gen", 0))
    event = st.dataframe(
        table, hide_index=True, width="stretch", height=560, key=key, selection_mode="single-row",
        on_select="rerun", column_config=pages.catalogue_columns(bundle, table, concept, cls),
    )  # fmt: skip
rows = event.selection.rows if event else []
if rows and int(table["latent"].iloc[rows[0]]) != int(state["latent"]):
    pages.show_latent(int(table["latent"].iloc[rows[0]]))  # the clicked row is the latent shown
latent = int(state["latent"])
if linked != latent:
    pages.show_latent(latent)  # the address always names the latent shown

# --- the latent's page ------------------------------------------------------------------------------------
with right:
    st.header(accessors.md_text(notes.label(latent)))
    badges = accessors.latent_badges(bundle, latent)
    rank = pages.latent_rank(full, latent)
    st.markdown(
        (badges + " · " if badges else "")
        + (f"rank {rank:,} for {accessors.md_text(concept)} class {cls}" if rank else "not ranked")
        + f" · link: `{pages.latent_link(latent)}`"
    )
    st.number_input(
        "Latent", 0, bundle.d_sae - 1, value=latent, key=f"latent-number-{latent}", on_change=on_number,
        args=(f"latent-number-{latent}",), help="any latent of the dictionary; the table need not list it",
    )  # fmt: skip
    stats = accessors.latent_stats(bundle, latent)
    cols = [c for pair in (st.columns(2), st.columns(2)) for c in pair]
    cols[0].metric(
        "Fires on tokens",
        f"{100 * stats['frequency']:.2f}%",
        help="share of the analysed split's tokens where it is active",
    )
    cols[1].metric(
        "Fires on images",
        f"{100 * stats['images']:.1f}%",
        help="share of the analysed images with at least one active token",
    )
    cols[2].metric(
        "Mean when active",
        f"{stats['mean_active']:.3f}",
        help="mean activation over the tokens where it fires",
    )
    cols[3].metric("Max", f"{stats['max']:.3f}", help="its largest activation on the analysed split")  # fmt: skip
    st.altair_chart(pages.histogram_chart(bundle, latent), width="stretch")
    st.altair_chart(pages.effect_chart(bundle, latent), width="stretch")

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
            "Each caption: activation · image. A caption naming a finding kind marks a patch that overlaps a "
            "ground-truth box of that kind."
        )

where = st.columns([1.3, 1])
where[0].altair_chart(
    alt.Chart(accessors.latent_by_label(bundle, latent), title="Mean activation per image, by label")
    .mark_boxplot()
    .encode(x=alt.X("label:N"), y=alt.Y("mean activation:Q"), column=alt.Column("concept:N", title=None))
    .properties(height=180, width=160),
)
health = pages.dictionary_health(bundle)
with where[1]:
    st.altair_chart(pages.density_chart(bundle, latent), width="stretch")
    st.caption(
        f"Dead: fires on no token of the {accessors.md_text(health['split'])} split "
        f"({len(health['dead']):,} latents). Dense: fires on more than {health['dense_threshold']:.0%} of "
        f"its tokens ({len(health['dense']):,} latents), usually a bias rather than a concept."
    )
    for what in ("dead", "dense"):
        if len(health[what]):
            with st.expander(f"{what.capitalize()} latents ({len(health[what]):,})"):
                st.dataframe(
                    health[what], hide_index=True, width="stretch",
                    column_config={"frequency": st.column_config.NumberColumn(format="percent",
                                                                              help="share of tokens where it fires")},
                )  # fmt: skip


def save_latent_notes(notes: accessors.LatentNotes, latent: int) -> None:
    """Form callback: save this latent's fields over what the form started from (``base``), so edits other
    sessions made since to the fields left alone are kept; then show the merged entry in the form."""
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
    state[f"note-base-{latent}"] = entry
    for field in ("name", "category", "note"):
        state[f"note-{field}-{latent}"] = entry[field]


st.subheader("Name this latent")
if f"note-name-{latent}" not in state:
    start_form(notes, latent)
with st.form(f"name-{latent}"):
    form = st.columns([1, 1])
    form[0].text_input("Name", max_chars=80, key=f"note-name-{latent}")
    form[1].selectbox("Category", accessors.CATEGORIES, key=f"note-category-{latent}")
    st.text_area("Note", max_chars=2000, key=f"note-note-{latent}", height=80)
    st.form_submit_button("Save", on_click=save_latent_notes, args=(notes, latent))
kind, message = state.pop("note-message", (None, ""))
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
    with st.expander(f"Named latents ({len(named):,})"):
        st.dataframe(named, hide_index=True, width="stretch")
    st.download_button(
        "Export names and notes (CSV)", notes.to_csv(), file_name="latent_notes.csv", mime="text/csv"
    )
