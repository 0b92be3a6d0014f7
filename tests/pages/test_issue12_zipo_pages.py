"""AppTest of ZiPo on the Train and Annotate pages (issue 12): its NLL and rate-MSE curves, the denoised layers in
the downloaded h5ad (equal to ``scapp denoise``'s), and a run trained without labels used for denoising only."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import anndata as ad
import numpy as np
import plotly.io
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
QUERY = REPO / "assets" / "demo_pbmc4k_query.h5ad"
TINY = {"encoder_widths": [64, 32], "latent": 16, "max_epochs": 3, "early_stopping_patience": 3}


@pytest.fixture(scope="module")
def zipo_runs(tmp_path_factory):
    """Two tiny ZiPo runs on the demo (a few seconds each): one with labels, one without."""
    from scapp import cli

    root = tmp_path_factory.mktemp("zipo-runs")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    for name, label in (("zipo-lab", ["--label", "cell_type"]), ("zipo-unlab", [])):
        rc = cli.main(["train", str(DEMO), "--model", "zipo", *label, "--config", str(cfg),
                       "--out", str(root / name), "--device", "cpu", "--quiet"])
        assert rc == 0
    return root


@pytest.fixture
def downloads(monkeypatch):
    """The data callables of the page's download buttons, by file name: calling one is what a click does."""
    grabbed: dict[str, object] = {}
    orig = MediaFileManager.add_deferred

    def spy(self, fn, mimetype, coordinates, file_name=None, **kw):
        grabbed[file_name] = fn
        return orig(self, fn, mimetype, coordinates, file_name=file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return grabbed


@pytest.fixture
def app(zipo_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(zipo_runs))
    monkeypatch.setenv("SCAPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=120)


def _values(v) -> np.ndarray:
    """A trace's array as sent to the browser (plotly sends numpy arrays base64-encoded)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _h5ad(fn) -> ad.AnnData:
    return ad.read_h5ad(io.BytesIO(fn()))


def _denoised_by_cli(run: Path, tmp_path: Path) -> ad.AnnData:
    from scapp import cli

    out = tmp_path / "cli-denoised.h5ad"
    assert cli.main(["denoise", str(run), str(QUERY), "--genes", "query", "--out", str(out), "--device", "cpu"]) == 0
    return ad.read_h5ad(out)


def test_train_page_draws_zipo_nll_and_rate_mse_curves(app):
    app.session_state["run_id"] = "zipo-lab"
    app.run()
    app.switch_page("pages/train.py").run()
    assert not app.exception, app.exception
    fig = plotly.io.from_json(app.get("plotly_chart")[0].proto.spec)
    assert {"train_nll", "valid_nll", "train_rate_mse", "valid_rate_mse", "train_zero_prob", "lr"} <= {
        t.meta for t in fig.data}
    titles = {a.text for a in fig.layout.annotations}
    assert {"Negative log-likelihood (NLL)", "Rate error (MSE)"} <= titles
    assert "Validation metrics" not in titles  # no accuracy per epoch: the latent classifier is fitted after
    assert {len(_values(t.x)) for t in fig.data} == {3}  # a point per epoch
    assert any("Negative log-likelihood" in c.value for c in app.caption)  # what the curves mean


def test_annotate_adds_the_denoised_layers_to_the_downloaded_h5ad(app, downloads, zipo_runs, tmp_path):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.selectbox(key="annotate-run").set_value("zipo-lab").run()
    app.button(key="annotate-demo").click().run()
    app.button(key="annotate-go").click().run()
    assert not app.exception, app.exception
    plain = _h5ad(downloads["demo_pbmc4k_query-scapp.h5ad"])
    assert "scapp_label" in plain.obs and not len(plain.layers)  # off by default: the file stays small
    box = app.checkbox(key="annotate-denoised-zipo-lab")
    assert box.label == "Add denoised counts (layers scapp_denoised, scapp_denoised_nonzero)"
    box.check().run()
    assert not app.exception, app.exception
    assert any("34 MB" in w.value and "1,500 cells × 3,000 genes × 4 bytes × 2 layers" in w.value for w in app.warning)
    got = _h5ad(downloads["demo_pbmc4k_query-scapp.h5ad"])
    assert got.shape == (1500, 3000)
    assert got.layers["scapp_denoised"].shape == got.layers["scapp_denoised_nonzero"].shape == (1500, 3000)
    assert "scapp_label" in got.obs and "X_scapp_zipo" in got.obsm and "X_scapp_zipo_2" not in got.obsm
    ref = _denoised_by_cli(zipo_runs / "zipo-lab", tmp_path)
    for layer in ("scapp_denoised", "scapp_denoised_nonzero"):
        np.testing.assert_array_equal(got.layers[layer], ref.layers[layer])  # NaN where the run has no such gene
    np.testing.assert_array_equal(got.obsm["X_scapp_zipo"], ref.obsm["X_scapp_zipo"])
    assert (got.X != ad.read_h5ad(QUERY).X).nnz == 0  # the query's own counts


def test_a_zipo_run_without_labels_denoises_on_annotate_and_says_it_cannot_label(app, downloads, zipo_runs,
                                                                                 tmp_path):
    app.run()
    app.switch_page("pages/annotate.py").run()
    app.selectbox(key="annotate-run").set_value("zipo-unlab").run()
    app.button(key="annotate-demo").click().run()
    assert not app.exception, app.exception
    assert any("trained without labels" in i.value and "cannot name the cell types" in i.value for i in app.info)
    assert "annotate-go" not in {b.key for b in app.button}  # nothing to predict
    got = _h5ad(downloads["demo_pbmc4k_query-scapp-denoised.h5ad"])
    ref = _denoised_by_cli(zipo_runs / "zipo-unlab", tmp_path)
    assert got.layers["scapp_denoised"].shape == (1500, 3000)
    np.testing.assert_array_equal(got.layers["scapp_denoised"], ref.layers["scapp_denoised"])
    assert "scapp_label" not in got.obs and "X_scapp_zipo" in got.obsm
