"""Placeholder until Engineer D's page lands (D owns this file)."""

import streamlit as st

st.title("Token influence")
st.info("This page is being built.")
