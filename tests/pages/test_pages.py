"""AppTest for every page: launches cleanly, and the main interaction of each works or fails clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
PAGES = ["pages/data.py", "pages/model.py", "pages/train.py", "pages/explore.py", "pages/annotate.py", "pages/runs.py",
         "pages/compare.py"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small finished SIMS run on the demo data, shared by the page tests."""
    from scapp import cli

    root = tmp_path_factory.mktemp("pages-runs")
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--epochs", "2",
                   "--out", str(root / "demo-run"), "--device", "cpu", "--quiet", "--threshold", "0.7"])
    assert rc == 0
    return root


@pytest.fixture
def app(finished_run, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(finished_run, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=300)


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


def test_explore_renders_only_the_chosen_view(app):
    app.run()
    app.switch_page("pages/explore.py").run()
    assert app.segmented_control(key="explore-view").value == "Per class"
    assert len(app.get("plotly_chart")) == 3  # per-class F1, confusion matrix, training curves: nothing else built
    app.segmented_control(key="explore-view").set_value("Calibration").run()
    assert not app.exception
    assert [c.proto.spec for c in app.get("plotly_chart")] and len(app.get("plotly_chart")) == 1
    app.switch_page("pages/model.py").run()
    app.switch_page("pages/explore.py").run()
    assert app.segmented_control(key="explore-view").value == "Calibration"  # kept across a page switch


def test_explore_cell_map_shows_a_sample_and_counts_selected_cells_left_out(app, monkeypatch):
    """A map of a class-stratified sample (its UMAP stored in the run), with the caption and the selection's count."""
    import os

    import numpy as np

    import scapp.evaluate.embedding as embedding
    from scapp import runs
    from scapp.sampling import downsample_idx

    monkeypatch.setattr(embedding, "DISPLAY_CELLS", 500)
    store = runs.RunStore(Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run")
    pred = store.predictions()
    idx = downsample_idx(pred["true"], 500)
    coords = np.random.default_rng(0).normal(size=(len(idx), 2)).astype(np.float32)
    store.write_cell_map(500, {"index": idx, "umap": coords})  # as `scapp map --cells 500`
    test = pred[pred["split"] == "test"]
    true_c, pred_c = test.groupby(["true", "pred"]).size().idxmax()
    app.run()
    app.switch_page("pages/explore.py").run()
    app.session_state["explore-pair"] = ("demo-run", true_c, pred_c)  # what selecting that confusion cell stores
    app.run()
    app.segmented_control(key="explore-view").set_value("Cell map").run()
    assert not app.exception, app.exception
    captions = " ".join(c.value for c in app.caption)
    assert f"Showing **{len(idx):,} of {len(pred):,} cells**" in captions
    n_sel = int(((test["true"] == true_c) & (test["pred"] == pred_c)).sum())
    on_map = int(pred.iloc[idx].query("split == 'test' and true == @true_c and pred == @pred_c").shape[0])
    assert f"Highlighted: **{on_map:,}** of the {n_sel:,} test cells" in captions
    assert f"{n_sel - on_map:,} of them are not in the displayed sample" in captions
    assert f"{len(idx):,} of {len(pred):,} cells" in app.get("plotly_chart")[0].proto.spec
    app.radio(key="explore-color").set_value("confidence").run()
    assert not app.exception and len(app.get("plotly_chart")) == 1


def test_explore_cell_map_job_running_and_failed(app, monkeypatch):
    import os

    import scapp.evaluate.embedding as embedding
    from scapp import runs

    monkeypatch.setattr(embedding, "DISPLAY_CELLS", 400)
    store = runs.RunStore(Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run")
    store.mark_cell_map_running(400, os.getpid())  # a map job in progress
    app.run()
    app.switch_page("pages/explore.py").run()
    app.segmented_control(key="explore-view").set_value("Cell map").run()
    assert not app.exception
    assert any("in the background" in i.value for i in app.info)
    with pytest.raises(ValueError), store.cell_map_job(400):  # the job fails
        raise ValueError("boom")
    app.run()
    assert not app.exception
    assert "could not be computed" in app.error[0].value and app.button(key="explore-map-retry")


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
    slider = app.slider(key="annotate-threshold-demo-run")
    assert slider.value == pytest.approx(0.7)  # the threshold chosen before training, not 0.5
    slider.set_value(0.99).run()
    assert not app.exception


def test_a_run_cancelled_while_queued_is_not_offered_in_explore(app):
    import os

    from scapp import runs

    queued = runs.RunStore.create("sims", root=Path(os.environ["SCAPP_RUNS_DIR"]))
    queued.write_status("cancelled", message="Removed from the queue before it started.", has_model=False)
    app.run()
    app.switch_page("pages/explore.py").run()
    assert not app.exception, app.exception
    assert queued.id not in app.selectbox(key="explore-run").options
    assert any(m.label == "Macro F1 (test)" for m in app.metric)


def test_model_page_estimates_with_the_gpu_when_there_is_one(app, monkeypatch):
    import pages._ui as ui
    from scapp.train.timing import about, estimate_seconds

    app.run()
    app.switch_page("pages/model.py").run()
    cpu = app.radio(key="model-preset").options
    monkeypatch.setattr(ui, "device_label", lambda: "GPU: NVIDIA H100")
    app.switch_page("pages/model.py").run()
    gpu = app.radio(key="model-preset").options
    assert not app.exception
    assert cpu != gpu
    assert f"default ({about(estimate_seconds('sims', 'default', 3000, gpu=True))} on 3,000 cells)" in gpu


def test_model_page_offers_auto_but_not_the_ensemble_of_finished_runs(app):
    """'auto' trains its members from the data; an ensemble of finished runs is made on the Compare page."""
    app.run()
    app.switch_page("pages/model.py").run()
    keys = {b.key for b in app.button}
    assert "model-pick-auto" in keys and "model-pick-sims" in keys and "model-pick-ensemble" not in keys
    app.button(key="model-pick-auto").click().run()
    app.radio(key="model-preset").set_value("fast").run()
    assert not app.exception
    assert any("SIMS (fast) and Hydra (fast)" in c.value for c in app.caption)


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


# --------------------------------------------------------------------------- export


def test_every_figure_exports_in_the_sidebar_format_with_a_csv(app):
    import json

    app.run()
    app.switch_page("pages/explore.py").run()
    charts = app.get("plotly_chart")
    assert charts
    for c in charts:
        cfg = json.loads(c.proto.config)
        assert cfg["toImageButtonOptions"]["format"] == "svg" and cfg["toImageButtonOptions"]["scale"] == 2
        assert cfg["toImageButtonOptions"]["filename"].startswith("demo-run-") and cfg["displaylogo"] is False
    csv = [b for b in app.get("download_button") if b.proto.label == "CSV"]
    assert len(csv) >= len(charts) - 1  # every figure but a cell map without latent space has its data
    # the sidebar radio (AppTest does not list app.py's sidebar after switch_page, so set its state)
    app.session_state["fig-format"] = "PNG"
    app.run()
    assert all(json.loads(c.proto.config)["toImageButtonOptions"]["format"] == "png" for c in app.get("plotly_chart"))


def test_sidebar_offers_the_figure_format(app):
    app.run()
    radio = app.sidebar.radio(key="fig-format")
    assert radio.options == ["SVG", "PNG"] and radio.value == "SVG"


def test_explore_shows_the_dotplot_or_says_it_is_missing(app):
    import os

    from scapp import runs

    app.run()
    app.switch_page("pages/explore.py").run()
    app.segmented_control(key="explore-view").set_value("Explanations").run()
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("Do the top genes mark their class" in t for t in titles)
    store = runs.RunStore(Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run")
    (store.path / runs.LAYOUT["dotplot"]).unlink()  # an older run, trained before the dot plot was saved
    app.run()
    assert not app.exception
    assert any("not available for this run" in i.value for i in app.info)


# --------------------------------------------------------------------------- compare


def _second_run(runs_dir: Path, name: str, *, relabel: int = 0, sha: str | None = None) -> Path:
    from scapp import runs

    dst = runs_dir / name
    shutil.copytree(runs_dir / "demo-run", dst)
    store = runs.RunStore(dst)
    pred = store.predictions()
    test = pred.index[pred["split"] == "test"][:relabel]
    pred.loc[test, "pred"] = "B"
    store.write_predictions(pred)
    if sha:
        store.write_data_info({**store.data_info(), "sha256": sha, "path": "/elsewhere/other.h5ad"})
    return dst


def test_compare_two_runs_on_the_same_data(app):
    import os

    runs_dir = Path(os.environ["SCAPP_RUNS_DIR"])
    _second_run(runs_dir, "demo-run-2", relabel=25)
    app.run()
    app.switch_page("pages/compare.py").run()
    assert not app.exception, app.exception
    assert sorted(app.multiselect(key="compare-runs").value) == ["demo-run", "demo-run-2"]
    metrics = {m.label: m.value for m in app.metric}
    n_dis = int(metrics["Cells they disagree on"].replace(",", ""))
    assert 0 < n_dis <= 25  # the relabelled cells that were not already called B
    specs = " ".join(c.proto.spec for c in app.get("plotly_chart"))
    assert "Agreement between the two runs" in specs and "Test-set metrics" in specs
    table = app.dataframe[-1].value
    assert len(table) == n_dis and {"cell_id", "true", "pred_demo-run", "conf_demo-run-2"} <= set(table.columns)
    assert any(b.proto.label == "Download disagreeing cells (CSV)" for b in app.get("download_button"))


def test_compare_runs_on_different_data_says_so(app):
    import os

    from scapp import runs

    runs_dir = Path(os.environ["SCAPP_RUNS_DIR"])
    _second_run(runs_dir, "other-data-run", sha="f" * 64)
    app.run()
    app.switch_page("pages/compare.py").run()
    app.multiselect(key="compare-runs").set_value(["demo-run", "other-data-run"]).run()
    assert not app.exception
    assert any("different data" in e.value and "other.h5ad" in e.value for e in app.error)
    assert runs.RunStore(runs_dir / "demo-run").has_weights


def test_compare_with_one_run_explains_what_it_needs(app):
    app.run()
    app.switch_page("pages/compare.py").run()
    assert not app.exception and any("at least two finished runs" in i.value for i in app.info)


# --------------------------------------------------------------------------- user mistakes


def _write(tmp_path: Path, name: str, obs: dict, n: int = 60) -> Path:
    import anndata as ad
    import pandas as pd

    a = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")[:n].copy()
    a.obs = pd.DataFrame(obs, index=a.obs_names)
    path = tmp_path / name
    a.write_h5ad(path)
    return path


def _run_folders() -> set[str]:
    import os

    return {p.name for p in Path(os.environ["SCAPP_RUNS_DIR"]).iterdir()}


def test_wrong_file_type_on_data_and_annotate_pages(app, tmp_path):
    doc = tmp_path / "results.pdf"
    doc.write_bytes(b"%PDF-1.4 not cells")
    app.run()
    app.text_input(key="data-path").set_value(str(doc)).run()
    assert not app.exception and any("results.pdf" in e.value for e in app.error)
    assert any("Supported" in c.value for c in app.caption)  # the supported formats, under the error
    app.switch_page("pages/annotate.py").run()
    app.text_input(key="annotate-path").set_value(str(doc)).run()
    assert not app.exception and any("results.pdf" in e.value for e in app.error)
    assert doc.read_bytes() == b"%PDF-1.4 not cells"


@pytest.mark.parametrize(("obs", "label", "model", "message"), [
    ({"depth": [float(i) for i in range(60)]}, "depth", "sims", "per-cell value"),  # continuous column
    ({"cell_type": ["T"] * 60}, "cell_type", "sims", "single class"),  # one class
    ({"cell_type": ["T", "B"] * 30}, "celltype", "sims", "not in the file"),  # wrong column
    ({"cell_type": ["T", "B"] * 30}, "cell_type", "future", "not available"),  # a method not built yet
])
def test_train_refuses_a_bad_request_before_starting(app, tmp_path, monkeypatch, obs, label, model, message):
    from scapp.models.registry import REGISTRY, Capabilities, ModelSpec

    # a method announced but not built yet, registered for this test only
    monkeypatch.setitem(REGISTRY, "future", ModelSpec(name="future", cls_path=None, title="A future method",
                                                      paper="Nobody, Not yet, 2099", about="Announced.",
                                                      capabilities=Capabilities()))
    path = _write(tmp_path, "bad.h5ad", obs)
    before = _run_folders()
    app.session_state["dataset_path"] = str(path)
    app.session_state["label"] = label
    app.session_state["model"] = model
    app.switch_page("pages/train.py").run()  # straight to Train: the Data page would pick a valid column itself
    app.button(key="train-start").click().run()
    assert not app.exception, app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert _run_folders() == before  # no job started, nothing written or removed


def test_stop_pressed_twice_is_harmless(app):
    import os
    import subprocess

    from scapp import runs

    run = Path(os.environ["SCAPP_RUNS_DIR"]) / "demo-run"
    job = subprocess.Popen(["sleep", "120"])  # stands in for the training process
    try:
        runs.write_status(run, "running", pid=job.pid)
        app.session_state["run_id"] = "demo-run"
        app.run()
        app.switch_page("pages/train.py").run()
        app.button(key="train-stop").click().run()
        assert "Stopping" in app.toast[0].value
        app.button(key="train-stop").click().run()
        assert not app.exception
        assert "Already stopping" in app.toast[0].value
        assert runs.RunStore(run).stop_requested() and runs.RunStore(run).has_weights
    finally:
        job.kill()
        job.wait()


def test_annotate_demo_query_button(app):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.button(key="annotate-demo").click().run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Query cells"] == "1,500"
    import anndata as ad

    from scapp import runs

    genes = runs.RunStore(next(runs.runs_root().iterdir())).genes()  # SIMS's genes: those seen in ≥3 training cells
    q = ad.read_h5ad(REPO / "assets" / "demo_pbmc4k_query.h5ad", backed="r")
    found = len(set(genes) & set(q.var_names))
    assert metrics["Model genes found"] == f"{found:,} / {len(genes):,}" and found > 0.95 * len(genes)


def test_train_refuses_options_of_another_model(app, tmp_path):
    """Advanced settings saved for SIMS (max_epochs) are not sent to logistic regression; a stale option is refused."""
    path = _write(tmp_path, "ok.h5ad", {"cell_type": ["T", "B"] * 30})
    before = _run_folders()
    for k, v in {"dataset_path": str(path), "label": "cell_type", "model": "logreg",
                 "model_overrides": {"max_epochs": 2}, "overrides_model": "logreg"}.items():
        app.session_state[k] = v
    app.switch_page("pages/train.py").run()
    app.button(key="train-start").click().run()
    assert not app.exception
    assert any("Unknown option(s) for LogRegConfig: max_epochs" in e.value for e in app.error)
    assert _run_folders() == before
    app.session_state["overrides_model"] = "sims"  # saved on the Model page while SIMS was chosen
    app.run()
    assert "max_epochs" not in app.markdown[0].value  # the logreg request no longer carries it


# --------------------------------------------------------------------------- Hydra markers


@pytest.fixture(scope="module")
def hydra_run(tmp_path_factory):
    """A tiny Hydra run on the demo data (small ensemble, few epochs): its panels, not its accuracy."""
    import json

    from scapp import cli

    root = tmp_path_factory.mktemp("hydra-runs")
    cfg = root / "hydra.json"
    cfg.write_text(json.dumps({"n_models": 3, "max_epochs": 3, "refine_epochs": 2, "ig_cells_per_class": 15}))
    rc = cli.main(["train", str(REPO / "assets" / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--model", "hydra",
                   "--config", str(cfg), "--out", str(root / "hydra-run"), "--device", "cpu", "--quiet"])
    assert rc == 0
    return root


def test_explore_hydra_run_shows_ig_markers_overlap_and_user_list(hydra_run, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(hydra_run, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.session_state["explore-view-last"] = "Explanations"
    at.switch_page("pages/explore.py").run()
    at.segmented_control(key="explore-view").set_value("Explanations").run()
    assert not at.exception, at.exception
    assert any("Integrated-Gradients markers" in m.value for m in at.markdown)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Model markers vs Wilcoxon markers" in s for s in specs)
    assert any("Smallest and largest classes" in s for s in specs)
    at.text_area(key="explore-user-markers").set_value("B: CD79A, MS4A1, NOTAGENE\nMartians: XYZ").run()
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "Martians" in warnings and "NOTAGENE" in warnings
    ranks = at.dataframe[-1].value
    b = ranks[ranks["class"] == "B"].set_index("gene")
    assert b.loc["CD79A", "rank"] >= 1 and b.loc["MS4A1", "rank"] >= 1
