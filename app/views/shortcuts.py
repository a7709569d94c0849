"""Shortcut audit: how much of each head rests on latents flagged as artefacts (off the breast, on burned-in
markers): the flagged latents ranked by their share of the split's logit difference, each head's AUROC with
every off-breast and marker latent suppressed, and, on phantom bundles, what adding the marker does to the
logits. One click suppresses the flagged latents on the Interventions page."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Shortcut audit")
bundle = accessors.require_bundle()
summary = accessors.shortcut_summary(bundle)
if summary is None and accessors.shortcut_table(bundle, bundle.tasks[0]) is None:
    st.info(
        "This bundle predates the shortcut audit (no shortcuts.parquet). Rebuild it with "
        "python -m mammo_sae.analyze to see which latents are flagged and what suppressing them costs."
    )
    st.stop()

suppressed = accessors.suppressed_latents(bundle)
st.caption(
    "A latent is flagged off-breast when most of its activation lies outside the breast (padding, borders), "
    "marker when most lies on burned-in markers, and <category> lesion when its peaks land in that category's "
    "boxes. Shares are of the analysed split's class-1 minus class-0 difference of the mean logit with the SAE "
    "in place; over every latent they add up to 100%."
)
if summary is not None and len(summary):
    cols = st.columns(len(summary))
    for column, row in zip(cols, summary.to_dict("records"), strict=True):
        share = row.get("suppressed_share")
        column.metric(
            f"{row['task']} AUROC, flagged suppressed", f"{row['auroc_suppressed']:.3f}",
            f"{0.0 - row['auroc_drop']:+.3f} from {row['auroc']:.3f}", delta_color="off",
            help=f"as analysed {row['auroc']:.3f}; {int(row.get('n_suppressed', len(suppressed))):,} off-breast and "
            "marker latents suppressed"
            + (f", carrying {share:.0%} of the logit difference" if share is not None else ""),
        )  # fmt: skip
    st.dataframe(
        accessors.summary_table(summary),
        hide_index=True,
        width="stretch",
        column_config=accessors.SUMMARY_COLUMNS,
    )
if st.button(
    f"Suppress the {len(suppressed):,} flagged latents on the Interventions page",
    type="primary", disabled=not suppressed,
    help="sets their scale to 0 there (off-breast and marker latents), so every probability and AUROC on that "
    "page is shown without them",
):  # fmt: skip
    st.session_state[accessors.SUPPRESS_KEY] = suppressed
    st.switch_page("views/interventions.py")

unlabelled = accessors.unlabelled_notice(
    bundle, "share of the class-1 minus class-0 logit difference per flagged latent"
)
if unlabelled:  # the flags are the images' own (breast, markers); the shares need classes
    st.info(unlabelled)
for head, tab in zip(bundle.tasks, st.tabs(list(bundle.tasks)) if not unlabelled else (), strict=False):
    with tab:
        table = accessors.shortcut_table(bundle, head)
        if table is None or table.empty:
            st.info(f"No flagged latent acts on the {head} head.")
            continue
        st.markdown(
            f"**{len(table):,} flagged latents** of the {accessors.md_text(head)} head, largest share first (no cap)"
        )
        st.dataframe(
            table, hide_index=True, width="stretch",
            column_config={
                **accessors.flag_columns(bundle, table),
                "share": st.column_config.NumberColumn("share of logit difference", format="percent"),
            },
        )  # fmt: skip

counterfactual = accessors.counterfactual_summary(bundle)
if counterfactual is not None:
    st.subheader("The planted marker, measured causally")
    st.caption(
        "Each analysed phantom rendered with and without its burned-in marker (pixels identical outside the "
        "marker's box): the mean logit shift the marker causes, and the AUROC when positives lack the marker "
        "and negatives carry it (adversarial), against the reverse pairing (favourable)."
    )
    st.dataframe(counterfactual, hide_index=True, width="stretch")
    head = st.selectbox("Head", list(bundle.tasks), key="cf-head")
    shifts = accessors.counterfactual_shifts(bundle, head)
    if shifts is not None:
        st.altair_chart(accessors.shift_chart(shifts, head), width="stretch", height=220)
    try:
        carriers = accessors.counterfactual_latents(bundle, head)
    except accessors.MammoSaeError as error:
        st.error(accessors.md_text(error))
        carriers = None
    if carriers is not None and len(carriers):
        st.markdown(
            f"**The latents that carry the shift** of the {accessors.md_text(head)} logit (both signs)"
        )
        st.altair_chart(accessors.carriers_chart(carriers, head), width="stretch")
        st.dataframe(
            carriers,
            hide_index=True,
            width="stretch",
            column_config=accessors.carrier_columns(bundle, carriers),
        )
