"""A one-page app that shows the hanging viewer on synthetic DICOMs (no bundle): the browser tests drive it.

Three studies of three views each (L MLO absent). Every view is written with its breast against the
LEFT edge of the file, so the R views must be mirrored to hang with their chest wall on the centre line.
The R CC view carries two window presets, a ground-truth box, a CAD mark and a heatmap.
Run: streamlit run tests/apps/viewer_app.py (the browser tests start it on a free port).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "app"))

import accessors  # noqa: E402

from mammo_sae.bundle.cases import HANGING_ORDER  # noqa: E402
from mammo_sae.bundle.hanging import Overlay, assemble_spec, empty_slot, slot_spec, view_pixels  # noqa: E402
from mammo_sae.bundle.marks import Mark  # noqa: E402
from mammo_sae.data.dicom import DicomEncoding, WindowPreset, read_mammogram, write_mammogram  # noqa: E402
from mammo_sae.data.frames import AxisMap, FrameTransform  # noqa: E402

ROWS, COLS = 360, 280
GRID = (10, 7)
STUDIES = ("study-a", "study-b", "study-c")


def breast(seed: int) -> np.ndarray:
    """uint16 stored values: a half-disc of tissue against the left edge, background 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    r = np.hypot(xx / (COLS * 0.85), (yy - ROWS / 2) / (ROWS * 0.48))
    tissue = np.clip(1.0 - r, 0, 1) ** 0.5
    texture = 0.15 * np.sin(xx / 7.0 + seed) * np.cos(yy / 11.0)
    values = np.where(r < 1, 0.35 + 0.5 * tissue + texture + 0.02 * rng.standard_normal((ROWS, COLS)), 0)
    return np.clip(values * 4000, 0, 4095).astype(np.uint16)


@st.cache_resource
def images() -> dict[tuple[str, str, str], object]:
    folder = Path(tempfile.mkdtemp(prefix="viewer-app-"))
    encoding = DicomEncoding(
        bits_stored=12, windows=(WindowPreset(2200, 2400, "SOFT"), WindowPreset(2600, 900, "HARD"))
    )
    out = {}
    for s, study in enumerate(STUDIES):
        for v, (laterality, view) in enumerate(HANGING_ORDER[:3]):
            path = folder / f"{study}-{laterality}{view}.dcm"
            write_mammogram(path, breast(10 * s + v), laterality=laterality, view=view, encoding=encoding)
            out[study, laterality, view] = read_mammogram(path)
    return out


def transform() -> FrameTransform:
    """The whole image as the model frame, 2 x smaller (so the grid box is the image)."""
    return FrameTransform(
        (ROWS, COLS), AxisMap(0, np.arange(COLS), COLS // 2), AxisMap(0, np.arange(ROWS), ROWS // 2)
    )


@st.cache_resource
def study(name: str, nonce: int) -> tuple[dict, list[bytes | None]]:
    heat = np.zeros(GRID, np.float32)
    heat[3:5, 1:3] = [[0.6, 1.0], [0.8, 0.5]]  # near the chest wall, upper middle
    overlay = Overlay("latent", latent=7, opacity=0.6, threshold=0.2)
    slots, pixels = [], []
    for laterality, view in HANGING_ORDER:
        image = images().get((name, laterality, view))
        if image is None:
            slots.append(empty_slot(laterality, view))
            pixels.append(None)
            continue
        packed = view_pixels(image, 2048)
        first = (laterality, view) == ("R", "CC")
        slots.append(
            slot_spec(
                laterality, view, image, packed, transform=transform(), grid=GRID,
                token_map=heat if first else None, overlay=overlay, vmax=1.0,
                boxes=[("mass", (40, 120, 90, 170))] if first else [],
                marks=[Mark(0, "mass", (45, 125, 85, 165), 0.87)] if first else [],
                caption=f"{laterality} {view}: mass 0.87" if first else f"{laterality} {view}: mass 0.05",
            )
        )  # fmt: skip
        pixels.append(packed.data)
    spec = assemble_spec(name, slots, overlay=overlay, vmax=1.0, nonce=nonce, box_kinds=("mass",))
    return spec, pixels


st.set_page_config(page_title="viewer test", layout="wide")
with st.sidebar:
    st.write("viewer test app")
state = st.session_state
params = st.query_params
index = state.setdefault("index", 0)
spec, pixels = study(STUDIES[index], int(params.get("nonce", 0)))
height = int(params["height"]) if "height" in params else None
value = accessors.viewer.hanging_viewer(spec, pixels, key="test-viewer", height=height)
event = accessors.viewer.new_event(value, "seen-nonce")
if event is not None:
    state["events"] = [*state.get("events", []), event]
    if event["event"] in ("next", "prev"):
        state["index"] = (index + (1 if event["event"] == "next" else -1)) % len(STUDIES)
        st.rerun()
st.markdown(f"study: {STUDIES[state['index']]}")
st.code(json.dumps(state.get("events", [])), language="json")
