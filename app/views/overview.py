"""Overview: what is loaded (dataset, backbone, SAE, quality), the analysis's warnings and how to read
the other pages."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("mammo-sae")
bundle = accessors.require_bundle()
manifest = bundle.manifest
if bundle.synthetic:
    st.info(
        "**Synthetic phantoms.** This bundle was built on generated images with planted lesions, not on patients. "
        "It shows how the workbench works; its numbers say nothing about real mammograms.",
    )
for warning in accessors.bundle_warnings(bundle):
    st.warning(accessors.md_text(warning), icon="⚠️")

inputs = manifest["inputs"]
sae = manifest["sae"]
quality = manifest["summary"]["sae"]
cols = st.columns(4)
cols[0].metric(
    "Dataset",
    {"imported DICOM folder": "imported"}.get(manifest["dataset_kind"], manifest["dataset_kind"]),
    help=manifest["dataset_kind"],
)
cols[1].metric(
    "Analysed images", f"{manifest['summary']['images']:,}", help=f"split: {manifest['splits']['analysis']}"
)
cols[2].metric(
    "Backbone",
    inputs["backbone"]["architecture"].removeprefix("timm:"),
    help=f"layer {inputs['backbone']['layer']}",
)
cols[3].metric("SAE", f"{sae['architecture']} {sae['d_in']}→{sae['d_sae']:,}")
cols = st.columns(4)
cols[0].metric("L0 (active latents per token)", f"{quality['l0']:.1f}")
cols[1].metric(
    "Fraction of variance unexplained", "undefined" if quality["fvu"] is None else f"{quality['fvu']:.3f}"
)
cols[2].metric("Dead latents", f"{100 * quality['dead_fraction']:.1f}%")
cols[3].metric("Tokens analysed", f"{quality['tokens']:,}")

unlabelled = accessors.unlabelled_notice(bundle, "AUROC table, calibration or operating point")
if unlabelled:
    st.subheader("An imported folder, without labels")
    st.info(unlabelled)
    sources = accessors.orientation_summary(bundle)
    if sources:
        st.caption(f"Laterality and view: {accessors.md_text(sources)}.")


def labelled_sections() -> None:
    """The AUROC table, calibration and operating points: they need the analysed images' labels."""
    st.subheader("Classifier AUROC, with and without the SAE in place")
    st.dataframe(accessors.baseline_table(bundle), width="stretch")
    st.caption(
        "Per image on the analysed split. The report in the bundle (report.md) also gives the per-CSV-row numbers."
    )

    st.subheader("Calibration and operating points")
    calibrated = accessors.marks.calibrated_images(bundle)
    st.caption(
        f"Calibrated on the analysed split, {calibrated:,} images: each head's logit is Platt-scaled "
        "(sigmoid(a · logit + b)), and Case review's marks appear on views whose calibrated probability reaches "
        "the head's operating point. Calibration and operating point are chosen on the same split the app shows, "
        "so they describe it; they are not a held-out estimate."
    )
    for note in accessors.marks.calibration_notes(bundle):
        st.warning(accessors.md_text(note), icon="⚠️")
    specificity = accessors.marks.DEFAULT_SPECIFICITY
    chart = accessors.marks.reliability_chart(bundle, specificity=specificity)
    if chart is None:
        st.info("No labelled image on the analysed split: there is nothing to calibrate or to draw.")
    else:
        st.altair_chart(chart, width="content")
        st.caption(
            "Reliability: in each bin of predicted probability (10 equal-width bins), the share of images that "
            "really have the finding; on the dashed diagonal a probability means what it says. Point size = "
            "images in the bin; ECE = the images-weighted mean gap to the diagonal; the red dotted line is the "
            "head's operating point (views at or right of it are marked)."
        )
    st.dataframe(
        accessors.marks.operating_point_table(bundle, specificity),
        width="stretch",
        hide_index=True,
        column_config={
            "threshold": st.column_config.NumberColumn(
                format="%.3f", help="calibrated probability that marks a view"
            ),
            "target specificity": st.column_config.NumberColumn(format="percent"),
            "specificity": st.column_config.NumberColumn(
                format="percent", help="negatives below the threshold"
            ),
            "sensitivity": st.column_config.NumberColumn(format="percent", help="positives at or above it"),
            "positives": st.column_config.NumberColumn(help="images with the finding on the analysed split"),
            "negatives": st.column_config.NumberColumn(help="images without it"),
        },
    )
    st.caption(
        f"Each head's default operating point: the lowest threshold with at least {specificity:.0%} specificity "
        "on the analysed images (Case review's sidebar can set another specificity or a threshold)."
    )


if not unlabelled:
    labelled_sections()

# --- review agreement ---
st.subheader("Review agreement")
try:
    review_metrics = accessors.verdicts.agreement_metrics(bundle)
except accessors.BundleError as error:  # a damaged verdicts file: say which and what to do
    st.error(accessors.md_text(error))
else:
    for col, (label, value, explanation) in zip(st.columns(len(review_metrics)), review_metrics, strict=True):
        col.metric(label, value, help=explanation)
    st.download_button(
        "Download every verdict (CSV)",
        accessors.verdicts.verdicts_csv(bundle),
        file_name=accessors.verdicts.csv_file_name(bundle),
        mime="text/csv",
        on_click="ignore",
    )
    st.caption(
        "Verdicts recorded on Case review and Concept neurons by everyone using this bundle, kept in your data "
        "folder beside the latent notes. The CSV holds both kinds (a kind column: case or latent)."
    )

st.subheader("Pages")
st.markdown(
    """
- **Case review**: a study's four views with each head's probability, ground-truth boxes, and any latent's
  heatmap; the latents that drive the case's logits.
- **Concept neurons**: latents ranked per finding and class, their top patches and statistics; name them.
- **Interventions**: keep or suppress latents and watch a case's probabilities and the dataset AUROC move.
- **Upload**: run the bundle's models on a DICOM or PNG of your own (kept in memory only).
- **Training report**: the SAE's training curves.
- **Dataset**: browse the studies of a VinDr-layout folder (or phantoms) with their boxes and metadata.
"""
)
with st.expander("Bundle manifest"):
    st.json(
        {
            k: manifest.get(k)
            for k in ("command", "created", "package_version", "splits", "frame_size", "grid", "warnings")
        }
    )
