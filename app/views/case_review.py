"""Case review, the reading screen: a study's four views hung as a reader hangs them (zoom, pan and
window/level in the browser), CAD-style marks at each head's operating point with their scores, the
head's evidence map or a latent's map; beside it the worklist, the findings and scores, what fires where
the reader clicks, the latents that drive the logit, and the reviewer's verdict. The choices persist
across pages and the case, view, latent and head are in the URL, so a link opens the same screen."""

from __future__ import annotations

import accessors
import streamlit as st

reading, marks, verdicts, viewer = accessors.reading, accessors.marks, accessors.verdicts, accessors.viewer
bundle = accessors.require_bundle()
root = accessors.require_data_root(bundle)
state = st.session_state
label = accessors.latent_labeller(bundle)  # "#id name [badges]"
notes = accessors.latent_notes(bundle)
has_evidence = accessors.has_evidence(bundle)
KEEP = {"persist_state": "session"}  # every choice here outlives a visit to another page


def keep(key: str, default: object) -> None:
    """A widget's first value, set once through session state (then the widget owns it)."""
    if key not in state:
        state[key] = default


# A link's choices (study, view, latent, head, overlay, session) win on the session's first visit; the page
# writes them back into the address bar on every run (below), so the address is a link to what is shown.
for key, value in reading.linked_choices(st.query_params.to_dict()).items():
    if key not in state:
        state[key] = value  # checked against the bundle below

# --- the worklist ------------------------------------------------------------------------------------------
for key, default in {
    "wl-split": "all", "wl-findings": [], "wl-birads": [], "wl-density": [], "wl-reviewed": "all",
    "wl-search": "", "wl-sort": "worklist order", "wl-descending": True, "op-specificity": 0.90,
    "review-session": reading.ALL_STUDIES,
}.items():  # fmt: skip
    keep(key, default)
specificity = float(state["op-specificity"])
points = marks.operating_points(bundle, specificity)
calibrated = marks.calibrated_table(bundle)  # position x head
table = reading.worklist(bundle, calibrated, verdicts.reviewed_studies(bundle))
choices = reading.worklist_choices(table)
sessions = verdicts.session_names(bundle)
if state["review-session"] not in (reading.ALL_STUDIES, *sessions):  # a link to a session since deleted
    state["missing-session"] = state["review-session"]
    state["review-session"] = reading.ALL_STUDIES
with st.sidebar:
    st.subheader("Worklist")
    session_name = st.selectbox(
        "Review session", [reading.ALL_STUDIES, *sessions], key="review-session", **KEEP,
        help="a saved, ordered list of studies for a case-review meeting (build one below)",
    )  # fmt: skip
    if session_name != reading.ALL_STUDIES:
        state.pop("missing-session", None)
    elif state.get("missing-session"):
        st.warning(
            f"There is no review session named {accessors.md_text(state['missing-session'])} for this bundle "
            "(deleted, or a mistyped link): the whole worklist is shown. Pick a saved session above, or build one below."
        )
    if session_name == reading.ALL_STUDIES:
        st.selectbox("Split", ["all", *choices["split"]], key="wl-split", **KEEP)
        st.multiselect("Findings (all of)", choices["findings"], key="wl-findings", **KEEP)
        filters = st.columns(2)
        filters[0].multiselect("BI-RADS", choices["birads"], key="wl-birads", **KEEP)
        filters[1].multiselect("Density", choices["density"], key="wl-density", **KEEP)
        st.radio("Reviewed", ["all", "not reviewed", "reviewed"], key="wl-reviewed", horizontal=True, **KEEP)
        st.text_input("Study id contains", key="wl-search", **KEEP)
        order = st.columns([3, 2], vertical_alignment="bottom")
        order[0].selectbox("Sort by", list(reading.WORKLIST_SORTS), key="wl-sort", **KEEP)
        order[1].toggle("Descending", key="wl-descending", **KEEP)
        shown = reading.worklist_view(table, state, bundle.tasks)
    else:
        session = verdicts.load_session(bundle, session_name)
        shown = reading.session_view(table, session)
    st.subheader("View and map")
    map_slot = st.container()  # filled once the study is known
    st.subheader("Operating point")
    st.slider(
        "Specificity", 0.50, 0.99, step=0.01, key="op-specificity", format="%.2f", **KEEP,
        help="each head's threshold is the lowest calibrated probability with at least this specificity on "
        "the analysed split; views at or above it get CAD marks",
    )  # fmt: skip
    for point in points.values():
        st.caption(accessors.md_text(marks.point_caption(point)))

ids = shown["study_id"].tolist()
all_ids = table["study_id"].tolist()
if not ids:
    st.info("No study matches these filters: widen them in the sidebar.")
    st.stop()


# --- what the viewer and the buttons ask for (callbacks run before the page reruns) ---------------------------
def go(offset: int) -> None:
    state["study"] = reading.step(ids, state.get("study"), offset)


def on_row(key: str, studies: list[str]) -> None:
    rows = state[key].selection.rows if state.get(key) else []
    if rows:
        state["study"] = studies[rows[0]]


def show_latent(latent: int) -> None:
    state["latent"], state["overlay"] = int(latent), "latent"


def on_bar(key: str) -> None:
    latent = accessors.picked_latent(state.get(key), "bar")
    if latent is not None:
        show_latent(latent)


def on_fired(key: str, latents: list[int]) -> None:
    rows = state[key].selection.rows if state.get(key) else []
    if rows:
        show_latent(latents[rows[0]])


def forget_session(name: str) -> None:
    verdicts.delete_session(bundle, name)
    state["review-session"] = reading.ALL_STUDIES


def on_finding(key: str, spots: dict) -> None:
    choice = state.get(key)
    if choice in spots:
        position, box, name = spots[choice]
        state["spot"] = {"study": state.get("study"), "position": position, "box": box, "where": choice}
        state["view"] = name


# --- the study and the choices that a link carries; then what the viewer asked for since the last run ----------
if state.get("study") not in all_ids:
    state["study"] = ids[0]
names = reading.slot_names(bundle, state["study"])  # "" for a missing view
event = viewer.new_event(state.get("hanging"), "hanging-seen")
if event and event["event"] in ("next", "prev"):
    go(1 if event["event"] == "next" else -1)
    names = reading.slot_names(bundle, state["study"])
elif event and names[int(event.get("slot", 0))]:
    state["view"] = names[int(event["slot"])]
    if event["event"] == "point" and event.get("token") is not None:
        where = f"{state['view']}, token {event['token']}"
        state["spot"] = {"study": state["study"], "position": reading.position_of(bundle, state["study"], state[
            "view"]), "token": int(event["token"]), "where": where}  # fmt: skip
        state["panel"] = "What fires here"
study = state["study"]
views = accessors.hanging_views(bundle, study)
present = [name for name in names if name]
head_default = accessors.study_head(bundle, views, tuple(state.get("wl-findings", ())))
keep("head", head_default)
if state["head"] not in bundle.tasks:
    state["head"] = head_default
if not 0 <= int(state.get("latent", 0)) < bundle.d_sae:
    del state["latent"]
keep("overlay", "evidence" if has_evidence else "latent")  # an old bundle: the top contributor
keep("panel", "Findings")
bar = st.columns([0.5, 0.5, 3.0, 1.6, 1.6, 1.2], vertical_alignment="top")
bar[0].button("◀", on_click=go, args=(-1,), help="previous study (k or ↑)", disabled=study == ids[0])
bar[1].button("▶", on_click=go, args=(1,), help="next study (j or ↓)", disabled=study == ids[-1])
with bar[2]:
    st.selectbox(
        "Study", all_ids if study not in ids else ids, key="study", format_func=reading.study_label(table),
        label_visibility="collapsed", **KEEP,
    )  # fmt: skip
    st.caption(reading.study_caption(table, ids, study))
overlay_kinds = ["evidence", "latent", "none"] if has_evidence else ["latent", "none"]
if state["overlay"] not in overlay_kinds:
    state["overlay"] = overlay_kinds[0]
overlay = bar[3].selectbox(
    "Overlay", overlay_kinds, key="overlay", label_visibility="collapsed", **KEEP,
    format_func=reading.OVERLAY_LABELS.get,
    help="the heatmap on the views: the head's evidence (warm raises its logit, cool lowers it), a latent's "
    "activation, or none",
)  # fmt: skip
head = bar[4].selectbox(
    "Head", list(bundle.tasks), key="head", label_visibility="collapsed", **KEEP,
    help="whose marks' evidence the map, the drivers and the lines under the views show",
    on_change=lambda: state.update(view=None),  # a new head opens on its strongest view
)  # fmt: skip
if state.get("view") not in present:
    state["view"] = accessors.view_name(
        next(v for v in views if v.position == accessors.strongest_view(bundle, views, head))
    )
latent = None
with map_slot:
    view_name = st.selectbox("View", present, key="view", help="keys 1-4 select a view too", **KEEP)
    position = reading.position_of(bundle, study, view_name)
    if overlay == "latent":
        keep("latent", int(accessors.suggested_latents(bundle, position, head, None)[0]))
        latent = int(state["latent"])
        suggestions = accessors.suggested_latents(bundle, position, head, latent)
        st.selectbox(
            "Suggested latents", suggestions, index=suggestions.index(latent) if latent in suggestions else 0,
            format_func=label, key=f"latent-pick-{latent}",
            on_change=lambda k=f"latent-pick-{latent}": show_latent(state[k]),
            help="this view's top contributors to the head, then the head's top class-1 concept latents",
        )  # fmt: skip
        st.number_input("Latent", 0, bundle.d_sae - 1, key="latent", **KEEP)
        st.selectbox("Colour map", accessors.colour_maps(), key="colour-map", **KEEP)
positions = [v.position for v in views]
study_marks = marks.study_marks(bundle, positions, specificity)
st.query_params.from_dict(reading.link_params(study, view_name, head, overlay, latent, session_name))
with bar[5].popover("Snapshot", help="the case as PNG or PDF for the meeting"):
    snap = {
        "options": accessors.ViewOptions(colour_map=state.get("colour-map", "inferno")),
        "overlay": {"evidence": "evidence map"}.get(overlay, overlay), "head": head, "latent": latent,
        "selected": position, "specificity": specificity,
    }  # fmt: skip
    st.download_button(
        "PNG", data=lambda: accessors.snapshot.snapshot_png(bundle, root, study, **snap), on_click="ignore",
        file_name=accessors.snapshot.file_name(study, "png"), mime="image/png", width="stretch",
    )  # fmt: skip
    st.download_button(
        "PDF", data=lambda: accessors.snapshot.snapshot_pdf(bundle, root, study, **snap), on_click="ignore",
        file_name=accessors.snapshot.file_name(study, "pdf"), mime="application/pdf", width="stretch",
    )  # fmt: skip

# --- the hanging, and the panel beside it ----------------------------------------------------------------------
stage, side = st.columns([1.6, 1], gap="small")  # the images get most of the width
with stage:
    try:
        spec = viewer.study_spec(
            bundle, root, study, overlay=reading.overlay_choice(overlay, head, latent, state), marks=[
                m for found in study_marks.values() for m in found], selected=names.index(view_name),
            captions=reading.slot_captions(bundle, views, calibrated, points),
        )  # fmt: skip
        pixels = viewer.study_pixels(bundle, root, study)
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))  # may quote DICOM values
        st.stop()
    viewer.hanging_viewer(spec, [p.data if p is not None else None for p in pixels], key="hanging")
    following = reading.step(ids, study, 1)
    if following is not None and following != study:
        viewer.prefetch(bundle, root, following)  # j is what a reader presses next


@st.fragment
def verdict_panel(study: str, latent: int | None) -> None:
    """The reviewer's verdict on the case and on the latent on the map: a save reruns this panel alone."""
    if verdicts.reviewer() is None:
        st.info("Type your name in the sidebar (once per session) to record verdicts.")
    mine = verdicts.case_verdict(bundle, study)
    with st.form(f"verdict-{study}", border=False):
        evidence = st.radio(
            "Does the evidence fall on the finding?", reading.EVIDENCE_CHOICES, horizontal=True,
            index=reading.EVIDENCE_CHOICES.index(mine.evidence) if mine and mine.evidence else None,
        )  # fmt: skip
        error = st.radio(
            "Is the case a model error?", reading.MODEL_ERRORS, horizontal=True,
            index=reading.MODEL_ERRORS.index(mine.model_error) if mine else 0,
        )  # fmt: skip
        note = st.text_area("Note", value=mine.note if mine else "", max_chars=reading.MAX_NOTE, height=80)
        saved = st.form_submit_button("Save verdict", disabled=verdicts.reviewer() is None)
    if saved:
        try:
            verdicts.save_case_verdict(bundle, study, evidence, error, note)
        except accessors.MammoSaeError as failure:
            st.error(accessors.md_text(failure))
        else:
            st.success("Saved.")
    others = verdicts.case_verdict_table(bundle, study)
    if len(others):
        st.dataframe(others, hide_index=True, width="stretch")
    if latent is not None:
        line = verdicts.latent_verdict_line(bundle, latent)
        st.markdown(f"**{accessors.md_text(notes.label(latent))}** {accessors.md_text(line)}")
        judged = verdicts.latent_verdict(bundle, latent)
        coherent = st.segmented_control(
            "Do its top patches show one coherent concept?", reading.COHERENT_CHOICES,
            default=judged.coherent if judged else None, key=f"coherent-{latent}",
            disabled=verdicts.reviewer() is None,
        )  # fmt: skip
        if coherent and coherent != (judged.coherent if judged else None):
            verdicts.save_latent_verdict(bundle, latent, coherent)
            st.rerun(scope="fragment")


with side:
    panels = ["Worklist", "Findings", "What fires here", "Drivers", "Verdict"]
    panel = st.segmented_control("Panel", panels, key="panel", required=True, label_visibility="collapsed")
    mismatch = accessors.mismatch_notice(bundle)  # beside every probability the page shows
    if panel == "Worklist":
        if mismatch:
            st.caption(f":orange[⚠️ {mismatch}]")
        rows_key = f"worklist-{len(ids)}"
        st.dataframe(
            reading.worklist_display(shown), key=rows_key, hide_index=True, width="stretch", height=440,
            on_select=lambda key=rows_key, studies=ids: on_row(key, studies), selection_mode="single-row",
            column_config=reading.worklist_columns(bundle.tasks),
        )  # fmt: skip
        st.caption(
            f"{len(ids):,} of {len(all_ids):,} studies. Click a row to open it; j / k step through them."
        )
    elif panel == "Findings":
        if mismatch:
            st.warning(mismatch, icon="⚠️")
        st.markdown(marks.exam_line(bundle, positions, specificity))
        st.dataframe(
            reading.view_scores(bundle, views, calibrated, points), hide_index=True, width="stretch",
            column_config=reading.view_score_columns(bundle.tasks),
        )  # fmt: skip
        st.caption(
            reading.marks_caption(study_marks, {v.position: n for v, n in zip(views, names, strict=True)})
        )
        for view in views:
            if view.position is not None and has_evidence:
                line = accessors.evidence_line(bundle, view.position, head)
                if line:
                    st.markdown(f"**{accessors.view_name(view)}** {accessors.md_text(line)}")
        if not has_evidence:
            st.caption(accessors.md_text(accessors.EVIDENCE_MISSING))
    elif panel == "What fires here":
        findings = accessors.view_findings(bundle, views)
        spots = reading.finding_spots(findings, views)
        finding_key = f"finding-{study}"
        st.selectbox(
            "Explain a ground-truth finding", ["(a clicked point)", *spots], key=finding_key,
            on_change=on_finding, args=(finding_key, spots), disabled=not spots,
            help="the latents active on the tokens the finding's box overlaps",
        )  # fmt: skip
        spot = state.get("spot")
        if not spot or spot.get("study") != study:
            st.info("Click a point on any view (or pick a finding above) to see which latents fire there.")
        else:
            try:
                fires = accessors.fires_here(bundle, spot)
            except accessors.MammoSaeError as error:
                st.error(accessors.md_text(error))
            else:
                st.caption(
                    f"{accessors.md_text(spot['where'])}: {fires.attrs.get('n_in', 1)} token(s), ranked by mean "
                    "activation there; specificity = that mean over the rest of the image; contribution = the "
                    "latent's part of each head's logit from there. Click a row to overlay that latent."
                )
                fired_key, fired = f"fires-{spot['where']}", fires["latent"].tolist()
                st.dataframe(
                    fires.drop(columns=["label"]), key=fired_key, hide_index=True, width="stretch",
                    on_select=lambda key=fired_key, latents=fired: on_fired(key, latents),
                    selection_mode="single-row", column_config=accessors.fires_columns(bundle, fires),
                )  # fmt: skip
    elif panel == "Drivers":
        bars, const = accessors.contributions_spec(bundle, position, head, top=15)
        st.vega_lite_chart(
            spec=bars, width="stretch", key=f"contrib-{study}-{view_name}-{head}", selection_mode="bar",
            on_select=lambda key=f"contrib-{study}-{view_name}-{head}": on_bar(key),
        )  # fmt: skip
        st.caption(
            f"Each bar: a latent's mean activation on {view_name} times its direct effect on the "
            f"{accessors.md_text(head)} logit; with the constant {const:+.3f} they add up to the logit with "
            "the SAE in place. Click a bar to overlay that latent."
        )
    else:
        verdict_panel(study, latent)

if overlay == "latent" and latent is not None:
    badges = accessors.latent_badges(bundle, latent)
    st.caption(f"Map: {accessors.md_text(notes.label(latent))}{' ' + badges if badges else ''}")

# --- build a review session (a named, ordered worklist for the meeting) --------------------------------------------
with st.sidebar.expander("Build a review session"):
    session_key = st.text_input("Session name", key="session-name", max_chars=60, **KEEP)
    study_note = st.text_input("Note for this study", key=f"session-note-{study}", max_chars=200)
    build = st.columns(2)
    try:
        if build[0].button(
            "Save worklist", help="this worklist's studies, in its order", disabled=not session_key
        ):
            verdicts.save_session(bundle, session_key, ids)
            st.success(f"Saved {len(ids)} studies as {accessors.md_text(session_key)}.")
        if build[1].button("Add this study", help="at the end of the session", disabled=not session_key):
            reading.add_to_session(bundle, session_key, study, study_note)
            st.success(f"Added to {accessors.md_text(session_key)}.")
    except accessors.MammoSaeError as failure:
        st.error(accessors.md_text(failure))
    if session_name != reading.ALL_STUDIES:
        with st.popover(f"Delete {session_name}", width="stretch"):
            st.button(
                f"Yes, delete the session {session_name}", type="primary", on_click=forget_session,
                args=(session_name,), help="the studies and verdicts stay; only this list goes",
            )  # fmt: skip
    st.caption("Open a session by name above, or by link: add ?session=NAME to this page's address.")
