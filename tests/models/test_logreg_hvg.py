"""The variable-gene logistic regression: scanpy's HVG ranking, and genes and C chosen on validation."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc

from scapp.data.preprocess import normalize_log
from scapp.data.split import stratified_split
from scapp.data.validate import get_labels
from scapp.models.base import FitData
from scapp.models.logreg_hvg import LogRegHVGConfig, LogRegHVGModel, hvg_order
from scapp.train.trainer import Trainer

SMALL = Path(__file__).resolve().parents[1] / "fixtures" / "pbmc_small.h5ad"


def test_hvg_order_is_scanpys_seurat_ranking():
    X = normalize_log(ad.read_h5ad(SMALL).X)
    t = ad.AnnData(X)
    sc.pp.highly_variable_genes(t, flavor="seurat", n_top_genes=120)
    assert set(np.flatnonzero(t.var["highly_variable"])) == set(hvg_order(X)[:120])


def test_grid_is_searched_on_validation_and_the_best_pair_kept():
    a = ad.read_h5ad(SMALL)
    y, classes, _ = get_labels(a, "cell_type")
    split = stratified_split(y, seed=0)
    X = normalize_log(a.X)
    m = LogRegHVGModel(LogRegHVGConfig(n_genes_grid=[50, 200], C_grid=[0.01, 1.0]), n_features=X.shape[1],
                       classes=classes)
    trainer = Trainer()
    m.fit(FitData(X[split.train], y[split.train]), FitData(X[split.valid], y[split.valid]), trainer)
    grid = m.fit_info["grid"]
    assert len(grid) == 4
    best = max(s["valid_macro_f1"] for s in grid)
    assert trainer.history[0]["valid_macro_f1"] == best
    kept = (np.abs(m.coef) > 0).any(0).sum()
    assert kept == m.fit_info["n_genes"]  # coefficients only on the chosen variable genes
    pred = m.predict_logits(X[split.test]).argmax(1)
    assert (pred == y[split.test]).mean() > 0.7
