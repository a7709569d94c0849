"""Upload: the views of one exam of your own (DICOMs or PNGs, or a zip of them), hung as Case review hangs
a study and run through the bundle's classifier and SAE, with the same tools: the evidence or a latent's
map on the views, each view's and breast's probabilities, what fires where you click, the latents that
drive a head, and an intervention. The files stay in memory: nothing is written to disk, and only
allow-listed metadata is shown. A file that is not a usable mammogram is named with its reason."""

from __future__ import annotations

import accessors
import accessors.uploads as uploads
import streamlit as st

md = accessors.md_text
state = st.session_state
st.title("Upload a study")
bundle = accessors.require_bundle()
st.caption(
    "Research use only. The files are read in memory and discarded with your session; nothing is stored. "
    "Drop the four views of one exam (R/L CC and MLO): single-frame greyscale DICOMs (with or without an "
    "extension, as a PACS exports them), PNG frames, or one zip of them. Each view is placed by its tags, "
    "else its series text, else its pixels."
)
files = st.file_uploader("The views of one exam", accept_multiple_files=True, key="up-files")
if not files:
    uploads.prepare(bundle)  # the models load while the files are picked
    st.info("Upload up to four views (or a zip of them) to see them hung and explained.")
    st.stop()
try:
    with st.spinner("Reading the files and running the models on each view…"):
        upload = uploads.load(bundle, [(f.name, f.getvalue()) for f in files])
except accessors.MammoSaeError as error:
    st.error(md(error))  # the message may quote file names and DICOM values: untrusted
    st.stop()
left_out = [f"**{md(name)}**: {md(reason)}" for name, reason in upload.refused]
if not upload.cases:
    st.error("No usable mammogram in the upload.  \n" + "  \n".join(left_out))
    st.stop()
if left_out:
    st.warning("Left out of the study:  \n" + "  \n".join(left_out), icon="⚠️")
if upload.study.studies > 1:
    st.warning("The DICOMs name more than one study: the views shown may come from different exams.")

# --- what the viewer asked for on the last run (a click selects its view and explains its token) -------------
slots = upload.slots
event = accessors.viewer.new_event(state.get("up-hanging"), "up-hanging-seen")
if event and event["event"] in ("select", "point"):
    clicked = uploads.SLOTS[int(event.get("slot", 0))]
    if clicked in slots:
        state["up-view"] = clicked
        if event["event"] == "point" and event.get("token") is not None:
            state["up-spot"] = {"upload": upload.key, "slot": clicked, "token": int(event["token"])}
            state["up-panel"] = "What fires here"
if state.get("up-view") not in slots:
    state["up-view"] = slots[0]

# --- the probabilities, with the notice beside them --------------------------------------------------------------
table = uploads.probabilities(bundle, upload)
exam = table[table["where"] == "exam"].iloc[0]
mismatch = uploads.mismatch_notice(bundle, upload)
scores = st.columns([1] * len(bundle.tasks) + [2.5])
for column, head in zip(scores, bundle.tasks, strict=False):
    column.metric(
        f"{head} probability", f"{exam[head]:.3f}",
        help=f"the highest of the views; with the SAE in place: {exam[f'{head} (SAE)']:.3f}",
    )  # fmt: skip
with scores[-1]:
    if mismatch:
        st.warning(mismatch, icon="⚠️")
    if upload.missing:
        st.caption(f"Missing: {', '.join(upload.missing)} (drawn empty).")

# --- the choices, then the hanging and the panel beside it --------------------------------------------------------
bar = st.columns([1.2, 1.2, 1, 1.6, 1.2], vertical_alignment="bottom")
overlay_kind = bar[0].selectbox(
    "Overlay", ["evidence", "latent", "none"], key="up-overlay",
    help="the heatmap on the views: the head's evidence with the SAE in place (warm raises its logit, cool "
    "lowers it), a latent's activation, or none",
)  # fmt: skip
head = bar[1].selectbox("Head", list(bundle.tasks), key="up-head")
view = bar[2].selectbox("View", slots, key="up-view", help="a click on a view selects it too")
drivers = uploads.contributions(bundle, upload, view, head, top=15)
label = accessors.latent_labeller(bundle)
suggested = [int(t) for t in drivers["latent"]] or [0]
if state.get("up-latent") not in suggested:
    state["up-latent"] = suggested[0]
latent = bar[3].selectbox(
    "Latent", suggested, key="up-latent", format_func=label, disabled=overlay_kind != "latent",
    help="the view's top contributors to the head (its map is shown when the overlay is 'latent')",
)  # fmt: skip
colour_map = bar[4].selectbox("Colour map", accessors.colour_maps(), key="up-colour-map")
chosen = uploads.overlay(overlay_kind, head, latent, colour_map)

stage, side = st.columns([1.6, 1], gap="small")
with stage:
    uploads.viewer(bundle, upload, chosen, uploads.SLOTS.index(view), key="up-hanging")
with side:
    panels = ["Scores", "What fires here", "Drivers", "Intervene"]
    if state.get("up-panel") not in panels:
        state["up-panel"] = "Scores"
    panel = st.segmented_control("Panel", panels, key="up-panel", required=True, label_visibility="collapsed")
    if mismatch:
        st.caption(f":orange[⚠️ {mismatch}]")
    if panel == "Scores":
        with_sae = st.toggle("With the SAE in place too", key="up-sae")
        shown = table if with_sae else table[[c for c in table.columns if not c.endswith("(SAE)")]]
        st.dataframe(
            shown, hide_index=True, width="stretch",
            column_config={
                "where": st.column_config.TextColumn(width="small"),
                **{c: st.column_config.NumberColumn(c.replace("(SAE)", "SAE"), format="%.3f", width="small")
                   for c in shown.columns if c != "where"},
            },
        )  # fmt: skip
        st.caption(
            "Per view, then each breast's and the exam's highest view; SAE: with its reconstruction in place."
        )
        st.dataframe(uploads.provenance(upload), hide_index=True, width="stretch")
    elif panel == "What fires here":
        spot = state.get("up-spot")
        if not spot or spot.get("upload") != upload.key:
            st.info("Click a point on any view to see which latents fire there.")
        else:
            fires = uploads.fires_here(bundle, upload, spot["slot"], spot["token"])
            st.caption(
                f"{spot['slot']}, token {spot['token']}: the latents active there by activation, and each one's "
                "share of every head's logit from that token."
            )
            st.dataframe(
                fires, hide_index=True, width="stretch",
                column_config={"latent": st.column_config.NumberColumn(format="%d")},
            )  # fmt: skip
    elif panel == "Drivers":
        st.altair_chart(accessors.contributions_chart(drivers, head), width="stretch")
        st.dataframe(
            drivers[["label", "flags", "contribution"]], hide_index=True, width="stretch",
            column_config=accessors.flag_columns(bundle, drivers),
        )  # fmt: skip
        st.caption(
            f"Each latent's mean activation on {view} times its direct effect on the {md(head)} logit."
        )
    else:
        with st.form("up-intervene", border=False):
            concept = st.selectbox("Concept", list(bundle.concepts))
            k = st.select_slider("k per class", accessors.pages.intervention_ks(bundle), value=10)
            mode = st.radio("Latents", ["suppress", "keep"], horizontal=True)
            st.form_submit_button("Apply")
        result = uploads.intervention(bundle, upload, concept, k, mode)
        st.dataframe(
            result, hide_index=True, width="stretch",
            column_config={c: st.column_config.NumberColumn(format="%+.3f" if c == "change" else "%.3f")
                           for c in ("before", "after", "change")},
        )  # fmt: skip
        st.caption(f"{mode.capitalize()} the top {k} latents of each {md(concept)} class ranking, per view.")

with st.expander("What the network saw (the model frames)"):
    frames = st.columns(4)
    for column, slot in zip(frames, slots, strict=False):
        column.caption(slot)
        column.image(
            uploads.frame(upload, slot, latent if overlay_kind == "latent" else None, colour_map),
            caption=md(upload.study.views[slot].name), width="stretch",
        )  # fmt: skip
metadata = uploads.metadata(upload)
if metadata:
    with st.expander("Metadata (allow-listed)"):
        for slot, values in metadata.items():
            st.caption(f"{slot}: {md(upload.study.views[slot].name)}")
            st.table(accessors.md_table(values))
