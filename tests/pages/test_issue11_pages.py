"""AppTest checks of issue 11's Model form, run defaults, URL memory and human column names (the browser versions
are in tests/e2e/test_issue11_model_data.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory):
    """One finished logistic-regression run on the demo (seconds)."""
    from scapp import cli

    root = tmp_path_factory.mktemp("issue11-runs")
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--model", "logreg",
                   "--out", str(root / "a-finished"), "--device", "cpu", "--quiet"])
    assert rc == 0
    return root


@pytest.fixture
def app(logreg_run, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(logreg_run, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=120)


def _copy_run(runs_dir: Path, name: str, state: str) -> None:
    from scapp import runs

    shutil.copytree(runs_dir / "a-finished", runs_dir / name)
    runs.write_status(runs_dir / name, state, has_model=True, message="Stopped by user.")


def _form(app) -> dict:
    return {n.label: n.value for n in app.number_input if n.label != "Seed"}


def test_model_form_shows_the_presets_values_and_saves_them(app):
    app.run()
    app.switch_page("pages/model.py").run()
    assert _form(app)["Max epochs"] == 500
    app.radio(key="model-preset").set_value("fast").run()
    assert (_form(app)["Max epochs"], _form(app)["Early-stopping patience"]) == (40, 5)
    app.switch_page("pages/data.py").run()
    app.switch_page("pages/model.py").run()
    assert app.radio(key="model-preset").value == "fast" and _form(app)["Max epochs"] == 40
    app.number_input(key="model-opt-sims-fast-max_epochs").set_value(7)
    app.button(key="FormSubmitter:model-advanced-Save settings").click().run()
    assert app.session_state["model_overrides"] == {"max_epochs": 7}
    app.switch_page("pages/data.py").run()
    app.switch_page("pages/model.py").run()
    assert _form(app)["Max epochs"] == 7  # what was saved is what the form shows
    app.radio(key="model-preset").set_value("thorough").run()
    f = _form(app)
    assert (f["Max epochs"], f["Early-stopping patience"], f["Decision width (n_d)"]) == (500, 20, 64)
    assert "model_overrides" not in app.session_state  # the fast-era edit does not ride along to Train
    app.button(key="FormSubmitter:model-advanced-Save settings").click().run()
    assert app.session_state["model_overrides"] == {} and app.session_state["preset"] == "thorough"
    helps = {n.label: n.help for n in app.number_input}
    assert all(helps.values()) and "width" in helps["Decision width (n_d)"]
    assert not app.exception


def test_explore_and_compare_open_the_newest_finished_run_not_a_cancelled_one(app):
    import os

    runs_dir = Path(os.environ["SCAPP_RUNS_DIR"])
    _copy_run(runs_dir, "b-finished", "finished")
    _copy_run(runs_dir, "c-cancelled", "cancelled")  # the newest run, stopped: listed, not the default
    app.run()
    app.switch_page("pages/explore.py").run()
    box = app.selectbox(key="explore-run")
    assert box.value == "b-finished" and any(o.startswith("c-cancelled") for o in box.options)
    app.switch_page("pages/compare.py").run()
    assert sorted(app.multiselect(key="compare-runs").value) == ["a-finished", "b-finished"]
    # the user picks the cancelled run on Explore: it stays chosen on the next page
    app.switch_page("pages/explore.py").run()
    app.selectbox(key="explore-run").set_value("c-cancelled").run()
    app.switch_page("pages/annotate.py").run()
    assert app.selectbox(key="annotate-run").value == "c-cancelled"
    assert not app.exception


def test_a_reload_takes_the_dataset_labels_model_and_run_from_the_url(app):
    """A reload is a new session with the same URL (writing the URL is checked in the browser test: AppTest runs
    app.py, where the URL is written, only on its first run)."""
    from scapp.data.demo import demo_path

    fresh = app
    fresh.query_params.update({"data": "demo", "label": "cell_type_coarse", "model": "logreg", "preset": "fast",
                               "run": "a-finished"})
    fresh.run()
    assert fresh.session_state["dataset_path"] == str(demo_path())
    assert fresh.session_state["label"] == "cell_type_coarse" and fresh.selectbox(key="data-label").value == (
        "cell_type_coarse")
    assert (fresh.session_state["model"], fresh.session_state["preset"], fresh.session_state["run_id"]) == (
        "logreg", "fast", "a-finished")
    # a stale link (a file or run that is gone, an unknown model) is ignored
    stale = AppTest.from_file(APP, default_timeout=120)
    stale.query_params.update({"data": "/nowhere/x.h5ad", "model": "nope", "run": "../a-finished"})
    stale.run()
    assert not any(k in stale.session_state for k in ("dataset_path", "model", "run_id")) and not stale.exception


def test_runs_and_compare_tables_use_human_column_names(app):
    import os

    _copy_run(Path(os.environ["SCAPP_RUNS_DIR"]), "b-finished", "finished")
    app.run()
    app.switch_page("pages/runs.py").run()
    cfg = json.loads(app.dataframe[0].proto.columns)
    assert cfg["macro_f1"]["label"] == "Macro F1" and "averaged" in cfg["macro_f1"]["help"]
    assert cfg["has_model"]["label"] == "Model saved" and cfg["run_id"]["label"] == "Run"
    app.switch_page("pages/compare.py").run()
    cfg = json.loads(app.dataframe[0].proto.columns)
    assert cfg["ece_after"]["label"] == "Calibration error (ECE)" and "confidence" in cfg["ece_after"]["help"]
    assert not app.exception
