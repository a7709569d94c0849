"""Interventions: keep or suppress latents and watch the current case's probabilities (a fragment, no
full redraw) and the whole split's AUROC move; the latents the shortcut audit flagged can be suppressed
on top (its button sets them here); the precomputed keep/suppress curves vs k."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Interventions")
bundle = accessors.require_bundle()

studies = accessors.study_ids(bundle)
current = st.session_state.get("study")
study = st.selectbox("Case", studies, index=studies.index(current) if current in studies else 0)
st.session_state["study"] = study
views = accessors.present_views(bundle, study)
names = [accessors.view_name(v) for v in views]
view = views[names.index(st.radio("View", names, horizontal=True))]


@st.fragment
def intervention_panel() -> None:
    """Controls and their effect; reruns alone when a control changes."""
    cols = st.columns([1, 1, 1, 1])
    mode = cols[0].radio("Intervention", ["suppress", "keep"], horizontal=True)
    concept = cols[1].selectbox("Top-k of concept", ["(none)", *bundle.concepts])
    k = cols[2].select_slider("k per class", accessors.intervention_ks(), value=10)
    error_term = cols[3].toggle("Add the reconstruction error back", value=False)
    extra = st.multiselect(
        "Also these latents",
        list(range(bundle.d_sae)),
        format_func=accessors.latent_labeller(bundle),
        max_selections=50,
        key="extra-latents",
    )
    flagged = st.session_state.get(accessors.SUPPRESS_KEY) or []
    suppress_flagged = False
    if flagged:
        left, right = st.columns([4, 1])
        suppress_flagged = left.toggle(
            f"Suppress the {len(flagged):,} flagged latents (off-breast and marker, from the shortcut audit)",
            value=True, help="their scale is set to 0 whatever the mode; the table below overrides single latents",
        )  # fmt: skip
        if right.button("Forget them"):
            st.session_state[accessors.SUPPRESS_KEY] = []
            st.rerun()
    scales_table = st.data_editor(
        accessors.empty_scales(), num_rows="dynamic", key="scales", width="stretch",
        column_config={"latent": st.column_config.NumberColumn(min_value=0, max_value=bundle.d_sae - 1, step=1),
                       "scale": st.column_config.NumberColumn(min_value=-5.0, max_value=5.0, step=0.1)},
    )  # fmt: skip
    try:
        scale = accessors.intervention_scale(
            bundle,
            concept=None if concept == "(none)" else concept,
            k=k,
            mode=mode,
            latents=extra,
            scales={
                **({int(t): 0.0 for t in flagged} if suppress_flagged else {}),
                **accessors.scales_from_editor(scales_table),
            },
        )
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
        return
    st.caption(f"{accessors.changed_latents(scale):,} of {bundle.d_sae:,} latents changed.")
    result = accessors.case_intervention(bundle, view.position, scale, error_term=error_term)
    metric_cols = st.columns(len(result))
    for column, row in zip(metric_cols, result.itertuples(), strict=True):
        column.metric(
            f"{row.head} probability", f"{row.after:.3f}", f"{row.change:+.3f}",
            help=f"with the SAE in place {row.before:.3f}; original features {row.original:.3f}",
        )  # fmt: skip
    st.markdown("**Whole split with this intervention** (per image)")
    st.dataframe(
        accessors.split_metrics(bundle, scale, error_term=error_term), hide_index=True, width="stretch"
    )


intervention_panel()

st.subheader("Keep / suppress the top-k latents per class, over the split")
choice = st.columns(3)
unit = choice[0].radio(
    "Unit", ["image", "row"], horizontal=True, help="row: one per finding-CSV row, as the paper counted"
)
metric = choice[1].radio("Metric", ["auroc", "auprc"], horizontal=True)
with_error = choice[2].toggle("With the error term", value=False, key="curve-error")
reference = None
if not bundle.synthetic and metric == "auroc" and st.toggle("Overlay the paper's VinDr curves", value=True):
    reference = accessors.paper_curves()
try:
    chart = accessors.curves_chart(accessors.curve_rows(bundle, unit, with_error), metric, reference)
    st.altair_chart(chart)
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))
if bundle.synthetic:
    st.caption(
        "The paper's VinDr-Mammo curves are not overlaid: they describe real mammograms, this bundle phantoms."
    )
