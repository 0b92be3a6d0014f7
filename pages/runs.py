"""Runs: every run on disk, with open, delete and export."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from pages._ui import column_config, runs_root, set_run, show_error, through_app
from scapp import runs
from scapp.errors import ScappError

through_app()  # a page opened on its own by a fresh server runs again through app.py
st.title("Runs")
table = runs.list_runs(runs_root())
if table.empty:
    st.info("No runs yet.")
    st.stop()
table = table.sort_values("run_id", ascending=False)
shown = table.drop(columns=["path"])
st.dataframe(shown, hide_index=True, width="stretch", column_config=column_config(shown.columns))
st.page_link("pages/compare.py", label="Compare runs trained on the same data", icon=":material/compare_arrows:")
rid = st.selectbox("Run", table["run_id"].tolist(), key="runs-pick")
run = runs_root() / rid
try:
    status = runs.read_status(run) or {}
except ScappError as e:
    status = {}
    show_error(e)
if status.get("state") == "failed":  # e.g. its trainer was killed: say why, as the Train page does
    st.error(f"Run {rid} failed: {status.get('error') or 'no reason was recorded'}", icon=":material/error:")
elif status.get("state") == "cancelled" and status.get("message"):
    st.caption(status["message"])
c = st.columns(3)
if c[0].button("Open in Explore", key="runs-open"):
    set_run(rid, picked=True)
    st.switch_page("pages/explore.py")
if c[1].button("Delete", key="runs-delete"):
    st.session_state["runs-confirm"] = rid
if st.session_state.get("runs-confirm") == rid:
    st.warning(f"Delete run {rid} and all its files?")
    if st.button("Yes, delete", key="runs-delete-yes"):
        try:
            runs.delete_run(run)
            st.session_state.pop("runs-confirm", None)
            if st.session_state.get("run_id") == rid:
                set_run(None)
            st.rerun()
        except ScappError as e:
            show_error(e)
if c[2].button("Prepare zip export", key="runs-zip-make"):
    with tempfile.TemporaryDirectory() as tmp, st.spinner("Zipping the run…"):
        st.session_state["runs-zip"] = (rid, runs.export_zip(run, Path(tmp) / rid).read_bytes())
if st.session_state.get("runs-zip", ("",))[0] == rid:
    c[2].download_button("Download zip", st.session_state["runs-zip"][1], file_name=f"{rid}.zip", key="runs-zip")
