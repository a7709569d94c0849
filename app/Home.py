"""mammo-sae dashboard entry point: `streamlit run app/Home.py`. Research use only.

The page frame: page config, the research-use banner, the synthetic-data notice (on every page when the
bundle was built on phantoms), the sidebar's bundle picker and note author, and the navigation. The page
icon is a local image the app serves: `page_icon=":material/..."` makes the browser fetch it from an
outside font host (the navigation's material icons come from Streamlit's own bundled font).
"""

from __future__ import annotations

from pathlib import Path

import accessors
import streamlit as st

from mammo_sae import RESEARCH_USE_NOTICE, __version__

ICON = Path(__file__).parent / "assets" / "icon.png"  # served by the app itself

st.set_page_config(page_title="mammo-sae", page_icon=str(ICON), layout="wide")
# One line, not a box: the reading screen needs the height. The synthetic-data notice joins it (on every
# page when the bundle was built on phantoms); the style trims the page's top margin for the same reason.
st.html(  # a short header, so the reading screen's first line is not under it
    "<style>.stMainBlockContainer { padding-top: 2.6rem; padding-bottom: 1rem; }"
    "[data-testid=stHeader] { height: 2.5rem; min-height: 2.5rem; }"
    "[data-testid=stButtonGroup] [role=radiogroup] { flex-wrap: wrap; }</style>"  # panel switches wrap
)
banner = st.empty()

if "bundle_path" not in st.session_state:
    st.session_state["bundle_path"] = accessors.default_bundle_path()
st.sidebar.text_input(
    "Bundle folder",
    key="bundle_path",
    help="An analysis bundle written by python -m mammo_sae.analyze (default: the shipped demo, or "
    "MAMMO_SAE_BUNDLE). Only folders under weights/, the cache, MAMMO_SAE_BUNDLE_ROOTS or MAMMO_SAE_BUNDLE open.",
)
st.sidebar.text_input(
    "Your name (for notes and verdicts)",
    key=accessors.AUTHOR_KEY,
    max_chars=80,
    help="Saved with every latent note and case verdict you record in this session (verdicts need it). Both "
    "are kept in your data folder (MAMMO_SAE_NOTES, or the cache), never in the bundle.",
)
notice = accessors.frame_notice()
banner.markdown(
    f":orange-background[⚠️ **{RESEARCH_USE_NOTICE}**] mammo-sae is an interpretability workbench, not a "
    f"medical device.{' ' + notice if notice else ''}"
)

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/case_review.py", title="Case review", icon=":material/grid_view:"),
    st.Page("views/concepts.py", title="Concept neurons", icon=":material/neurology:"),
    st.Page("views/interventions.py", title="Interventions", icon=":material/tune:"),
    st.Page("views/shortcuts.py", title="Shortcut audit", icon=":material/report:"),
    st.Page("views/upload.py", title="Upload", icon=":material/upload_file:"),
    st.Page("views/training.py", title="Training report", icon=":material/monitoring:"),
    st.Page("views/dataset.py", title="Dataset", icon=":material/folder_open:"),
]
st.sidebar.caption(f"mammo-sae {__version__} · {RESEARCH_USE_NOTICE}")
st.navigation(pages).run()
