"""Expression of the cells whose explanations a run keeps, so one cell's gene scores can be read beside the
genes' expression in that cell (a mask that looked at a silent gene says something else than one that looked at
a highly expressed one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp.errors import InputError, RunError

if TYPE_CHECKING:
    from scapp.runs import RunStore


def _read_cells(path: Path, cell_ids: np.ndarray, *, layer: str | None, orientation: str) -> tuple[Any, list[str]]:
    """Counts of ``cell_ids`` (cells × genes, in that order) and the file's genes.

    An ``.h5ad`` in cells × genes orientation is read backed (only those rows from disk, whatever the file's
    size); anything else is read whole.
    """
    if path.suffix == ".h5ad" and layer in (None, "", "X") and orientation in ("auto", "cells_x_genes", None):
        import anndata as ad

        a = ad.read_h5ad(path, backed="r")
        try:
            rows = a.obs_names.get_indexer(pd.Index(cell_ids))
            if (rows >= 0).all() and a.obs_names.is_unique:
                order = np.argsort(rows, kind="stable")
                X = a.X[np.sort(rows)]
                X = X.to_memory() if hasattr(X, "to_memory") else X
                back = np.empty_like(order)
                back[order] = np.arange(order.size)
                return (X[back] if sp.issparse(X) else np.asarray(X)[back]), a.var_names.astype(str).tolist()
        finally:
            a.file.close()
    from scapp.data import load_dataset
    from scapp.data.validate import get_matrix

    adata, _ = load_dataset(path, orientation=orientation or "auto")
    rows = adata.obs_names.get_indexer(pd.Index(cell_ids))
    if (rows < 0).any():
        raise InputError(f"{int((rows < 0).sum()):,} of the explained cells are no longer in {path.name}; the file "
                         "changed since training.")
    return get_matrix(adata, layer)[rows], adata.var_names.astype(str).tolist()


def explained_cells_expression(store: RunStore) -> tuple[sp.csr_matrix, list[str]]:
    """Log-normalised expression (log(1 + counts per 10k), as the run's recipe normalises) of the cells whose
    explanations the run keeps: rows as ``explain()["cell_masks"]``, columns the model's genes.

    Read from the training file (only those cells where the format allows). Raises ``InputError`` when the file
    is gone or changed and ``RunError`` when the run keeps no per-cell explanations.
    """
    from scapp.data.preprocess import Recipe, normalize_log

    ex = store.explain()
    if "cell_index" not in ex:
        raise RunError(f"Run {store.id} keeps no per-cell explanations.")
    cfg = store.config() or {}
    path = Path(cfg.get("data") or "")
    if not path.exists():
        raise InputError(f"The training data {path} is not there any more; the cells' expression cannot be shown.")
    ids = store.predictions(columns=["cell_id"])["cell_id"].astype(str).to_numpy()[ex["cell_index"]]
    counts, genes = _read_cells(path, ids, layer=cfg.get("layer"), orientation=cfg.get("orientation") or "auto")
    recipe = Recipe.from_dict(store.recipe(), store.genes())
    cols = pd.Index(genes).get_indexer(recipe.genes)
    counts = sp.csr_matrix(counts, dtype=np.float32)
    aligned = counts[:, np.maximum(cols, 0)]
    if (cols < 0).any():  # a gene of the model the file lacks: zero
        aligned = aligned.multiply(sp.csr_matrix((cols >= 0).astype(np.float32))).tocsr()
    X = normalize_log(aligned, target_sum=recipe.config.target_sum, log1p=True)
    if recipe.feature_idx is not None:
        X = X[:, recipe.feature_idx]
    return sp.csr_matrix(X), recipe.features
