"""AppTest of the (minimal) app: demo QC summary and a clear error for a bad path."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_shows_demo_qc_summary():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cells"] == "2,638" and metrics["Genes"] == "2,000" and metrics["Input kind"] == "counts"
    assert at.selectbox(key="data-label").value == "cell_type"


def test_app_bad_path_gives_clear_error(tmp_path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an h5ad")
    at.text_input(key="data-path").set_value(str(bad)).run()
    assert not at.exception
    assert at.error and "broken.h5ad" in at.error[0].value
