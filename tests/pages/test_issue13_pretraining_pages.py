"""AppTest of issue 13's app part: the Data page's 'no label' choice (Model/Train then offer only methods that learn
without labels), the Model page's pretraining choice, the Train page queueing pretraining → from scratch →
fine-tune and showing each step with the reconstruction-loss curve, and Explore's 'What pretraining changed'.

The job processes are not started by the page here (``scapp.train.job.spawn`` is replaced): the test runs each queued
job itself with ``scapp run-job``, in queue order, as the real processes would. The browser version, with real
processes, is tests/e2e/test_issue13_ssl.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
QUERY = REPO / "assets" / "demo_pbmc4k_query.h5ad"
NO_LABEL = "— no label (denoising / pretraining only)"
TINY = {"encoder_widths": [64, 32], "max_epochs": 2, "early_stopping_patience": 2}


@pytest.fixture(scope="module")
def pre_run(tmp_path_factory):
    """A finished tiny pretraining run on the demo and its query (seconds)."""
    from scapp import cli

    root = tmp_path_factory.mktemp("issue13-runs")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    rc = cli.main(["pretrain", str(DEMO), str(QUERY), "--genes-of", str(DEMO), "--config", str(cfg), "--epochs", "2",
                   "--out", str(root / "runs" / "pre-fixture"), "--device", "cpu", "--quiet"])
    assert rc == 0
    return root / "runs" / "pre-fixture"


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SCAPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=120)


class _FakeProcess:
    pid = os.getpid()  # alive: the queued run is not read as crashed


@pytest.fixture
def no_processes(monkeypatch):
    """Jobs are queued but their processes are not started; returns the command lines that would have run."""
    from scapp.train import job

    started: list[list[str]] = []

    def popen(cmd, *a, **kw):
        started.append(list(cmd))
        return _FakeProcess()

    monkeypatch.setattr(job, "spawn", popen)
    return started


def _demo(app) -> AppTest:
    app.run()
    app.button(key="data-demo").click().run()
    assert not app.exception, app.exception
    return app


# -- Data page: no label -----------------------------------------------------------------------------------------
def test_no_label_choice_offers_only_methods_that_learn_without_labels(app):
    from scapp.models import REGISTRY

    _demo(app)
    box = app.selectbox(key="data-label")
    assert box.options[-1] == NO_LABEL and box.value == "cell_type"
    box.set_value(NO_LABEL).run()
    assert not app.exception, app.exception
    assert app.session_state["label"] is None and app.session_state["no_label"]
    assert any("only methods that learn without labels" in i.value for i in app.info)
    assert "**Labels:** none" in [m.value for m in app.sidebar.markdown]

    app.switch_page("pages/model.py").run()
    assert not app.exception, app.exception
    free = {n for n, s in REGISTRY.items() if s.trainable and s.available and not s.capabilities.needs_labels}
    assert free  # ZiPo and ssl
    for name, spec in REGISTRY.items():
        if not (spec.trainable and spec.available):
            continue
        b = app.button(key=f"model-pick-{name}")
        assert b.disabled == (name not in free), name
        if name not in free:
            assert b.label == "Needs a label column"
    assert app.session_state["model"] in free  # the default SIMS needs labels: a method that does not is chosen
    assert "model-pre-mode" not in {r.key for r in app.radio}  # nothing to fine-tune on without labels

    app.switch_page("pages/train.py").run()
    assert not app.exception, app.exception
    assert any("no labels" in m.value for m in app.markdown)
    assert "train-start" in {b.key for b in app.button}


def test_train_refuses_a_method_that_needs_labels_when_there_is_none(app):
    _demo(app)
    app.selectbox(key="data-label").set_value(NO_LABEL).run()
    app.session_state["model"] = "logreg"  # e.g. chosen before the label was dropped
    app.switch_page("pages/train.py").run()
    assert not app.exception, app.exception
    assert any("learns cell types from labels" in i.value for i in app.info)
    assert "train-start" not in {b.key for b in app.button}


# -- Model page: the pretraining choice ----------------------------------------------------------------------------
def test_model_page_offers_pretraining_files_and_fitting_runs_for_a_method_that_pretrains(app, pre_run, tmp_path):
    import shutil

    shutil.copytree(pre_run, tmp_path / "runs" / pre_run.name)
    _demo(app)
    app.switch_page("pages/model.py").run()
    assert "model-pre-mode" not in {r.key for r in app.radio}  # SIMS declares no pretraining
    app.button(key="model-pick-ssl").click().run()
    mode = app.radio(key="model-pre-mode")
    assert mode.value == "scratch" and app.session_state["pretraining"] is None
    mode.set_value("pretrain").run()
    assert not app.exception, app.exception
    files = app.multiselect(key="model-pre-files")
    assert [Path(o.split(" ")[0]).name for o in files.options] == ["demo_pbmc4k_query.h5ad", "demo_pbmc3k.h5ad"]
    assert files.value == [str(QUERY.resolve())]  # other cells first: the same cells gave no gain in the study
    files.select(str(DEMO.resolve())).run()
    app.number_input(key="model-pre-epochs").set_value(3).run()
    plan = app.session_state["pretraining"]
    assert plan["model"] == "ssl" and plan["files"] == [str(QUERY.resolve()), str(DEMO.resolve())]
    assert plan["epochs"] == 3 and plan["method"] == "mae" and plan["scratch"] is True
    assert any("pretraining (masked autoencoder, up to 3 epochs) on demo_pbmc4k_query.h5ad, demo_pbmc3k.h5ad"
               in c.value for c in app.caption)

    app.radio(key="model-pre-mode").set_value("from_run").run()
    assert not app.exception, app.exception
    runs_box = app.selectbox(key="model-pre-run")
    assert runs_box.options[0].startswith("pre-fixture · masked autoencoder · 4,138 cells · 100% of its")
    app.checkbox(key="model-pre-scratch").uncheck().run()
    plan = app.session_state["pretraining"]
    assert plan["from_run"] == str(tmp_path / "runs" / "pre-fixture") and not plan["files"] and not plan["scratch"]


# -- Train page and Explore: the whole chain ---------------------------------------------------------------------
def test_train_queues_pretraining_scratch_and_finetune_then_explore_shows_what_pretraining_changed(
        app, no_processes, tmp_path):
    from scapp import cli, runs
    from scapp.train.pretrain_jobs import job_of

    _demo(app)
    app.switch_page("pages/model.py").run()
    app.button(key="model-pick-ssl").click().run()
    app.radio(key="model-preset").set_value("fast").run()
    app.number_input(key="model-opt-ssl-fast-max_epochs").set_value(2)
    app.button(key="FormSubmitter:model-advanced-Save settings").click().run()
    app.radio(key="model-pre-mode").set_value("pretrain").run()
    app.multiselect(key="model-pre-files").select(str(DEMO.resolve())).run()
    app.number_input(key="model-pre-epochs").set_value(2).run()
    assert not app.exception, app.exception

    app.switch_page("pages/train.py").run()
    assert any("pretraining (masked autoencoder, up to 2 epochs)" in c.value for c in app.caption)
    app.button(key="train-start").click().run()
    assert not app.exception, app.exception
    root = tmp_path / "runs"
    assert len(no_processes) == 3 and all(c[2:4] == ["scapp", "run-job"] for c in no_processes)
    queued = [Path(c[4]) for c in no_processes]
    roles = [job_of(p)["role"] for p in queued]
    assert roles == ["pretraining", "scratch", "finetune"]
    order = sorted(queued, key=lambda p: runs.read_status(p)["queued_at"])
    assert order == queued  # the queue runs them in this order
    pre, scratch, ft = queued
    assert app.session_state["run_id"] == ft.name
    req = runs.RunStore(pre).request()
    assert req["data"] == [str(QUERY.resolve()), str(DEMO.resolve())] and req["genes_of"] == str(DEMO.resolve())
    assert req["epochs"] == 2 and req["model_config"]["encoder_widths"] == [256, 128, 64]
    ft_req = runs.RunStore(ft).request()
    assert ft_req["from_run"] == ft_req["parent"] == str(pre)
    assert runs.RunStore(scratch).request()["from_run"] is None
    # while the pretraining waits its turn, the page follows the job's first step
    heads = [m.value for m in app.markdown if m.value.startswith("### Run")]
    assert heads == [f"### Run `{ft.name}` — step 1 of 3: pretraining on unlabelled cells"]

    for p in queued:  # what the three job processes do, one after the other
        assert cli.main(["run-job", str(p)]) == 0, (p / "train.log").read_text()[-2000:]
    cfg = runs.RunStore(pre).config()
    assert cfg["kind"] == "pretraining" and runs.read_status(pre)["state"] == "finished"
    listed = runs.list_runs(root).set_index("run_id")
    assert set(listed.index) == {pre.name, scratch.name, ft.name}
    assert listed.loc[ft.name, "parent"] == pre.name and listed.loc[scratch.name, "parent"] is None

    app.run()
    assert not app.exception, app.exception
    assert f"### Run `{ft.name}` — finished" in [m.value for m in app.markdown]
    assert any("What pretraining changed" in s.value for s in app.success)
    charts = {c.key: plotly.io.from_json(c.proto.spec) for c in app.get("plotly_chart")}
    pre_fig = next(f for f in charts.values() if "Reconstruction loss (hidden genes)"
                   in {a.text for a in f.layout.annotations})
    assert {"train_loss", "valid_loss", "lr"} <= {t.meta for t in pre_fig.data}
    assert any("genes hidden from each cell" in c.value for c in app.caption)

    app.switch_page("pages/explore.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="explore-run").value == ft.name
    views = app.button_group(key="explore-view")
    assert "What pretraining changed" in views.options
    views.set_value("What pretraining changed").run()
    assert not app.exception, app.exception
    assert app.selectbox(key=f"explore-scratch-{ft.name}").value == scratch.name
    names = {m.label for m in app.metric}
    assert {"Macro F1, pretrained", "Balanced accuracy, pretrained", "Accuracy, pretrained"} <= names
    fig = plotly.io.from_json(app.get("plotly_chart")[0].proto.spec)
    assert [t.meta for t in fig.data] == ["recall_scratch", "recall_pretrained"]
    assert len(fig.data[0].x) == 9  # the demo's nine cell types
    assert any(f"Started from pretraining run `{pre.name}`" in m.value for m in app.markdown)

    # the pretraining run itself opens on Explore: its curve and cell map, no class views
    app.selectbox(key="explore-run").set_value(pre.name).run()
    assert not app.exception, app.exception
    assert app.button_group(key="explore-view").options == ["Cell map", "Training"]


def test_explore_pretraining_view_without_a_scratch_run_says_how_to_get_one(app, pre_run, tmp_path):
    from scapp import cli

    root = tmp_path / "runs"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    rc = cli.main(["train", str(DEMO), "--label", "cell_type", "--model", "ssl", "--from", str(pre_run),
                   "--config", str(cfg), "--out", str(root / "ft-alone"), "--device", "cpu", "--quiet"])
    assert rc == 0
    app.session_state["run_id"] = "ft-alone"
    app.run()
    app.switch_page("pages/explore.py").run()
    app.button_group(key="explore-view").set_value("What pretraining changed").run()
    assert not app.exception, app.exception
    assert any("No run of the same method trained from scratch" in i.value for i in app.info)


def test_a_reload_keeps_the_no_label_choice(app):
    """A reload is a new session with the same address (the address is written in the browser; AppTest runs
    app.py, where it is written, only on its first run)."""
    app.query_params.update({"data": "demo", "nolabel": "1", "model": "zipo"})
    app.run()
    assert not app.exception, app.exception
    assert app.session_state["no_label"] and app.session_state["label"] is None
    assert app.selectbox(key="data-label").value == NO_LABEL
    assert app.session_state["model"] == "zipo"
