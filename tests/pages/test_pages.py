"""AppTest for every page: launches cleanly, and the main interaction of each works or fails clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
PAGES = ["pages/data.py", "pages/model.py", "pages/train.py", "pages/explore.py", "pages/annotate.py", "pages/runs.py"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small finished SIMS run on the demo data, shared by the page tests."""
    from scapp import cli

    root = tmp_path_factory.mktemp("pages-runs")
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--epochs", "2",
                   "--out", str(root / "demo-run"), "--device", "cpu", "--quiet"])
    assert rc == 0
    return root


@pytest.fixture
def app(finished_run, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(finished_run, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=120)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_launches_without_exception(app, page):
    app.run()
    app.switch_page(page).run()
    assert not app.exception, app.exception


def test_data_page_demo_button_shows_qc(app):
    app.run()
    app.button(key="data-demo").click().run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Cells"] == "2,638" and metrics["Input kind"] == "counts"
    assert app.selectbox(key="data-label").value == "cell_type"
    assert len(app.get("plotly_chart")) >= 2


def test_data_page_bad_path_and_corrupt_file(app, tmp_path):
    app.run()
    app.text_input(key="data-path").set_value(str(tmp_path / "missing.h5ad")).run()
    assert not app.exception and "No file or folder" in app.error[0].value
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an h5ad")
    app.text_input(key="data-path").set_value(str(bad)).run()
    assert not app.exception and "broken.h5ad" in app.error[0].value


def test_explore_shows_metrics_of_the_run(app):
    app.run()
    app.switch_page("pages/explore.py").run()
    assert not app.exception
    labels = [m.label for m in app.metric]
    assert "Macro F1 (test)" in labels
    assert len(app.get("plotly_chart")) >= 3


def test_annotate_refuses_low_overlap_with_reason(app, tmp_path):
    import anndata as ad

    q = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")[:50].copy()
    q.var_names = [f"X{i}" for i in range(q.n_vars)]
    path = tmp_path / "q.h5ad"
    q.write_h5ad(path)
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.text_input(key="annotate-path").set_value(str(path)).run()
    assert not app.exception
    assert any("genes" in e.value for e in app.error)


def test_annotate_predicts_and_offers_downloads(app):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.text_input(key="annotate-path").set_value(str(REPO / "assets" / "demo_pbmc3k.h5ad")).run()
    app.button(key="annotate-go").click().run()
    assert not app.exception
    assert any(m.label == "Unassigned" for m in app.metric)
    app.slider(key="annotate-threshold").set_value(0.99).run()
    assert not app.exception


def test_runs_page_refuses_to_delete_a_running_run(app, finished_run):
    import os

    from scapp import runs

    run = Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run"
    runs.write_status(run, "running", pid=os.getpid())
    app.run()
    app.switch_page("pages/runs.py").run()
    app.button(key="runs-delete").click().run()
    app.button(key="runs-delete-yes").click().run()
    assert not app.exception
    assert any("still running" in e.value for e in app.error)
    assert run.exists()
