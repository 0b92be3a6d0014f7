"""AppTest of issue 12's Explore panels for a run whose method denoises (ZiPo): a gene raw vs denoised on the cell
map, library size, zero inflation, first-layer sparsity and gene programs with a gene search. The panels follow the
registry's ``denoises`` capability (the browser version is tests/e2e/test_issue12_zipo.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
DATA = REPO / "tests" / "fixtures" / "pbmc_small.h5ad"
TINY = {"encoder_widths": [64, 32], "latent": 16, "max_epochs": 6, "early_stopping_patience": 6}


@pytest.fixture(scope="module")
def zipo_runs(tmp_path_factory):
    """A labelled and an unlabelled tiny ZiPo run on 291 pbmc cells, and a logistic regression (no denoising)."""
    from scapp import cli

    root = tmp_path_factory.mktemp("issue12-runs")
    cfg = root.parent / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    common = ["--config", str(cfg), "--device", "cpu", "--quiet"]
    assert cli.main(["train", str(DATA), "--model", "logreg", "--label", "cell_type", "--out", str(root / "a-logreg"),
                     "--device", "cpu", "--quiet"]) == 0
    assert cli.main(["train", str(DATA), "--model", "zipo", "--out", str(root / "b-zipo-unlabelled"), *common]) == 0
    assert cli.main(["train", str(DATA), "--model", "zipo", "--label", "cell_type", "--out", str(root / "c-zipo"),
                     *common]) == 0
    return root


@pytest.fixture
def app(zipo_runs, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(zipo_runs, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=180)


def _specs(app) -> list[dict]:
    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def _len(v) -> int:
    """Points in a plotly array, plain or typed (plotly 6 sends numpy arrays as ``{"dtype", "bdata"}``)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return int(np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).size)
    return len(v)


def _title(spec: dict) -> str:
    t = spec["layout"].get("title") or {}
    return t.get("text", "") if isinstance(t, dict) else str(t)


def test_denoising_view_maps_a_gene_raw_and_denoised_and_shows_library_and_zero_inflation(app):
    from scapp import runs
    from scapp.explain.denoised import default_gene

    app.run()
    app.switch_page("pages/explore.py").run()
    assert app.selectbox(key="explore-run").value == "c-zipo"
    views = app.segmented_control(key="explore-view").options
    assert "Denoising" in views and "Gene programs" in views and "Per class" in views  # labelled: it also annotates
    app.segmented_control(key="explore-view").set_value("Denoising").run()
    assert not app.exception, app.exception
    store = runs.RunStore(Path(runs.runs_root()) / "c-zipo")
    first = default_gene(store.denoise_genes())
    box = app.selectbox(key="explore-dn-gene-c-zipo")
    assert box.value == first and len(box.options) == 400
    specs = _specs(app)
    assert len(specs) == 3
    gene_map = specs[0]
    assert gene_map["layout"]["meta"]["gene"] == first
    assert [tr["type"] for tr in gene_map["data"]] == ["scattergl", "scattergl"]
    assert all(_len(tr["x"]) == 291 for tr in gene_map["data"])  # every cell of this small run on both maps
    panels = [a["text"] for a in gene_map["layout"]["annotations"][:2]]
    assert "raw counts" in panels[0] and "denoised" in panels[1] and all(first in p for p in panels)
    assert "Pearson r of the logs" in _title(specs[1]) and specs[1]["layout"]["xaxis"]["type"] == "log"
    assert "Zero inflation per gene" in _title(specs[2]) and specs[2]["layout"]["xaxis"]["type"] == "log"
    # another gene, typed in the box: the map follows
    other = next(g for g in box.options if g != first)
    app.selectbox(key="explore-dn-gene-c-zipo").set_value(other).run()
    assert not app.exception
    assert _specs(app)[0]["layout"]["meta"]["gene"] == other
    # the expected count (1 - z)·l·μ instead of the rate
    app.radio(key="explore-dn-kind").set_value("expected count (1 − z)·l·μ").run()
    assert "(1 − z)" in _specs(app)[0]["layout"]["annotations"][1]["text"]
    # another view and back: the gene and the value chosen are kept
    app.segmented_control(key="explore-view").set_value("Gene programs").run()
    app.segmented_control(key="explore-view").set_value("Denoising").run()
    assert not app.exception
    assert app.selectbox(key="explore-dn-gene-c-zipo").value == other
    back = _specs(app)[0]["layout"]
    assert back["meta"]["gene"] == other and "(1 − z)" in back["annotations"][1]["text"]


def test_gene_programs_view_shows_sparsity_and_finds_the_units_of_a_gene(app):
    from scapp import runs
    from scapp.explain.programs import unit_genes

    app.run()
    app.switch_page("pages/explore.py").run()
    app.segmented_control(key="explore-view").set_value("Gene programs").run()
    assert not app.exception, app.exception
    specs = _specs(app)
    assert "First-layer sparsity" in _title(specs[0]) and "δ = 0.0001" in _title(specs[0])
    assert "Gene program of first-layer unit" in _title(specs[1])
    assert app.radio(key="explore-gp-layer").value == "encoder"  # the paper's programs first
    programs = runs.RunStore(Path(runs.runs_root()) / "c-zipo").gene_programs()
    gene = unit_genes(programs, 5)["gene"].iloc[0]
    app.selectbox(key="explore-gp-search-c-zipo-encoder").set_value(gene).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert 5 in set(table["unit"]) and (table["top_genes"].str.len() > 0).all()
    assert any(gene in m.value and "is in" in m.value for m in app.markdown)
    bar = _specs(app)[1]
    assert gene in bar["data"][0]["y"]  # the unit shown first is one that reads the gene
    app.radio(key="explore-gp-layer").set_value("latent").run()
    assert not app.exception and "latent unit" in _title(_specs(app)[1])


def test_an_unlabelled_denoising_run_opens_without_class_views_and_logreg_has_no_denoising(app):
    app.run()
    app.switch_page("pages/explore.py").run()
    app.selectbox(key="explore-run").set_value("b-zipo-unlabelled").run()
    assert not app.exception, app.exception
    views = app.segmented_control(key="explore-view").options
    assert "Denoising" in views and "Per class" not in views and "Calibration" not in views
    app.segmented_control(key="explore-view").set_value("Denoising").run()
    assert not app.exception, app.exception
    assert len(_specs(app)) == 3
    app.selectbox(key="explore-run").set_value("a-logreg").run()
    assert not app.exception
    views = app.segmented_control(key="explore-view").options
    assert "Denoising" not in views and "Gene programs" not in views


def test_gene_programs_rank_by_contribution_and_a_run_from_before_falls_back_to_weight(app):
    """A new run's bars are contributions (weight × spread), with their meaning on the page; a run written before
    spreads were kept (no ``input_sd`` / ``contribution``) still opens, ranked by weight, and says so."""
    from scapp import runs
    from scapp.explain.programs import CONTRIBUTION_MEANING, WEIGHT_FALLBACK_NOTE

    old = runs.RunStore(Path(runs.runs_root()) / "b-zipo-unlabelled")
    old.write_gene_programs(old.gene_programs().drop(columns=["input_sd", "contribution"]))
    app.run()
    app.switch_page("pages/explore.py").run()
    app.selectbox(key="explore-run").set_value("c-zipo").run()
    app.segmented_control(key="explore-view").set_value("Gene programs").run()
    assert not app.exception, app.exception
    assert any(CONTRIBUTION_MEANING in m.value for m in app.markdown)
    assert not any(WEIGHT_FALLBACK_NOTE in c.value for c in app.caption)
    assert "contribution" in _specs(app)[1]["layout"]["xaxis"]["title"]["text"]
    app.selectbox(key="explore-run").set_value("b-zipo-unlabelled").run()
    assert not app.exception, app.exception
    assert any(WEIGHT_FALLBACK_NOTE in c.value for c in app.caption)
    assert not any(CONTRIBUTION_MEANING in m.value for m in app.markdown)
    assert "contribution" not in _specs(app)[1]["layout"]["xaxis"]["title"]["text"]
