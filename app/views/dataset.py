"""Dataset browser: counts of a VinDr-layout root and the four views of a study. Opens on the picked bundle's
images (the demo's phantoms, generated on first use) unless MAMMO_SAE_DATA names a root. Research use only."""

from __future__ import annotations

import accessors
import streamlit as st

st.title("Dataset")
root = st.sidebar.text_input("Dataset root (VinDr-Mammo layout)", accessors.pages.dataset_root())
try:
    counts = accessors.dataset_counts(root)
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))
    st.stop()
if counts is None:
    st.info(
        accessors.md_text(
            f"No dataset at {root}. Point the sidebar at a VinDr-Mammo release folder, or make synthetic phantoms:"
        )
    )
    st.code(f"python -m mammo_sae.phantom --out {root} --studies 20 --seed 0", language="bash")
    st.stop()

st.caption(f"Layout: VinDr-Mammo · kind: {accessors.dataset_kind(root)}")
cols = st.columns(4)
cols[0].metric("Images", f"{counts['images']:,}")
cols[1].metric("Studies", f"{counts['studies']:,}")
for column, finding in zip(cols[2:], ("mass", "calcification"), strict=True):
    value = counts[f"{finding} images"]
    column.metric(
        f"{finding.capitalize()}-positive images", "no labels" if value is None else f"{value:,}",
        help="an imported DICOM folder has no findings, BI-RADS or density" if value is None else None,
    )  # fmt: skip
if counts["missing"]:
    st.warning(f"{counts['missing']:,} listed images are missing on disk; they are skipped in the viewer.")
with st.expander("Summary (JSON)"):
    st.json(accessors.dataset_summary(root), expanded=False)

st.subheader("Browse a study")
left, mid, right = st.columns([1, 1, 2])
split = left.selectbox("Split", accessors.browse_splits(root))
finding = mid.selectbox("Has finding", accessors.finding_filters())
study_ids = accessors.browse_studies(root, split, finding)
if not study_ids:
    st.info("No study matches these filters.")
    st.stop()
study = right.selectbox(f"Study ({len(study_ids):,} match)", study_ids)

opts = st.columns(3)
show_boxes = opts[0].toggle("Ground-truth boxes", value=True)
invert = opts[1].toggle("Invert", value=False)
max_height = opts[2].select_slider("View height (px)", [320, 480, 640, 800], value=480)

grid = st.columns(2)
for slot, view in enumerate(accessors.dataset_views(root, study)):
    with grid[slot % 2]:
        st.markdown(f"**{view.laterality} {view.view}**")
        if view.image_id is None:
            st.caption("view not in this study")
            continue
        if not view.exists:
            st.caption("image file missing on disk")
            continue
        coords, kinds = accessors.view_box_coords(root, view.image_id, show_boxes)
        try:
            image = accessors.mammogram(view.path)
            presets = accessors.window_choices(image)
            preset = st.selectbox(
                "Window", presets, key=f"preset-{view.laterality}-{view.view}", index=min(1, len(presets) - 1)
            )
            pixels = accessors.rendered_view(view.path, preset, invert, coords, kinds, max_height)
        except accessors.MammoSaeError as error:
            st.error(accessors.md_text(error))
            continue
        st.image(pixels, width="stretch")
        with st.expander("Metadata (allow-listed)"):
            st.table(accessors.metadata_table(image))
