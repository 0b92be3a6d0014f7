"""% mitochondrial counts per cell and the gene-selection note of the Data page's QC (issue 11, build beyond)."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scapp.data import qc_summary
from scapp.data.qc import gene_subset_note, mito_percent


def _adata(genes: list[str], X: np.ndarray, **obs) -> anndata.AnnData:
    a = anndata.AnnData(sparse.csr_matrix(X.astype(np.float32)), var=pd.DataFrame(index=genes))
    a.obs_names = [f"c{i}" for i in range(X.shape[0])]
    for k, v in obs.items():
        a.obs[k] = v
    return a


def test_mito_percent_by_hand_on_human_and_mouse_names():
    X = np.array([[10, 5, 5, 0],  # 5 of 20 counts mitochondrial: 25 %
                  [0, 3, 0, 1],  # 4 of 4: 100 %
                  [0, 0, 0, 0]])  # no counts: NaN, not 0
    for genes in (["ACTB", "MT-CO1", "CD3E", "MT-ND1"], ["Actb", "mt-Co1", "Cd3e", "mt-Nd1"]):
        m = mito_percent(_adata(genes, X))
        assert m is not None and m.source == "genes" and m.genes == [genes[1], genes[3]]
        assert m.pct[0] == pytest.approx(25.0) and m.pct[1] == pytest.approx(100.0) and np.isnan(m.pct[2])
        assert "2 mitochondrial genes" in m.note and "underestimated" in m.note


def test_mito_percent_prefers_the_files_own_column_and_reads_fractions_as_fractions():
    X = np.array([[10, 5], [10, 0]])
    seurat = mito_percent(_adata(["ACTB", "MT-CO1"], X, **{"percent.mt": [4.0, 0.5]}))
    assert seurat.source == "percent.mt" and list(seurat.pct) == [4.0, 0.5]  # Seurat stores percent
    old_scanpy = mito_percent(_adata(["ACTB", "CD3E"], X, percent_mito=[0.04, 0.005]))
    assert old_scanpy.source == "percent_mito" and np.allclose(old_scanpy.pct, [4.0, 0.5])  # a fraction


def test_no_mito_genes_or_transformed_values_give_none_and_the_summary_says_why():
    X = np.array([[10, 5], [10, 1]])
    assert mito_percent(_adata(["ACTB", "CD3E"], X)) is None
    q = qc_summary(_adata(["ACTB", "CD3E"], X))
    assert q.pct_mito is None and "No mitochondrial genes" in q.mito_note
    logged = _adata(["ACTB", "MT-CO1"], np.log1p(X * 1.3))
    assert mito_percent(logged) is None
    assert "needs counts" in qc_summary(logged).mito_note


def test_ensembl_ids_use_a_symbol_column():
    a = _adata(["ENSG00000075624", "ENSG00000198804"], np.array([[10, 10], [30, 10]]))
    a.var["gene_symbols"] = ["ACTB", "MT-CO1"]
    m = mito_percent(a)
    assert m is not None and m.genes == ["MT-CO1"] and np.allclose(m.pct, [50.0, 25.0])


def test_the_demo_uses_its_own_percent_mt_and_is_called_a_gene_selection(assets: Path):
    a = anndata.read_h5ad(assets / "demo_pbmc3k.h5ad")
    q = qc_summary(a)
    assert q.pct_mito["median"] == pytest.approx(float(np.median(a.obs["percent.mt"])))
    assert "percent.mt" in q.mito_note
    note = q.gene_subset_note
    assert note.startswith("This file holds 2,000 genes, probably a selection of variable genes")
    assert "nCount_RNA" in note and "2,213" in note  # the file's own depth against the depth of its 2,000 genes
    # the query (3,000 genes, no percent column): computed from its 3 mitochondrial genes, with the caveat
    qry = qc_summary(anndata.read_h5ad(assets / "demo_pbmc4k_query.h5ad"))
    assert "3 mitochondrial genes" in qry.mito_note and qry.pct_mito["median"] > 0
    assert qry.to_dict()["pct_mito"]["median"] == pytest.approx(qry.pct_mito["median"])  # JSON-ready


def test_no_subset_note_for_a_whole_transcriptome():
    a = anndata.AnnData(sparse.random(5, 6000, density=0.01, format="csr", random_state=0))
    assert gene_subset_note(a) == ""
    small = anndata.AnnData(sparse.random(5, 2000, density=0.01, format="csr", random_state=0))
    assert "2,000 genes" in gene_subset_note(small)
