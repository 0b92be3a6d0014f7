"""Recipe, query alignment and splits (methods.md §0)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from scapp.data.align import align_genes, strip_version
from scapp.data.preprocess import PreprocessConfig, Recipe, normalize_log
from scapp.data.split import stratified_split
from scapp.errors import GeneOverlapError


def test_normalize_log_equals_scanpy(pbmc_small):
    ref = pbmc_small.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    ours = normalize_log(pbmc_small.X)
    assert np.allclose(ours.toarray(), ref.X.toarray(), atol=1e-5)


def test_recipe_statistics_come_from_training_cells_only(pbmc_small):
    genes = pbmc_small.var_names.tolist()
    train = np.arange(200)
    r = Recipe.fit(pbmc_small.X, genes, PreprocessConfig(scale=True, min_gene_frac=0.05), train_idx=train)
    X_tr = normalize_log(pbmc_small.X[train][:, [genes.index(g) for g in r.genes]])
    assert np.allclose(r.mean, np.asarray(X_tr.mean(0)).ravel(), atol=1e-5)
    frac_all = np.asarray((pbmc_small.X[train] > 0).sum(0)).ravel() / len(train)
    assert len(r.genes) == int((frac_all >= 0.05).sum())
    out = r.transform(pbmc_small.X[:, [genes.index(g) for g in r.genes]])
    assert np.abs(out).max() <= 10 + 1e-6


def test_recipe_round_trip_json(pbmc_small):
    genes = pbmc_small.var_names.tolist()
    r = Recipe.fit(pbmc_small.X, genes, PreprocessConfig(n_top_genes=500, scale=True), train_idx=np.arange(300))
    r2 = Recipe.from_dict(r.to_dict(), r.genes)
    a = r.transform(pbmc_small.X)
    b = r2.transform(pbmc_small.X)
    assert np.array_equal(a, b) and len(r.features) == 500


def _var(names, **cols):
    return pd.DataFrame(cols, index=pd.Index(names))


def test_align_reorders_fills_missing_and_reports():
    model = ["A", "B", "C", "D"]
    X = sp.csr_matrix(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    out, rep = align_genes(X, _var(["C", "X", "A"]), model, important_genes=["B", "A"], min_shared=1, min_frac=0.25)
    assert out.toarray().tolist() == [[3, 0, 1, 0], [6, 0, 4, 0]]
    assert rep.n_shared == 2 and rep.missing_important == ["B"]


def test_align_handles_ensembl_versions_id_columns_and_case():
    model = ["ENSG00000000001", "ENSG00000000002", "Cd3e"]
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    var = _var(["x", "y", "CD3E"], gene_ids=["ENSG00000000002.4", "ENSG00000000001.1", "zzz"])
    out, rep = align_genes(X, var, model[:2], min_shared=1)
    assert rep.matched_on == "gene_ids" and out.toarray().tolist() == [[0, 1], [1, 0], [0, 0]]
    out, rep = align_genes(X, var, ["Cd3e"], min_shared=1)
    assert rep.n_case_insensitive == 1 and out.toarray()[:, 0].tolist() == [0, 0, 1]
    assert strip_version("ENSMUSG00000000001.3") == "ENSMUSG00000000001"


def test_align_refuses_low_overlap_with_reason():
    model = [f"G{i}" for i in range(1000)]
    X = sp.csr_matrix((5, 300), dtype=np.float32)
    with pytest.raises(GeneOverlapError, match="Only 200 of the model's 1,000 genes"):
        align_genes(X, _var([f"G{i}" for i in range(200)] + [f"Q{i}" for i in range(100)]), model)
    _, rep = align_genes(X, _var([f"G{i}" for i in range(300)]), model, raise_on_low=False)
    assert not rep.ok and "at least 500" not in rep.reason and "50%" in rep.reason


def test_split_is_stratified_seeded_and_keeps_tiny_classes_in_train():
    y = np.repeat([0, 1, 2], [1000, 100, 2])
    s = stratified_split(y, seed=3, class_names=["big", "mid", "tiny"])
    assert len(s.train) + len(s.valid) + len(s.test) == len(y)
    assert len(set(s.train) & set(s.test)) == 0
    assert abs(np.mean(y[s.test] == 0) - 1000 / 1100) < 0.01
    assert (y[s.train] == 2).sum() == 2 and "tiny (2)" in s.notes[0]
    s2 = stratified_split(y, seed=3)
    assert np.array_equal(s.test, s2.test)
    assert not np.array_equal(s.test, stratified_split(y, seed=4).test)
