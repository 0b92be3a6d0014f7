"""qc_summary / detect_input_kind / label_candidates on real counts and their transforms.

Real cells come from the demo assets (PBMC 4k query, PBMC 3k with Seurat's log-normalized values rebuilt bit for
bit); only the checks on the Seurat tutorial's own obs columns need the shared ``pbmc3k_seurat_hvg2000.h5ad``.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from scapp.data import QCSummary, detect_input_kind, qc_summary
from scapp.data.qc import label_candidates


@pytest.fixture(scope="module")
def pbmc4k_small(assets: Path) -> anndata.AnnData:
    """300 real cells × 2,000 most-expressed genes of the pbmc4k demo query, integer counts."""
    full = anndata.read_h5ad(assets / "demo_pbmc4k_query.h5ad")
    cells = np.linspace(0, full.n_obs - 1, 300).astype(int)
    totals = np.asarray(full.X.sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-totals, kind="stable")[:2000])
    a = full[cells, genes].copy()
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    return a


def seurat_lognorm(counts: sparse.csr_matrix, n_count_rna: np.ndarray) -> sparse.csr_matrix:
    """Seurat's LogNormalize, ``log1p(x / nCount_RNA * 1e4)`` with totals over *all* genes (float32)."""
    X = sparse.csr_matrix(sparse.diags(1e4 / np.asarray(n_count_rna, dtype=np.float64)) @ counts)
    X.data = np.log1p(X.data)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def pbmc3k(assets: Path) -> anndata.AnnData:
    """All 2,638 pbmc3k cells from the demo asset, with the shared file's ``lognorm_original`` layer rebuilt.

    The shared file's counts were rebuilt exactly from Seurat's values, so Seurat's values come back exactly from the
    counts and ``nCount_RNA`` (``test_rebuilt_lognorm_equals_the_shared_files_layer`` checks it where it can).
    """
    a = anndata.read_h5ad(assets / "demo_pbmc3k.h5ad")
    a.layers["lognorm_original"] = seurat_lognorm(a.X, a.obs["nCount_RNA"].to_numpy())
    return a


@pytest.fixture(scope="module")
def pbmc3k_seurat(shared_file) -> anndata.AnnData:
    """The shared pbmc3k file with every obs column of the Seurat tutorial (clusters, UMAP, orig.ident)."""
    return anndata.read_h5ad(shared_file("pbmc3k_seurat_hvg2000.h5ad"))


def test_rebuilt_lognorm_equals_the_shared_files_layer(pbmc3k, pbmc3k_seurat):
    assert list(pbmc3k.obs_names) == list(pbmc3k_seurat.obs_names)
    assert (pbmc3k.X != pbmc3k_seurat.X).nnz == 0
    assert (pbmc3k.layers["lognorm_original"] != pbmc3k_seurat.layers["lognorm_original"]).nnz == 0


def test_counts_on_real_counts(pbmc4k_small):
    kind, reason = detect_input_kind(pbmc4k_small.X)
    assert kind == "counts"
    assert "whole numbers" in reason
    qc = qc_summary(pbmc4k_small)
    assert isinstance(qc, QCSummary)
    assert (qc.n_cells, qc.n_genes) == pbmc4k_small.shape
    assert qc.input_kind == "counts"
    assert not qc.has_nan and not qc.has_inf and qc.n_negative == 0
    assert qc.gene_id_kind == "symbol"
    assert list(qc.label_candidates)[:2] == ["cell_type", "cell_type_coarse"]
    dense = pbmc4k_small.X.toarray()
    assert qc.sparsity == pytest.approx(1 - np.count_nonzero(dense) / dense.size)
    totals = dense.sum(axis=1)
    assert qc.counts_per_cell["median"] == pytest.approx(np.median(totals))
    assert qc.counts_per_cell["max"] == pytest.approx(totals.max())
    assert qc.genes_per_cell["min"] == np.count_nonzero(dense, axis=1).min()
    assert not any("raw counts" in w for w in qc.warnings)


def test_dense_and_csc_give_the_same_summary(pbmc4k_small):
    ref = qc_summary(pbmc4k_small).to_dict()
    for X in (pbmc4k_small.X.toarray(), pbmc4k_small.X.tocsc()):
        other = qc_summary(anndata.AnnData(X=X, obs=pbmc4k_small.obs, var=pbmc4k_small.var)).to_dict()
        for key in ("sparsity", "counts_per_cell", "genes_per_cell", "input_kind", "n_empty_cells"):
            assert other[key] == pytest.approx(ref[key]) if key != "input_kind" else other[key] == ref[key]


def test_lognorm_detected(pbmc4k_small):
    a = pbmc4k_small.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    kind, reason = detect_input_kind(a.X)
    assert kind == "lognorm", reason
    qc = qc_summary(a)
    assert any(w.startswith("X looks log-normalized: training needs raw counts") for w in qc.warnings)


def test_lognorm_on_gene_subset_of_real_seurat_values(pbmc3k):
    # Seurat's log-normalized values restricted to 2,000 genes: row sums are not constant.
    kind, reason = detect_input_kind(pbmc3k.layers["lognorm_original"])
    assert kind == "lognorm", reason


def test_warning_points_to_counts_layer(pbmc3k):
    a = anndata.AnnData(X=pbmc3k.layers["lognorm_original"].copy(), layers={"counts": pbmc3k.X.copy()})
    qc = qc_summary(a)
    assert qc.input_kind == "lognorm"
    assert any("layers['counts']" in w for w in qc.warnings)


def test_normalized_without_log(pbmc4k_small):
    a = pbmc4k_small.copy()
    sc.pp.normalize_total(a, target_sum=1e6)
    kind, reason = detect_input_kind(a.X)
    assert kind == "normalized" and "same total" in reason


def test_ambient_corrected_counts_are_normalized(pbmc4k_small):
    X = pbmc4k_small.X.copy()
    X.data[::10] = X.data[::10] - 0.37  # a share of values corrected to non-integers
    kind, reason = detect_input_kind(X)
    assert kind == "normalized" and "corrected counts" in reason


def test_scaled_detected(pbmc4k_small):
    a = pbmc4k_small.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.X = a.X.toarray()
    sc.pp.scale(a, max_value=10)
    kind, reason = detect_input_kind(a.X)
    assert kind == "scaled" and "negative" in reason
    qc = qc_summary(a)
    assert qc.n_negative == int((a.X < 0).sum())
    assert any("scaled" in w for w in qc.warnings)


def test_nan_and_inf(pbmc4k_small):
    X = pbmc4k_small.X.copy()
    X.data[5] = np.nan
    X.data[7] = np.inf
    a = anndata.AnnData(X=X)
    kind, reason = detect_input_kind(X)
    assert kind == "invalid" and "NaN" in reason and "infinite" in reason
    qc = qc_summary(a)
    assert qc.has_nan and qc.has_inf
    assert "values contain NaN (1 entry)" in qc.warnings
    d = qc.to_dict()
    json.dumps(d, allow_nan=False)  # non-finite values must not leak into the JSON


def test_empty_cells_and_duplicate_genes(pbmc4k_small):
    a = pbmc4k_small.copy()
    X = a.X.tolil()
    X[[3, 10, 11], :] = 0
    a.X = X.tocsr()
    a.X.eliminate_zeros()
    names = list(a.var_names)
    names[5] = names[4] = names[0]
    names[9] = names[8]
    a.var_names = names
    qc = qc_summary(a)
    assert qc.n_empty_cells == 3
    assert qc.counts_per_cell["min"] == 0
    assert qc.n_duplicate_genes == 3
    assert qc.duplicate_genes_example == [names[0], names[8]]
    assert "3 cells have zero counts" in qc.warnings
    assert any(w.startswith("3 duplicated gene names") for w in qc.warnings)


def test_explicit_zeros_not_counted_as_expressed(pbmc4k_small):
    X = pbmc4k_small.X.copy()
    X.data[X.indptr[0]:X.indptr[1]] = 0  # first cell: stored zeros only
    qc = qc_summary(anndata.AnnData(X=X))
    assert qc.n_empty_cells == 1 and qc.genes_per_cell["min"] == 0


def test_label_candidates_pbmc3k(pbmc3k):
    """The demo asset keeps the labels and three per-cell numbers (nCount_RNA, nFeature_RNA, percent.mt)."""
    cands = label_candidates(pbmc3k)
    assert list(cands) == ["cell_type", "cell_type_coarse"]  # per-cell numbers are never candidates
    ct = cands["cell_type"]
    assert sum(ct.values()) == pbmc3k.n_obs
    assert list(ct.values()) == sorted(ct.values(), reverse=True)
    assert ct["Platelet"] == 14
    assert label_candidates(pbmc3k, max_classes=8).keys() == {"cell_type_coarse"}


def test_label_candidates_pbmc3k_seurat_columns(pbmc3k_seurat):
    cands = label_candidates(pbmc3k_seurat)
    names = list(cands)
    assert names[:2] == ["cell_type", "cell_type_coarse"]
    assert "orig.ident" not in cands  # a single value
    assert "nCount_RNA" not in cands and "UMAP_1" not in cands  # per-cell numbers
    assert "seurat_clusters" in cands  # low-cardinality integers
    ct = cands["cell_type"]
    assert sum(ct.values()) == pbmc3k_seurat.n_obs
    assert list(ct.values()) == sorted(ct.values(), reverse=True)
    assert ct["Platelet"] == 14
    assert label_candidates(pbmc3k_seurat, max_classes=8).keys() == {"cell_type_coarse"}


def test_label_candidates_skip_ids_and_keep_bools():
    obs = pd.DataFrame(
        {
            "barcode": [f"c{i}" for i in range(100)],
            "doublet": [i % 7 == 0 for i in range(100)],
            "annotation": ["T"] * 60 + ["B"] * 40,
        },
        index=[str(i) for i in range(100)],
    )
    a = anndata.AnnData(X=sparse.csr_matrix((100, 3), dtype=np.float32), obs=obs)
    cands = label_candidates(a)
    assert list(cands) == ["annotation", "doublet"]
    assert cands["annotation"] == {"T": 60, "B": 40}


def test_to_dict_round_trips_through_json(pbmc3k):
    qc = qc_summary(pbmc3k, read_info={"format": "h5ad", "notes": ["a note"]})
    d = json.loads(json.dumps(qc.to_dict(), allow_nan=False))
    assert d["input_kind"] == "counts"
    assert d["layers"] == ["lognorm_original"]
    assert d["warnings"][-1] == "a note"
    assert set(d) == set(QCSummary.__dataclass_fields__)


def test_all_zero_and_empty_matrices():
    assert detect_input_kind(sparse.csr_matrix((5, 4), dtype=np.float32))[0] == "invalid"
    assert detect_input_kind(np.zeros((0, 4)))[0] == "invalid"
