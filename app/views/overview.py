"""Overview: what the workbench does and what is loaded. Research use only."""

from __future__ import annotations

import streamlit as st

st.title("mammo-sae")
st.markdown(
    """
An interpretability workbench for breast-imaging AI: a **sparse autoencoder** trained on the patch
features of a mammography model (Mammo-CLIP's EfficientNet-B5) splits them into *concept neurons*
that can be tied to findings such as **masses** and **suspicious calcifications**, or exposed as
**confounders**.

**What works today:** the data layer. Open a VinDr-Mammo root or a synthetic phantom dataset on the
*Dataset* page to see its counts and browse its images with the viewer's window presets.

**What comes next:** the concept-neuron tables, heatmaps over each view and live interventions on the
classifier, driven by an analysis bundle.
"""
)
st.subheader("Make a phantom dataset to browse")
st.code("python -m mammo_sae.phantom --out data/phantoms --studies 20 --seed 0", language="bash")
st.caption(
    "Phantoms are synthetic images with planted lesions and known ground truth; they are not patient "
    "data and have no diagnostic validity."
)
