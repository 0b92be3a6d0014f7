"""The preprocessing recipe (methods.md §0), fitted on training cells and stored with the model.

A ``Recipe`` is learned once from the training split and then applied, unchanged,
to every cell the model ever sees: validation, test and every query. It holds the
gene order, so alignment and normalization always happen over the same genes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from scapp.errors import ConfigError


@dataclass
class PreprocessConfig:
    """How raw counts become model input (defaults: methods.md §0)."""

    min_gene_frac: float | None = None
    """Drop genes detected in fewer than this fraction of training cells (Hydra: 0.01, i.e. ≥99% zeros)."""
    min_gene_cells: int | None = None
    """Drop genes detected in fewer than this many training cells (scanpy's ``filter_genes(min_cells=3)``): a gene
    seen in one or two cells cannot be learned from, and a whole transcriptome holds thousands of them (pbmc4k:
    18,499 of its 33,694 genes are in fewer than 3 cells)."""
    target_sum: float = 1e4
    """``normalize_total`` target per cell."""
    log1p: bool = True
    n_top_genes: int | None = None
    """Keep only this many highly variable genes (None: all genes)."""
    scale: bool = False
    """Per-gene standardization with training mean/std, clipped at ±``clip``."""
    clip: float = 10.0
    output: str = "log1p"
    """What the model reads: ``log1p`` (normalized log expression, scaled when ``scale``) or ``counts`` (the raw
    counts of the selected genes, for methods with a count likelihood; gene selection still uses log data)."""

    def __post_init__(self) -> None:
        if self.output not in ("log1p", "counts"):
            msg = f"preprocess output must be 'log1p' or 'counts', not {self.output!r}."
            raise ConfigError(msg)
        if self.output == "counts" and self.scale:
            msg = "Raw-count input cannot be scaled; set scale to false."
            raise ConfigError(msg)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            msg = f"Unknown preprocessing option(s): {', '.join(sorted(unknown))}."
            raise ConfigError(msg)
        return cls(**d)


def _as_csr(X: Any) -> sp.csr_matrix:
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return sp.csr_matrix(np.asarray(X, dtype=np.float32))


def normalize_log(X: Any, *, target_sum: float = 1e4, log1p: bool = True) -> sp.csr_matrix:
    """Counts → ``log1p(counts / total * target_sum)`` as CSR float32.

    Same result as ``sc.pp.normalize_total(target_sum=...)`` + ``sc.pp.log1p``
    (tested), done on a bare matrix so queries need no AnnData copy. Cells with
    zero total stay all-zero.
    """
    X = _as_csr(X).copy()
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    X.data *= np.repeat(scale, np.diff(X.indptr)).astype(np.float32)
    if log1p:
        np.log1p(X.data, out=X.data)
    return X


def _hvg_indices(X_log: sp.csr_matrix, n_top: int) -> np.ndarray:
    """Top ``n_top`` highly variable genes (scanpy's Seurat flavor on log data)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X_log)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat", inplace=True)
    return np.flatnonzero(tmp.var["highly_variable"].to_numpy())


@dataclass
class Recipe:
    """A fitted preprocessing recipe: genes, which of them are features, and scaling stats."""

    config: PreprocessConfig
    genes: list[str]
    """Genes the query is aligned to and normalized over, in model order."""
    feature_idx: np.ndarray | None = None
    """Indices into ``genes`` that the model reads (None: all)."""
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    dropped_genes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        if self.feature_idx is None:
            return list(self.genes)
        return [self.genes[i] for i in self.feature_idx]

    @classmethod
    def fit(cls, counts: Any, genes: list[str], config: PreprocessConfig, *, train_idx: np.ndarray) -> Recipe:
        """Learn gene filter, HVGs and scaling from the training cells only."""
        X = _as_csr(counts)[train_idx]
        genes = list(genes)
        notes: list[str] = []
        keep = np.arange(X.shape[1])
        if config.min_gene_frac or config.min_gene_cells:
            detected = np.bincount(X.indices[X.data > 0], minlength=X.shape[1])  # explicit zeros don't count
            need = max(config.min_gene_frac * X.shape[0] if config.min_gene_frac else 0, config.min_gene_cells or 0)
            keep = np.flatnonzero(detected >= need)
            if keep.size == 0:
                msg = "No gene passes the detection filter; lower min_gene_frac / min_gene_cells."
                raise ConfigError(msg)
            rule = " and ".join(r for r in (f"≥{config.min_gene_frac:.0%} of training cells" if config.min_gene_frac
                                            else "", f"≥{config.min_gene_cells} training cells"
                                            if config.min_gene_cells else "") if r)
            if keep.size < X.shape[1]:
                notes.append(f"kept {keep.size:,} of {X.shape[1]:,} genes detected in {rule}")
        dropped = X.shape[1] - keep.size
        X = X[:, keep]
        genes = [genes[i] for i in keep]
        recipe = cls(config=config, genes=genes, dropped_genes=int(dropped), notes=notes)
        X_log = normalize_log(X, target_sum=config.target_sum, log1p=config.log1p)
        if config.n_top_genes and config.n_top_genes < len(genes):
            recipe.feature_idx = _hvg_indices(X_log, config.n_top_genes)
            X_log = X_log[:, recipe.feature_idx]
            notes.append(f"selected {config.n_top_genes:,} highly variable genes")
        if config.scale:
            mean = np.asarray(X_log.mean(axis=0)).ravel()
            sq = np.asarray(X_log.multiply(X_log).mean(axis=0)).ravel()
            std = np.sqrt(np.maximum(sq - mean**2, 0))
            std[std == 0] = 1.0  # constant genes: centred, not blown up
            recipe.mean, recipe.std = mean.astype(np.float32), std.astype(np.float32)
        return recipe

    def transform(self, counts_aligned: Any) -> sp.csr_matrix | np.ndarray:
        """Counts already aligned to ``self.genes`` → model input (CSR, or dense when scaled)."""
        X = _as_csr(counts_aligned)
        if X.shape[1] != len(self.genes):
            msg = f"Expected {len(self.genes)} aligned genes, got {X.shape[1]}; align the query first."
            raise ValueError(msg)
        if self.config.output == "counts":
            return X if self.feature_idx is None else X[:, self.feature_idx]
        X = normalize_log(X, target_sum=self.config.target_sum, log1p=self.config.log1p)
        if self.feature_idx is not None:
            X = X[:, self.feature_idx]
        if self.mean is None:
            return X
        out = X.toarray()
        out -= self.mean
        out /= self.std
        np.clip(out, -self.config.clip, self.config.clip, out=out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "n_genes": len(self.genes),
            "feature_idx": None if self.feature_idx is None else self.feature_idx.tolist(),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
            "dropped_genes": self.dropped_genes,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], genes: list[str]) -> Recipe:
        if d["n_genes"] != len(genes):
            msg = f"the preprocessing recipe expects {d['n_genes']} genes but the gene list has {len(genes)}"
            raise ValueError(msg)
        arr = lambda v, t: None if v is None else np.asarray(v, dtype=t)  # noqa: E731
        return cls(
            config=PreprocessConfig.from_dict(d["config"]),
            genes=list(genes),
            feature_idx=arr(d.get("feature_idx"), np.int64),
            mean=arr(d.get("mean"), np.float32),
            std=arr(d.get("std"), np.float32),
            dropped_genes=int(d.get("dropped_genes", 0)),
            notes=list(d.get("notes", [])),
        )
