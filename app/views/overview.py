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
cols[0].metric("Dataset", manifest["dataset_kind"])
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

st.subheader("Classifier AUROC, with and without the SAE in place")
st.dataframe(accessors.baseline_table(bundle), width="stretch")
st.caption(
    "Per image on the analysed split. The report in the bundle (report.md) also gives the per-CSV-row numbers."
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
