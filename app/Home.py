"""mammo-sae dashboard entry point: `streamlit run app/Home.py`. Research use only."""

from __future__ import annotations

import streamlit as st

from mammo_sae import RESEARCH_USE_NOTICE, __version__

st.set_page_config(page_title="mammo-sae", page_icon=":material/biotech:", layout="wide")
st.warning(
    f"**{RESEARCH_USE_NOTICE}** mammo-sae is an interpretability workbench, not a medical device.", icon="⚠️"
)

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/dataset.py", title="Dataset", icon=":material/folder_open:"),
]
st.sidebar.caption(f"mammo-sae {__version__}")
st.navigation(pages).run()
