"""caracal-viz: the spectral microscope for Fourier-mixing language models.

Run with `streamlit run app.py`. This entry sets the page up, lists every page of pages/ for
`st.navigation` (caracal_viz/app_support/sidebar.py PAGE_FILES, read from the folder: navigation
does no discovery itself), draws the sidebar shared by every page (checkpoint, text, device, model
card) and runs the chosen page. Once a page is drawn, the imports that only some pages need start in the
background (caracal_viz.warmup).
"""

import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import warmup

ui.set_page_config()
page = st.navigation(ui.pages())
ui.sidebar()
page.run()
warmup.start()
