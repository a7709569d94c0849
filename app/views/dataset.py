"""Dataset browser: counts of a VinDr-layout root and the four views of a study. Research use only."""

from __future__ import annotations

from pathlib import Path

import accessors
import streamlit as st

HANGING = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))

st.title("Dataset")
root = st.sidebar.text_input("Dataset root (VinDr-Mammo layout)", accessors.default_data_root())
if not Path(root).is_dir():
    st.info(
        f"No dataset at `{root}`. Point the sidebar at a VinDr-Mammo release folder, or make synthetic "
        "phantoms:"
    )
    st.code(f"python -m mammo_sae.phantom --out {root} --studies 20 --seed 0", language="bash")
    st.stop()

try:
    index = accessors.dataset_index(root)
except accessors.MammoSaeError as error:
    st.error(accessors.md_text(error))
    st.stop()

if accessors.is_phantom_dataset(root):
    st.caption("**Synthetic phantoms**: generated images with planted lesions, not patient data.")
else:
    st.caption("VinDr-Mammo layout")

summary = index.summary()
images = index.images
cols = st.columns(4)
cols[0].metric("Images", f"{len(images):,}")
cols[1].metric("Studies", f"{images['study_id'].nunique():,}")
cols[2].metric("Mass-positive images", f"{int(images['mass'].sum()):,}" if "mass" in images else "0")
cols[3].metric(
    "Calcification-positive images",
    f"{int(images['calcification'].sum()):,}" if "calcification" in images else "0",
)
if index.missing:
    st.warning(f"{len(index.missing):,} listed images are missing on disk; they are skipped in the viewer.")
with st.expander("Summary (JSON)"):
    st.json(summary, expanded=False)

st.subheader("Browse a study")
left, mid, right = st.columns([1, 1, 2])
split = left.selectbox("Split", ["all", *index.splits])
finding = mid.selectbox("Has finding", ["any", "mass", "calcification", "none"])
studies = images if split == "all" else images[images["split"] == split]
if finding in ("mass", "calcification") and finding in studies:
    studies = studies[studies.groupby("study_id")[finding].transform("max") == 1]
elif finding == "none":
    labels = [c for c in ("mass", "calcification") if c in studies]
    studies = studies[studies.groupby("study_id")[labels].transform("max").sum(axis=1) == 0]
study_ids = sorted(studies["study_id"].unique())
if not study_ids:
    st.info("No study matches these filters.")
    st.stop()
study = right.selectbox(f"Study ({len(study_ids):,} match)", study_ids)

opts = st.columns(3)
show_boxes = opts[0].toggle("Ground-truth boxes", value=True)
invert = opts[1].toggle("Invert", value=False)
max_height = opts[2].select_slider("View height (px)", [320, 480, 640, 800], value=480)

case = images[images["study_id"] == study].set_index(["laterality", "view"])
grid = st.columns(2)
for slot, (laterality, view) in enumerate(HANGING):
    with grid[slot % 2]:
        st.markdown(f"**{laterality} {view}**")
        if (laterality, view) not in case.index:
            st.caption("view not in this study")
            continue
        row = case.loc[(laterality, view)]
        if not bool(row.get("exists", True)):
            st.caption("image file missing on disk")
            continue
        boxes = index.boxes(row["image_id"]) if show_boxes else index.boxes(row["image_id"]).iloc[:0]
        coords = tuple(tuple(b) for b in boxes[["xmin", "ymin", "xmax", "ymax"]].to_numpy().tolist())
        try:
            image = accessors.mammogram(row["path"])
            presets = ["full range", *[w.name for w in image.window_presets]]
            preset = st.selectbox(
                "Window", presets, key=f"preset-{laterality}-{view}", index=min(1, len(presets) - 1)
            )
            pixels = accessors.rendered_view(
                row["path"],
                None if preset == "full range" else preset,
                invert,
                coords,
                tuple(boxes["kind"]),
                max_height,
            )
        except accessors.MammoSaeError as error:
            st.error(accessors.md_text(error))
            continue
        st.image(pixels, width="stretch")
        with st.expander("Metadata (allow-listed)"):
            st.table(accessors.md_table(image.metadata.as_dict()))
