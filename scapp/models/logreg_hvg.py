"""Plain logistic regression on log1p-normalized highly variable genes, with HVGs and C chosen on validation.

Issue 10's "strong linear baseline": sklearn's logistic regression on log1p of counts normalized to 1e4
over the top variable genes scored 0.895 macro-F1 on pancreas where the CellTypist-style recipe (all genes,
z-scored) scored 0.853. Rather than fix one gene count and one C, ``fit`` ranks genes once by scanpy's
Seurat-flavour dispersion on the training cells and picks the number of genes and C with the best
validation macro-F1 from a small grid (3 × 3 by default); the chosen pair is refitted and kept. Without
validation cells it uses 2,000 genes and C = 1. Classes are weighted inversely to their size
(``class_weight``), which raised macro-F1 on every dev task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from scapp.models.base import FitData, TrainerAPI
from scapp.models.logreg import LogRegModel


@dataclass
class LogRegHVGConfig:
    """Grid defaults: 1k/2k/4k variable genes (2k is the common choice), C one decade either side of 1."""

    n_genes_grid: list[int] = field(default_factory=lambda: [1000, 2000, 4000])
    C_grid: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    class_weight: str | None = "balanced"
    """"balanced": each class weighted inversely to its training size (sklearn), so rare types count as much as
    common ones in the fit, as they do in macro-F1. Measured on 4 dev tasks × 3 seeds against no weights (issue
    10): pancreas 0.889 → 0.904 macro-F1, bone marrow 0.881 → 0.889, pbmc3k→pbmc4k 0.755 → 0.757, the
    rare-class file 0.830 → 0.845. None: sklearn's default (unweighted)."""
    max_iter: int = 1000
    seed: int = 0


def hvg_order(X: Any) -> np.ndarray:
    """Gene indices from most to least variable (scanpy ``highly_variable_genes``, Seurat flavour, log data)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X.astype(np.float32) if hasattr(X, "astype") else np.asarray(X, np.float32))
    sc.pp.highly_variable_genes(tmp, flavor="seurat", inplace=True)  # we only read the normalized dispersions
    disp = tmp.var["dispersions_norm"].to_numpy(dtype=np.float64)
    return np.argsort(-np.nan_to_num(disp, nan=-np.inf), kind="stable")


class LogRegHVGModel(LogRegModel):
    """Prediction, explanation and weights are ``LogRegModel``'s; only the input and the fit differ."""

    Config: ClassVar[type] = LogRegHVGConfig
    preprocess_defaults: ClassVar[dict[str, Any]] = {}  # log1p of normalized counts, all genes, not scaled

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        from scapp.evaluate.metrics import classification_metrics

        t0 = time.monotonic()
        cfg = self.config
        order = hvg_order(train.X)
        sizes = sorted({min(int(k), self.n_features) for k in cfg.n_genes_grid})
        grid = [(k, C) for k in sizes for C in cfg.C_grid] if len(valid.y) else [(min(2000, self.n_features), 1.0)]
        scores = []
        for k, C in trainer.iterate("choosing genes and C on validation", grid, span=(0.0, 0.9)):
            coef, icpt, _ = self.fit_sklearn(train.X, train.y, C=C, class_weight=cfg.class_weight,
                                             cols=np.sort(order[:k]))
            pred = np.asarray(valid.X @ coef.T + icpt).argmax(1)
            scores.append({"n_genes": k, "C": C,
                           "valid_macro_f1": classification_metrics(valid.y, pred, self.classes)["macro_f1"]})
        if trainer.stopped and not scores:
            return
        best = max(scores, key=lambda s: (s["valid_macro_f1"], -s["n_genes"], -abs(np.log10(s["C"]))))
        self.coef, self.intercept, converged = self.fit_sklearn(train.X, train.y, C=best["C"],
                                                                class_weight=cfg.class_weight,
                                                                cols=np.sort(order[: best["n_genes"]]))
        self.fit_info.update(grid=scores, n_genes=best["n_genes"], C=best["C"], converged=converged)
        self.record_fit(trainer, valid, t0, valid_macro_f1=best["valid_macro_f1"], n_genes=best["n_genes"],
                        C=best["C"], converged=converged)
