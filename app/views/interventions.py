"""Interventions: keep or suppress latents and watch the current view's evidence map change (before and after
side by side, one colour scale), each head's probability move (red a rise, blue a fall) and the split's
AUROC; the latents the shortcut audit flagged can be suppressed on top; the keep / suppress curves vs k.
A study opens on its finding: the head with a ground-truth finding and the view that shows it."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Interventions")
bundle = accessors.require_bundle()
pages = accessors.pages
state = st.session_state

studies = accessors.study_ids(bundle)
top = st.columns([2.2, 1.2, 2.2], vertical_alignment="bottom")
current = state.get("study")
study = top[0].selectbox("Case", studies, index=studies.index(current) if current in studies else 0)
state["study"] = study
views = accessors.present_views(bundle, study)
names = [accessors.view_name(v) for v in views]


def open_finding() -> None:
    """Show the view with the chosen head's finding (or its strongest view)."""
    state["iv-view"] = names[pages.finding_view(bundle, views, state["iv-head"])]


if state.get("iv-for") != study or state.get("iv-view") not in names:  # a new case opens on its finding
    state["iv-for"], state["iv-head"] = study, pages.finding_head(bundle, views)
    open_finding()
head = top[1].selectbox(
    "Evidence for", list(bundle.tasks), key="iv-head", on_change=open_finding,
    help="the head whose evidence the two maps show; choosing one opens the view with its finding",
)  # fmt: skip
view = views[names.index(top[2].radio("View", names, key="iv-view", horizontal=True))]
root = accessors.bundle_data_root(bundle)


@st.fragment
def intervention_panel() -> None:
    """Controls and their effect; reruns alone when a control changes."""
    cols = st.columns([1.1, 1.2, 1.6, 1.3], vertical_alignment="bottom")
    mode = cols[0].radio("Intervention", ["suppress", "keep"], horizontal=True)
    concept = cols[1].selectbox("Top-k of concept", ["(none)", *bundle.concepts])
    k = cols[2].select_slider("k per class", pages.intervention_ks(bundle), value=10,
                              help="latents taken from each of the concept's two class rankings (their union)")  # fmt: skip
    error_term = cols[3].toggle("Add the reconstruction error back", value=False)
    flagged = state.get(accessors.SUPPRESS_KEY) or []
    suppress_flagged = False
    if flagged:
        left, right = st.columns([4, 1])
        suppress_flagged = left.toggle(
            f"Suppress the {len(flagged):,} flagged latents (off-breast and marker, from the shortcut audit)",
            value=True, help="their scale is set to 0 whatever the mode; the table below overrides single latents",
        )  # fmt: skip
        if right.button("Forget them"):
            state[accessors.SUPPRESS_KEY] = []
            st.rerun()
    with st.expander("More latents and per-latent scales"):
        extra = st.multiselect(
            "Also these latents", list(range(bundle.d_sae)), format_func=accessors.latent_labeller(bundle),
            max_selections=50, key="extra-latents",
        )  # fmt: skip
        scales_table = st.data_editor(
            accessors.empty_scales(), num_rows="dynamic", key="scales", width="stretch",
            column_config={"latent": st.column_config.NumberColumn(min_value=0, max_value=bundle.d_sae - 1, step=1),
                           "scale": st.column_config.NumberColumn(min_value=-5.0, max_value=5.0, step=0.1)},
        )  # fmt: skip
    try:
        scale = accessors.intervention_scale(
            bundle, concept=None if concept == "(none)" else concept, k=k, mode=mode, latents=extra,
            scales={**({int(t): 0.0 for t in flagged} if suppress_flagged else {}),
                    **accessors.scales_from_editor(scales_table)},
        )  # fmt: skip
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
        return
    result = accessors.case_intervention(bundle, view.position, scale, error_term=error_term)
    body = st.columns([1, 1, 0.9])
    with st.container():
        st.markdown("**Whole split with this intervention** (per image)")
        unlabelled = accessors.unlabelled_notice(bundle, "AUROC or AUPRC over the split")
        if unlabelled:
            st.info(unlabelled)
        else:
            st.dataframe(
                accessors.split_metrics(bundle, scale, error_term=error_term),
                hide_index=True,
                width="stretch",
            )
    with body[2]:
        mismatch = accessors.mismatch_notice(bundle)
        if mismatch:
            st.warning(mismatch, icon="⚠️")
        st.caption(f"{accessors.changed_latents(scale):,} of {bundle.d_sae:,} latents changed.")
        for row in result.itertuples():
            st.metric(
                f"{row.head} probability", f"{row.after:.3f}", f"{row.change:+.3f}",
                delta_color=pages.change_colour(row.change),
                help=f"with the SAE in place {row.before:.3f}; original features {row.original:.3f}",
            )  # fmt: skip
        st.markdown(
            "**Colours.** Maps: :red[warm] raises the "
            f"{accessors.md_text(head)} logit, :blue[cool] lowers it. Probabilities: :red[▲ red] a rise, "
            ":blue[▼ blue] a fall."
        )
    if root is None:
        body[0].caption(accessors.md_text(f"No maps: {bundle.missing_dataset_message()}."))
        return
    try:
        before, after, facts = pages.evidence_pair(
            bundle, root, view.position, accessors.ViewOptions(max_height=560, opacity=0.7, threshold=0.1),
            head, scale, error_term=error_term,
        )  # fmt: skip
    except accessors.MammoSaeError as error:
        body[0].info(accessors.md_text(error))
        return
    kind = "SAE + error (the model's own features)" if error_term else "SAE in place"
    body[0].image(
        before, width="stretch", caption=f"Before ({kind}): {head} logit {facts['logit_before']:+.3f}"
    )
    body[1].image(after, width="stretch", caption=f"After: {head} logit {facts['logit_after']:+.3f}")
    body[2].caption(
        f"{accessors.view_name(view)}. Each token's share of the {accessors.md_text(head)} logit, one colour scale "
        f"for both maps (±{facts['vmax']:.3g} per token at full colour); ground-truth boxes outlined. The maps "
        f"add up to the logits (before {facts['map_before']:+.3f}, after {facts['map_after']:+.3f}: the stored codes "
        "keep each token's strongest latents)."
    )


intervention_panel()

st.subheader("Keep / suppress the top-k latents per class, over the split")
unlabelled = accessors.unlabelled_notice(bundle, "keep / suppress curve")
if unlabelled:
    st.info(unlabelled)
    st.stop()
choice = st.columns(3)
unit = choice[0].radio(
    "Unit", ["image", "row"], horizontal=True, help="row: one per finding-CSV row, as the paper counted"
)
metric = choice[1].radio("Metric", ["auroc", "auprc"], horizontal=True)
with_error = choice[2].toggle("With the error term", value=False, key="curve-error")
reference = None
if not bundle.synthetic and metric == "auroc" and st.toggle("Overlay the paper's VinDr curves", value=True):
    reference = pages.paper_curves(bundle)
try:
    chart = accessors.curves_chart(pages.curve_rows(bundle, unit, with_error), metric, reference)
    st.altair_chart(chart)
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))
st.caption(
    f"k up to the SAE's {bundle.d_sae:,} latents (a larger k takes every latent, the point marked all)."
    + (" The paper's VinDr-Mammo curves are not overlaid: they describe real mammograms, this bundle phantoms."
       if bundle.synthetic else "")
)  # fmt: skip
