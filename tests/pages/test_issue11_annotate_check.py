"""AppTest of the Annotate page (issue 11): results without waiting for a map, and the query's labels checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def logreg_runs(tmp_path_factory):
    from scapp import cli

    root = tmp_path_factory.mktemp("annotate-check-runs")
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--model", "logreg",
                   "--out", str(root / "logreg-run"), "--device", "cpu", "--quiet"])
    assert rc == 0
    return root


@pytest.fixture
def app(logreg_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(logreg_runs))
    monkeypatch.setenv("SCAPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=120)


def test_demo_query_is_checked_against_its_own_labels(app):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.button(key="annotate-demo").click().run()
    app.button(key="annotate-go").click().run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Cells annotated"] == "1,500"
    assert metrics["Cells compared"] == "1,487"  # the 13 "Unknown" cells are left out
    assert 0.6 < float(metrics["Agreement"].rstrip("%")) / 100 < 0.95
    col = app.selectbox(key="annotate-check-col-logreg-run")
    assert col.value == "cell_type"  # named like the training label
    assert any(b.label == "Download the cells that disagree (CSV)" for b in app.get("download_button"))
    assert any("PCA" in c.value for c in app.caption)  # the UMAP is on its way in the background
    col.set_value("cell_type_coarse").run()
    assert not app.exception, app.exception
    assert {m.label: m.value for m in app.metric}["Cells compared"] == "1,487"  # T_CD4, Myeloid, … matched too
