"""Issue 12, Explore: the numbers behind a denoising run's panels (scapp.explain.denoised / programs) and their
figures (scapp.viz.denoise), on a tiny real ZiPo run (291 pbmc cells × 400 genes, a few epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = {"encoder_widths": [64, 32], "latent": 16, "max_epochs": 6, "early_stopping_patience": 6}


@pytest.fixture(scope="module")
def zipo_run(tmp_path_factory):
    from scapp.cli import main

    root = tmp_path_factory.mktemp("zipo-views")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    run = root / "run"
    assert main(["train", str(FIXTURES / "pbmc_small.h5ad"), "--model", "zipo", "--label", "cell_type",
                 "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def store(zipo_run):
    from scapp import runs

    return runs.RunStore(zipo_run)


def test_cells_input_reads_the_map_cells_raw_counts_in_the_asked_order(zipo_run, store):
    from scapp.annotate import load_run
    from scapp.denoise import gene_values
    from scapp.explain.denoised import cells_input

    r = load_run(zipo_run)
    src = ad.read_h5ad(FIXTURES / "pbmc_small.h5ad")
    ids = store.predictions(columns=["cell_id"])["cell_id"].astype(str).to_numpy()[::-7][:30]  # shuffled order
    X = cells_input(r, ids)
    assert X.shape == (len(ids), len(r.recipe.features))
    want = src[list(ids), r.recipe.features].X
    np.testing.assert_array_equal(X.toarray(), np.asarray(want.todense() if hasattr(want, "todense") else want))
    gene = r.recipe.features[int(np.asarray(X.sum(0)).argmax())]
    v = gene_values(r.model, X, r.recipe.features, gene)  # the values the map colours by
    all_v = gene_values(r.model, src[:, r.recipe.features].X, r.recipe.features, gene)
    rows = src.obs_names.get_indexer(ids)
    np.testing.assert_allclose(v["denoised"], all_v["denoised"].to_numpy()[rows], rtol=1e-5)
    assert (v["denoised_nonzero"] <= v["denoised"] + 1e-6).all()


def test_cells_input_says_when_the_training_file_is_gone(zipo_run):
    from scapp.annotate import load_run
    from scapp.errors import InputError
    from scapp.explain.denoised import cells_input

    r = load_run(zipo_run)
    r.config = {**r.config, "data": str(zipo_run / "gone.h5ad")}
    with pytest.raises(InputError, match="not there any more"):
        cells_input(r, ["x"])


def test_default_gene_is_well_expressed_but_not_everywhere_nor_housekeeping():
    from scapp.explain.denoised import default_gene

    g = pd.DataFrame({"gene": ["MT-CO1", "RPL13", "MALAT1", "FTL", "LYZ", "RARE"],
                      "mean_count": [90.0, 80.0, 70.0, 60.0, 15.0, 0.01],
                      "detected_frac": [0.5, 0.6, 0.7, 0.99, 0.6, 0.01]})
    assert default_gene(g) == "LYZ"
    assert default_gene(g[g["gene"].isin(["FTL", "RARE"])]) == "FTL"  # nothing in range: the most expressed


def test_default_gene_of_the_run_is_one_of_its_genes(store):
    from scapp.explain.denoised import default_gene

    genes = store.denoise_genes()
    g = default_gene(genes)
    row = genes.set_index("gene").loc[g]
    assert 0.1 <= row["detected_frac"] <= 0.9 and row["mean_count"] > genes["mean_count"].median()


def test_library_view_correlates_logs_over_all_cells_and_draws_a_sample(store):
    from scapp.explain.denoised import library_view

    cells = store.denoise_cells()
    lib = library_view(cells)
    assert lib.n_cells == len(cells) == 291 and lib.n_empty == 0
    assert lib.r_log == pytest.approx(store.metrics()["denoise"]["all"]["library_corr_log"], abs=1e-6)
    assert set(lib.r_log_split) == {"train", "valid", "test"} and lib.r_log > 0.5
    small = library_view(cells, max_cells=50)
    assert len(small.cells) == 50 and small.r_log == lib.r_log  # r over all cells, not the sample
    assert set(small.cells.columns) == {"cell_id", "split", "observed", "predicted"}


def test_zero_inflation_view_leaves_out_unseen_genes_and_is_empty_without_zero_inflation(store):
    from scapp.explain.denoised import zero_inflation_view

    genes = store.denoise_genes()
    z, n0 = zero_inflation_view(genes)
    assert len(z) + n0 == len(genes) and (z["mean_count"] > 0).all() and z["mean_zero_prob"].between(0, 1).all()
    none, k = zero_inflation_view(genes.assign(mean_zero_prob=np.nan))  # an NB / Poisson run
    assert none.empty and k == 0


def test_pruning_view_from_the_run_metrics(store):
    from scapp.explain.denoised import pruning_view

    p = store.metrics()["fit_info"]["pruning"]
    pv = pruning_view(store.metrics())
    assert pv.delta == 1e-4 and pv.sparsity == p["sparsity"]
    assert pv.edges.size == pv.counts.size + 1 and pv.counts.sum() == 64 * 400  # every first-layer weight
    assert pruning_view({"fit_info": {}}) is None  # a preset that does not prune (DCA-like)


def test_gene_programs_summary_units_and_search(store):
    from scapp.explain.programs import layers, program_genes, program_summary, unit_genes, units_with_gene

    p = store.gene_programs()
    assert layers(p) == ["encoder", "latent"]
    summ = program_summary(p, "encoder", top=5)
    assert len(summ) == 64 and (summ["n_genes"] <= 50).all()
    first = unit_genes(p, 0, "encoder")
    assert first["rank"].tolist() == list(range(1, len(first) + 1))
    assert summ.loc[0, "top_genes"] == ", ".join(first["gene"].head(5))
    assert (first["contribution"].abs().diff().dropna() <= 1e-6).all()  # strongest first
    gene = first["gene"].iloc[0]
    hits = units_with_gene(p, gene.lower(), "encoder")  # case-insensitive
    assert 0 in set(hits["unit"]) and (hits["share"].diff().dropna() <= 1e-6).all()
    assert hits.set_index("unit").loc[0, "share"] == 1.0  # unit 0's strongest gene
    assert all(gene in tg.split(", ") or r > 8 for tg, r in zip(hits["top_genes"], hits["rank"], strict=True))
    assert units_with_gene(p, "NOT-A-GENE").empty
    genes = program_genes(p, "encoder")
    assert gene in genes and len(genes) == len(set(genes))
    lat = program_summary(p, "latent")
    assert len(lat) == 16


def test_run_ranks_first_layer_genes_by_contribution_and_keeps_weights(store, zipo_run):
    """The table keeps weight, relative weight, the training cells' spread of log1p counts and their product; the
    first layer is ranked by |contribution| and the spread is the real one (training cells only)."""
    from scapp.explain.programs import ranked_by_contribution

    p = store.gene_programs()
    assert ranked_by_contribution(p, "encoder") and not ranked_by_contribution(p, "latent")
    enc = p[p["layer"] == "encoder"]
    np.testing.assert_allclose(enc["contribution"], enc["weight"] * enc["input_sd"], rtol=1e-5, atol=1e-8)
    for _, u in enc.groupby("unit"):
        assert (u.sort_values("rank")["contribution"].abs().diff().dropna() <= 1e-6).all()
    src = ad.read_h5ad(FIXTURES / "pbmc_small.h5ad")
    cells = store.denoise_cells()
    train = cells.loc[cells["split"] == "train", "cell_id"].astype(str).to_numpy()
    X = src[train].X
    X = np.log1p(np.asarray(X.todense() if hasattr(X, "todense") else X, dtype=np.float64))
    sd = pd.Series(X.std(0), index=src.var_names)
    row = enc.iloc[0]
    assert row["input_sd"] == pytest.approx(sd[row["gene"]], rel=1e-4)


def test_a_rare_gene_with_a_big_weight_does_not_outrank_a_spread_gene_with_a_moderate_one():
    """Planted: gene RARE (one count in one cell of 200) carries weight 3, gene SPREAD (0-20 counts everywhere)
    weight 1; by raw weight RARE leads, by contribution SPREAD does; an old table (no contribution) falls back."""
    import torch

    from scapp.explain.programs import ranked_by_contribution, unit_genes, units_with_gene
    from scapp.models.zipo import ZiPoConfig, ZiPoModel
    from scapp.viz.denoise import gene_program_bar

    rng = np.random.default_rng(0)
    X = np.zeros((200, 3), np.float32)
    X[7, 0] = 1  # RARE
    X[:, 1] = rng.integers(0, 21, 200)  # SPREAD
    X[:, 2] = 5  # CONST: no spread at all
    genes = ["RARE", "SPREAD", "CONST"]
    model = ZiPoModel(ZiPoConfig(encoder_widths=(2,), latent=2, max_epochs=1), n_features=3, classes=[])
    with torch.no_grad():
        model.net.first_layer.weight.copy_(torch.tensor([[3.0, 1.0, 2.0], [0.0, -0.5, 0.1]]))
    sd = model.input_sd(sp.csr_matrix(X), block=64)  # streamed in blocks over a sparse matrix
    np.testing.assert_allclose(sd, np.log1p(X.astype(np.float64)).std(0), rtol=1e-9, atol=1e-6)
    old = model.gene_programs(genes)
    new = model.gene_programs(genes, input_sd=sd)
    assert unit_genes(old, 0)["gene"].tolist() == ["RARE", "CONST", "SPREAD"]
    ug = unit_genes(new, 0)
    assert ug["gene"].tolist() == ["SPREAD", "RARE", "CONST"]
    assert ug["relative"].tolist() == pytest.approx([1 / 3, 1.0, 2 / 3])  # the paper's measure is kept
    assert ug["contribution"].iloc[0] == pytest.approx(sd[1]) and abs(ug["contribution"].iloc[2]) < 1e-5
    assert unit_genes(new, 1)["gene"].tolist() == ["SPREAD", "CONST"]  # the pruned (zero) weight is not kept
    assert ranked_by_contribution(new) and not ranked_by_contribution(old)
    hits = units_with_gene(new, "spread")
    assert hits["share"].tolist() == [1.0, 1.0] and "contribution" in hits
    assert "contribution" not in units_with_gene(old, "spread")
    fig = gene_program_bar(ug, unit=0)
    assert list(fig.data[0].y)[::-1] == ["SPREAD", "RARE", "CONST"]
    assert fig.data[0].x[-1] == pytest.approx(sd[1]) and "contribution" in fig.layout.xaxis.title.text
    fig = gene_program_bar(unit_genes(old, 0), unit=0)  # an old run: bars of the weight
    assert list(fig.data[0].x)[::-1] == [3.0, 2.0, 1.0] and "contribution" not in fig.layout.xaxis.title.text


def test_denoise_figures_render_with_data(store):
    from scapp.explain.denoised import library_view, pruning_view, zero_inflation_view
    from scapp.explain.programs import unit_genes
    from scapp.viz.denoise import (
        gene_program_bar,
        gene_raw_vs_denoised,
        library_size_scatter,
        sparsity_histogram,
        zero_inflation_scatter,
    )

    rng = np.random.default_rng(0)
    coords = rng.normal(size=(100, 2))
    raw = rng.poisson(0.5, 100).astype(float)
    fig = gene_raw_vs_denoised(coords, raw, raw + 0.3, gene="LYZ")
    assert len(fig.data) == 2 and all(len(tr.x) == 100 for tr in fig.data)
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(np.log1p(raw.max() + 0.3))
    assert all("LYZ" in a.text for a in fig.layout.annotations[:2])  # both panels named after the gene
    assert fig.layout.yaxis2.scaleanchor == "x2"
    lib = library_view(store.denoise_cells())
    fig = library_size_scatter(lib.cells, r_log=lib.r_log)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert f"{lib.r_log:.3f}" in fig.layout.title.text
    z, _ = zero_inflation_view(store.denoise_genes())
    fig = zero_inflation_scatter(z, highlight=["LYZ"])
    assert fig.layout.xaxis.type == "log" and len(fig.data[0].x) == len(z) and fig.data[1].text == ("LYZ",)
    pv = pruning_view(store.metrics())
    fig = sparsity_histogram(pv.edges, pv.counts, delta=pv.delta, sparsity=pv.sparsity)
    assert f"{pv.sparsity:.1%}" in fig.layout.title.text and sum(fig.data[0].y) == pytest.approx(1.0)
    assert any(s.x0 == -4 for s in fig.layout.shapes)  # δ = 1e-4 marked
    ug = unit_genes(store.gene_programs(), 3)
    fig = gene_program_bar(ug, unit=3, top=10, highlight=ug["gene"].iloc[2])
    assert list(fig.data[0].y) == ug["gene"].head(10).tolist()[::-1]
    assert sum(w > 0 for w in fig.data[0].marker.line.width) == 1
    low = ug["gene"].iloc[30]  # a searched gene below the top 10: shown last, with its rank
    fig = gene_program_bar(ug, unit=3, top=10, highlight=low)
    assert list(fig.data[0].y) == [f"{low} (#31)", *ug["gene"].head(9).tolist()[::-1]]
    assert fig.data[0].marker.line.width[0] > 0


def test_empty_inputs_give_a_message_not_an_error():
    from scapp.viz.denoise import gene_program_bar, library_size_scatter, zero_inflation_scatter

    empty = pd.DataFrame(columns=["gene", "mean_count", "detected_frac", "mean_zero_prob"])
    assert "no zero inflation" in zero_inflation_scatter(empty).layout.annotations[0].text
    assert library_size_scatter(pd.DataFrame(columns=["observed", "predicted"]), r_log=None).layout.annotations
    assert "reads no gene" in gene_program_bar(pd.DataFrame(columns=["gene", "weight", "relative"]),
                                               unit=2).layout.annotations[0].text


def test_gene_map_sample_is_capped_seeded_and_sorted():
    from scapp.explain.denoised import GENE_MAP_CELLS, sample_positions

    assert sample_positions(50, 100).tolist() == list(range(50))
    a = sample_positions(100_000, GENE_MAP_CELLS)
    assert a.size == GENE_MAP_CELLS and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, sample_positions(100_000, GENE_MAP_CELLS))
