"""Case review: a study's four views in the hanging protocol, each head's probability and, under each view,
where the chosen head's evidence lies; the overlay (the head's evidence map by default, a latent's map, or
none); click a point on a view (or pick a finding) for what fires there; the latents that drive the view's
logit (click a bar or a row to overlay that latent); a full-resolution zoom."""

from __future__ import annotations

from dataclasses import replace

import accessors
import streamlit as st

st.title("Case review")
bundle = accessors.require_bundle()
root = accessors.require_data_root(bundle)
label = accessors.latent_labeller(bundle)  # "#id name [badges]"
notes = accessors.latent_notes(bundle)
has_evidence = accessors.has_evidence(bundle)
state = st.session_state

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
current = state.get("study")
study = st.selectbox(f"Study ({len(ids):,} match)", ids, index=ids.index(current) if current in ids else 0)
state["study"] = study
views = accessors.hanging_views(bundle, study)
present = accessors.present_views(bundle, study)
names = [accessors.view_name(v) for v in present]
by_name = dict(zip(names, present, strict=True))
strongest = {
    head: accessors.view_name(next(v for v in present if v.position == accessors.strongest_view(bundle, views, head)))
    for head in bundle.tasks
}  # fmt: skip


# --- what a click changes (callbacks run before the page reruns) ---------------------------------------------
def show_latent(latent: int) -> None:
    state["latent"], state["overlay"] = int(latent), "latent"


def bump(counter: str) -> None:
    """A fresh key for the charts or tables of ``counter``: a later click on the same item registers."""
    state[counter] = state.get(counter, 0) + 1


def on_spot(key: str, study: str, position: int, name: str) -> None:
    token = accessors.picked_token(state.get(key))
    if token is not None:
        state["spot"] = {
            "study": study,
            "position": position,
            "token": token,
            "where": f"{name}, token {token}",
        }
        state["chart-view"] = name
        bump("spot-gen")


def on_finding(key: str, study: str, findings: dict[str, tuple[int, tuple[float, ...], str]]) -> None:
    choice = state.get(key)
    if choice in findings:
        position, box, name = findings[choice]
        state["spot"] = {"study": study, "position": position, "box": box, "where": choice}
        state["chart-view"] = name
        bump("spot-gen")


def on_row(key: str, latents: list[int]) -> None:
    rows = state[key].selection.rows if state.get(key) else []
    if rows:
        show_latent(latents[rows[0]])


def on_bar(key: str) -> None:
    latent = accessors.picked_latent(state.get(key), "bar")
    if latent is not None:
        show_latent(latent)
        bump("bar-gen")


def copy_latent(key: str) -> None:
    show_latent(int(state[key]))


# --- the head that matters, and the overlay ---------------------------------------------------------------
if (
    state.get("head-for") != (study, tuple(positive)) or "overlay-head" not in state
):  # a new study opens on its head
    state["head-for"] = (study, tuple(positive))
    state["overlay-head"] = accessors.study_head(bundle, views, tuple(positive))
    state["chart-view"] = strongest[state["overlay-head"]]
if state.get("chart-view") not in names:
    state["chart-view"] = strongest[state.get("overlay-head", bundle.tasks[0])]

overlays = ["evidence map", "latent", "none"] if has_evidence else ["latent", "none"]
if state.get("overlay") not in overlays:
    state["overlay"] = overlays[0]
pick = st.columns([2.4, 1.4, 2.2, 1], vertical_alignment="bottom")  # fits 1280 px wide with the sidebar
overlay = pick[0].radio("Overlay", overlays, key="overlay", horizontal=True)
head = pick[1].selectbox(
    "Head", list(bundle.tasks), key="overlay-head",
    on_change=lambda: state.update({"chart-view": strongest[state["overlay-head"]]}),
    help="whose evidence the map, the lines under the views and the contribution bars show",
)  # fmt: skip
chart_position = by_name[state["chart-view"]].position
latent: int | None = None
if overlay == "latent":
    suggestions = accessors.suggested_latents(bundle, chart_position, head, state.get("latent"))
    latent = int(state.get("latent", suggestions[0]))
    state["latent"] = latent
    choose = st.columns([3, 1, 2.4])
    choose[0].selectbox(
        "Latent", suggestions, format_func=label, key=f"latent-pick-{latent}",
        on_change=copy_latent, args=(f"latent-pick-{latent}",),
        help="this view's top contributors to the head, then the head's top class-1 concept latents",
    )  # fmt: skip
    choose[1].number_input(
        "Any latent", 0, bundle.d_sae - 1, value=latent, key=f"latent-number-{latent}",
        on_change=copy_latent, args=(f"latent-number-{latent}",),
    )  # fmt: skip
with pick[3].popover("Display", width="stretch"):
    invert = st.toggle("Invert", value=False, help="grey levels only; the views hang the same way")
    show_boxes = st.toggle("Ground-truth boxes", value=True)
    predicted = st.toggle("Predicted boxes", value=False, disabled=overlay == "none")
    height = st.select_slider("View height", [360, 480, 560, 720], value=480)
    preset_choice = st.selectbox("Window", ["file default", "full range"])
    colour_map = st.selectbox("Colour map", accessors.colour_maps(), disabled=overlay != "latent",
                              help="of a latent's map; the evidence map is always warm / cool")  # fmt: skip
    opacity = st.slider("Opacity", 0.0, 1.0, 0.45 if overlay == "latent" else 0.7, 0.05)
    threshold = st.slider("Threshold", 0.0, 1.0, 0.3 if overlay == "latent" else 0.1, 0.05,
                          help="fraction of the map's maximum (of its largest magnitude for evidence)")  # fmt: skip
preset = None if preset_choice == "file default" else "full range"
evidence_head = head if overlay == "evidence map" else None
vmax = accessors.evidence_vmax(bundle, views, head) if evidence_head else None
if latent is not None:
    badges = accessors.latent_badges(bundle, latent)
    st.markdown(
        f"Showing {accessors.md_text(notes.label(latent))}{' ' + badges if badges else ''}; its map is thresholded at "
        f"{threshold:.0%} of its maximum."
    )
elif evidence_head is not None:
    st.caption(
        f"Evidence for the {accessors.md_text(head)} logit, token by token: warm raises it, cool lowers it; one "
        f"colour scale for the study's views (±{vmax or 0:.3g} per token at full colour). Evidence on the frame's "
        "padding lies outside the image: it is not drawn, but counts as off the breast in the lines below."
    )
if not has_evidence:
    st.caption(accessors.md_text(accessors.EVIDENCE_MISSING))
st.caption(
    "Click a point on a view to see what fires there; click a bar or a row below to overlay that latent."
)

options = accessors.ViewOptions(
    preset=preset, invert=invert, max_height=height, show_boxes=show_boxes, colour_map=colour_map,
    opacity=opacity, threshold=threshold, show_predicted=predicted,
)  # fmt: skip
kinds = tuple(bundle.concepts)
spot = state.get("spot")
spot = spot if spot and spot.get("study") == study else None
spot_gen = state.get("spot-gen", 0)

# --- the hanging protocol: click a point for what fires there ---------------------------------------------
for row_views in (views[:2], views[2:]):
    columns = st.columns(2)
    for column, view in zip(columns, row_views, strict=True):
        with column:
            name = accessors.view_name(view)
            if view.position is None:
                st.caption(f"{name}: not in this study")
                continue
            try:
                rects, picker = accessors.view_picker(
                    bundle, root, view.position, options, latent, kinds, evidence_head, vmax, spot
                )
            except accessors.MammoSaeError as error:
                st.error(accessors.md_text(error))  # may quote DICOM values
                continue
            key = f"view-{view.position}-{spot_gen}"
            st.vega_lite_chart(
                rects, picker, key=key, width="content", selection_mode="spot", theme=None,
                on_select=lambda key=key, study=study, p=view.position, name=name: on_spot(key, study, p, name),
            )  # fmt: skip
            st.caption(name)
            st.markdown(accessors.probability_line(bundle, view.position))
            line = accessors.evidence_line(bundle, view.position, head)
            if line:
                st.markdown(accessors.md_text(line))

# --- what fires here ---------------------------------------------------------------------------------------
st.subheader("What fires here")
findings = accessors.view_findings(bundle, views)
finding_spots = {
    row.label: (int(row.position), (row.frame_x0, row.frame_y0, row.frame_x1, row.frame_y1),
                accessors.view_name(next(v for v in present if v.position == row.position)))
    for row in findings.itertuples()
}  # fmt: skip
finding_key = f"finding-{study}-{spot_gen}"
st.selectbox(
    "Or explain a ground-truth finding", ["(a clicked point)", *finding_spots], key=finding_key,
    on_change=on_finding, args=(finding_key, study, finding_spots),
    disabled=not finding_spots, help="the latents active on the tokens the finding's box overlaps",
)  # fmt: skip
if spot is None:
    st.info("Click a point on any view, or pick a ground-truth finding, to see which latents fire there.")
else:
    try:
        fires = accessors.fires_here(bundle, spot)
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
    else:
        st.caption(
            f"{accessors.md_text(spot['where'])}: {fires.attrs.get('n_in', 1)} token(s). Ranked by mean activation "
            "there; specificity = that mean over the mean on the rest of the image; contribution = the latent's "
            "part of each head's logit from there. Click a row to overlay that latent."
        )
        rows_key, fired = f"fires-{spot_gen}", fires["latent"].tolist()
        st.dataframe(
            fires.drop(columns=["label"]), key=rows_key, hide_index=True, width="stretch",
            on_select=lambda key=rows_key, latents=fired: on_row(key, latents),
            selection_mode="single-row", column_config=accessors.fires_columns(bundle, fires),
        )  # fmt: skip

# --- contributions -----------------------------------------------------------------------------------------
st.subheader("What drives this case's logits")
chosen = by_name[st.selectbox("View", names, key="chart-view")]
bars, const = accessors.contributions_spec(bundle, chosen.position, head, top=15)
bar_key = f"contrib-{state.get('bar-gen', 0)}"
st.vega_lite_chart(
    spec=bars, width="stretch", key=bar_key, selection_mode="bar", on_select=lambda key=bar_key: on_bar(key),
)  # fmt: skip
st.caption(
    f"Each bar is a latent's mean activation on this view times its direct effect on the {accessors.md_text(head)} "
    f"logit, largest first; with the constant {const:+.3f} they add up to the logit with the SAE in "
    "place. Click a bar to overlay that latent."
)

# --- zoom ------------------------------------------------------------------------------------------------
with st.expander("Zoom at full resolution"):
    zoom_view = by_name[st.selectbox("View", names, key="zoom-view")]
    try:
        full = accessors.case_view(
            bundle, root, zoom_view.position, replace(options, max_height=100_000, hang=False), latent, kinds,
            evidence_head, vmax,
        )  # fmt: skip
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
