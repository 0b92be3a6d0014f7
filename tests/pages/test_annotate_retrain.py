"""Annotate page, queries that share few genes (issue 10): the offer to retrain on the shared genes starts a real
job whose run then annotates the query with every gene; a query missing some genes says how many are zero-filled.

Its own logistic-regression run (one grid point: seconds) keeps it cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory):
    from scapp import cli

    root = tmp_path_factory.mktemp("annotate-retrain")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"n_genes_grid": [500], "C_grid": [1.0]}))
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--model",
                   "logreg_hvg", "--config", str(cfg), "--out", str(root / "runs" / "demo-run"), "--device", "cpu",
                   "--quiet"])
    assert rc == 0
    return root / "runs"


@pytest.fixture
def app(logreg_run, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(logreg_run, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=300)


def test_annotate_offers_a_retrain_on_the_shared_genes_and_its_run_then_fits(app, tmp_path):
    import anndata as ad

    from scapp import runs

    q = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")[:80, :200].copy()  # 10 % of the model's genes
    path = tmp_path / "q.h5ad"
    q.write_h5ad(path)
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.text_input(key="annotate-path").set_value(str(path)).run()
    assert not app.exception, app.exception
    assert any("Only 200 of the model's 2,000 genes" in e.value for e in app.error)
    assert any("The query shares 200 of the model's genes. Retrain the same method and settings on those 200 genes"
               in i.value for i in app.info)
    button = app.button(key="annotate-retrain")
    assert button.label == "Retrain on the 200 shared genes"
    button.click().run()
    assert not app.exception, app.exception
    new = app.session_state["run_id"]
    assert new != "demo-run" and any(new in s.value for s in app.success)
    assert any(p.proto.label == "Follow it on the Train page" and p.proto.page == "train"
               for p in app.get("page_link"))
    run_dir = Path(os.environ["SCAPP_RUNS_DIR"]) / new
    store = runs.RunStore(run_dir)
    req = store.request()
    assert req["genes"] == list(q.var_names) and req["genes_from"] == "q.h5ad"
    assert req["parent"] == str((Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run").resolve())
    deadline = time.time() + 240  # the job runs in its own process, as from the app
    while (runs.read_status(run_dir) or {}).get("state") in ("queued", "running", None) and time.time() < deadline:
        time.sleep(0.5)
    st = runs.read_status(run_dir)
    assert st["state"] == "finished", (st, store.log_path.read_text()[-2000:])
    assert store.data_info()["parent_run"] == req["parent"] and len(store.genes()) == 200
    app.switch_page("pages/train.py").run()  # where the offer sends the user: it follows the new run
    assert not app.exception, app.exception
    assert any(f"Run `{new}` — finished" in m.value for m in app.markdown)
    app.switch_page("pages/annotate.py").run()  # back on Annotate: the new run is chosen, and the query fits it
    assert not app.exception, app.exception
    assert app.selectbox(key="annotate-run").value == new
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Model genes found"] == "200 / 200" and metrics["Overlap"] == "100.0%"
    assert not app.error and app.button(key="annotate-go")


def test_annotate_says_how_many_genes_are_filled_with_zeros(app):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.button(key="annotate-demo").click().run()  # the demo query holds 1,957 of the model's 2,000 genes
    assert not app.exception, app.exception
    assert any("the other 43 genes are filled with zeros" in c.value for c in app.caption)


def test_annotate_without_the_training_file_says_retraining_needs_it(app, tmp_path):
    import anndata as ad

    from scapp import runs

    store = runs.RunStore(Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run")
    store.write_config({**store.config(), "data": str(tmp_path / "moved.h5ad")})  # as if the file had moved
    q = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")[:80, :200].copy()
    q.write_h5ad(tmp_path / "q.h5ad")
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.text_input(key="annotate-path").set_value(str(tmp_path / "q.h5ad")).run()
    assert not app.exception, app.exception
    assert any("Retraining needs the run's training file" in i.value for i in app.info)
    with pytest.raises(KeyError):
        app.button(key="annotate-retrain")
