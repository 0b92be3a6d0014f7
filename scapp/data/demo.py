"""Built-in demo data, a small synthetic factory for tests, and resampling to large sizes."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO_PATH = ASSETS / "demo_pbmc3k.h5ad"
DEMO_LABEL = "cell_type"
DEMO_QUERY_PATH = ASSETS / "demo_pbmc4k_query.h5ad"


def demo_path() -> Path:
    """PBMC 3k (10x Genomics, CC BY 4.0; Seurat-tutorial labels), 2,638 cells × 2,000 genes, raw counts."""
    return DEMO_PATH


def demo_query_path() -> Path:
    """A query to annotate with a model trained on the demo: 1,500 PBMC 4k cells (10x v2, another donor and
    annotator; CC BY 4.0) × 3,000 genes, raw counts, authors' labels in ``obs['cell_type']`` and
    ``obs['cell_type_coarse']``. Built by ``scripts/make_demo_query.py``.
    """
    return DEMO_QUERY_PATH


def resample_cells(adata: ad.AnnData, n_cells: int, *, seed: int = 0, min_keep: float = 0.7) -> ad.AnnData:
    """Draw ``n_cells`` real cells with replacement and thin each one's counts binomially.

    Each drawn cell keeps every UMI with its own probability in ``[min_keep, 1]``
    (binomial thinning), so no two cells are identical but all stay realistic.
    For speed and memory benchmarks only: never judge accuracy on these.
    """
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(adata.X)
    pick = rng.integers(0, adata.n_obs, n_cells)
    sub = X[pick]
    keep = rng.uniform(min_keep, 1.0, n_cells)
    p = np.repeat(keep, np.diff(sub.indptr))
    sub.data = rng.binomial(np.rint(sub.data).astype(np.int64), p).astype(np.float32)
    sub.eliminate_zeros()
    obs = adata.obs.iloc[pick].copy()
    obs.index = pd.Index([f"r{i}_{b}" for i, b in enumerate(adata.obs_names[pick])])
    return ad.AnnData(sub, obs=obs, var=adata.var.copy())


def synthetic(n_cells: int = 300, n_genes: int = 300, n_classes: int = 4, *, seed: int = 0) -> ad.AnnData:
    """Counts with real marker structure: each class over-expresses its own block of genes.

    A model should beat chance after one or two epochs; used by fast unit tests.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_cells)
    base = rng.gamma(0.3, 1.0, n_genes)
    rate = np.tile(base, (n_cells, 1))
    block = max(n_genes // (2 * n_classes), 1)
    for c in range(n_classes):
        rate[y == c, c * block : (c + 1) * block] *= 8
    lib = rng.lognormal(0.0, 0.3, n_cells)[:, None]
    X = rng.poisson(rate * lib).astype(np.float32)
    X[X.sum(1) == 0, 0] = 1
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type {c}" for c in y])},
                       index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(X), obs=obs, var=var)
