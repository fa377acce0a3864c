"""Spectral filters page (first version: the shared sidebar and page setup)."""

import caracal_viz.app_support as ui

ck, text = ui.page_setup("Spectral filters", "Being built.")
