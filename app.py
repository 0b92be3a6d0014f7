"""scapp — Streamlit entry point: router, sidebar (dataset, run, device) and theme only."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

# A favicon goes through Streamlit's image code, which imports numpy and PIL (a second on a busy CPU): the very first
# script run of a fresh server paints the page without it, every later run (numpy loaded by then) sets it.
st.set_page_config(page_title="scapp", layout="wide",
                   **({"page_icon": str(HERE / "assets" / "logo.svg")} if "numpy" in sys.modules else {}))

# after set_page_config
from pages._ui import refresh_sidebar, restore_from_url, sidebar, sync_url, upload_housekeeping  # noqa: E402

pages = [
    st.Page("pages/data.py", title="Data", icon=":material/dataset:", default=True),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/train.py", title="Train", icon=":material/play_circle:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/insights:"),
    st.Page("pages/annotate.py", title="Annotate", icon=":material/label:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
]
nav = st.navigation(pages)
restore_from_url()  # a reload keeps the dataset, labels, model, preset and run (they live in the URL)
sidebar()
sync_url()
upload_housekeeping()  # this session's uploads are held; those nobody needs are swept (scapp.uploads)
nav.run()
# reached when the page ran to its end (st.stop and st.rerun leave earlier): show what the page chose
refresh_sidebar()
sync_url()
