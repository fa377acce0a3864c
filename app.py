"""caracal-viz: the spectral microscope for Fourier-mixing language models.

Run with `streamlit run app.py`. This entry renders the sidebar shared by every page (checkpoint,
text, device, model card; see caracal_viz/app_support.py) and then the page chosen in the
navigation. The page files are listed explicitly: `st.navigation` ignores pages/ discovery.
"""

import streamlit as st

import caracal_viz.app_support as ui

st.set_page_config(page_title="caracal-viz", page_icon=":material/graphic_eq:", layout="wide")

PAGES = [
    st.Page("pages/1_overview.py", title="Overview", icon=":material/text_fields:", default=True),
    st.Page("pages/2_spectral_filters.py", title="Spectral filters", icon=":material/equalizer:"),
    st.Page("pages/3_modrelu_gates.py", title="modReLU gates", icon=":material/grid_on:"),
    st.Page("pages/4_causal_trick.py", title="The causal trick", icon=":material/schedule:"),
    st.Page("pages/5_parseval_energy.py", title="Parseval energy", icon=":material/bolt:"),
    st.Page("pages/6_token_influence.py", title="Token influence", icon=":material/hub:"),
    st.Page("pages/7_compare.py", title="Compare", icon=":material/compare:"),
]

page = st.navigation(PAGES)
ui.sidebar()
page.run()
