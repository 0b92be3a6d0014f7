"""Marker genes: a statistical reference (scanpy ``rank_genes_groups``) and how a model's lists compare.

A model's per-class gene scores (Hydra's Integrated Gradients, SIMS's masks)
are only convincing next to the markers a biologist already trusts. This module
computes the classical differential-expression ranking on the same cells, the
Jaccard overlap of the two top-k lists, the model's "novel" genes (high in its
list, absent from the statistical one) and where a user's own marker list ranks.
All tables are long format (class, rank, gene, score) like a run's marker table (``RunStore.markers()``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import sparse

from scapp.sampling import first_per_group


def marker_table(scores: np.ndarray, classes: list[str], genes: list[str], *, top: int = 100) -> pd.DataFrame:
    """Long table class, rank, gene, score: the top genes of each class by score (what ``RunStore.markers()`` keeps)."""
    k = min(top, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    g = np.asarray(genes, dtype=object)
    return pd.DataFrame({"class": np.repeat(np.asarray(classes, dtype=object), k),
                         "rank": np.tile(np.arange(1, k + 1), len(classes)),
                         "gene": g[order].ravel(),
                         "score": np.take_along_axis(scores, order, 1).ravel()})


def stratified_cells(y: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """At most ``per_class`` random cells of every class (sorted indices), vectorized."""
    y = np.asarray(y)
    return np.sort(first_per_group(y, np.random.default_rng(seed).random(y.size), per_class))


def reference_markers(X_log: sp.spmatrix | np.ndarray, y: np.ndarray, classes: list[str], genes: list[str], *,
                      method: str = "wilcoxon", per_class: int = 1000, top: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """One-vs-rest ``scanpy.tl.rank_genes_groups`` on log-normalized expression.

    At most ``per_class`` cells per class (sampled with ``seed``) keep the test to
    seconds on a million-cell run; classes with fewer than 2 cells are skipped
    (the tests need two). Returns class, rank, gene, score, logfoldchange, pval_adj.
    """
    import anndata as ad
    import scanpy as sc

    idx = stratified_cells(np.asarray(y), per_class, seed=seed)
    yy = np.asarray(y)[idx]
    counts = np.bincount(yy, minlength=len(classes))
    ok = np.flatnonzero(counts >= 2)
    empty = pd.DataFrame(columns=["class", "rank", "gene", "score", "logfoldchange", "pval_adj"])
    if ok.size < 2:
        return empty
    keep = np.isin(yy, ok)
    Xs = X_log[idx[keep]]
    obs = pd.DataFrame({"group": pd.Categorical(np.asarray(classes, dtype=object)[yy[keep]])},
                       index=[str(i) for i in range(int(keep.sum()))])
    a = ad.AnnData(X=sp.csr_matrix(Xs, dtype=np.float32) if sp.issparse(Xs) else np.asarray(Xs, np.float32),
                   obs=obs, var=pd.DataFrame(index=pd.Index([str(g) for g in genes]).astype(str)))
    a.var_names_make_unique()
    a.uns["log1p"] = {"base": None}
    k = min(top, a.n_vars)
    sc.tl.rank_genes_groups(a, "group", method=method, n_genes=k, use_raw=False)
    r = a.uns["rank_genes_groups"]
    frames = []
    for c in r["names"].dtype.names:
        frames.append(pd.DataFrame({"class": c, "rank": np.arange(1, k + 1), "gene": np.asarray(r["names"][c], object),
                                    "score": np.asarray(r["scores"][c], float),
                                    "logfoldchange": np.asarray(r["logfoldchanges"][c], float),
                                    "pval_adj": np.asarray(r["pvals_adj"][c], float)}))
    return pd.concat(frames, ignore_index=True) if frames else empty


def top_genes(table: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Each class's first ``k`` genes of a long marker table (by rank)."""
    t = table.sort_values(["class", "rank"])
    return {str(c): g["gene"].astype(str).head(k).tolist() for c, g in t.groupby("class", sort=False)}


def marker_overlap(model: pd.DataFrame, reference: pd.DataFrame, tops: Iterable[int] = (50, 100, 200)) -> pd.DataFrame:
    """Jaccard index of the model's and the reference's top-k genes, per class and k."""
    rows = []
    for k in tops:
        a, b = top_genes(model, k), top_genes(reference, k)
        for c in a:
            if c not in b:
                continue
            sa, sb = set(a[c]), set(b[c])
            union = sa | sb
            rows.append({"class": c, "top": k, "jaccard": len(sa & sb) / len(union) if union else float("nan"),
                         "shared": len(sa & sb)})
    return pd.DataFrame(rows, columns=["class", "top", "jaccard", "shared"])


def novel_genes(model: pd.DataFrame, reference: pd.DataFrame, *, top: int = 20, reference_top: int = 200
                ) -> pd.DataFrame:
    """Genes in a class's model top-``top`` that the reference does not list in its top ``reference_top``."""
    a, b = top_genes(model, top), top_genes(reference, reference_top)
    rows = [{"class": c, "rank": i + 1, "gene": g} for c, genes in a.items() if c in b
            for i, g in enumerate(genes) if g not in set(b[c])]
    return pd.DataFrame(rows, columns=["class", "rank", "gene"])


def parse_marker_list(text: str) -> dict[str, list[str]]:
    """Parse lines like ``Beta: Ins1, Ins2`` (also ``=`` or a tab; genes split on commas/spaces)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([^:=\t]+)[:=\t](.*)$", line)
        if not m:
            continue
        genes = [g for g in re.split(r"[,;\s]+", m.group(2).strip()) if g]
        if genes:
            out.setdefault(m.group(1).strip(), []).extend(genes)
    return out


def user_marker_ranks(model: pd.DataFrame, markers: dict[str, list[str]]) -> pd.DataFrame:
    """Where each user-given marker ranks in the model's full list for its class (case-insensitive).

    ``rank`` is NaN when the gene is not among the model's features or the class
    is unknown to the model; ``n_ranked`` says how long that class's list is.
    """
    rows = []
    by_class = {str(c).lower(): g for c, g in model.groupby("class")}
    for cls, genes in markers.items():
        t = by_class.get(cls.lower())
        ranks = {} if t is None else dict(zip(t["gene"].astype(str).str.lower(), t["rank"]))
        for g in genes:
            r = ranks.get(g.lower())
            rows.append({"class": cls, "gene": g, "rank": float(r) if r is not None else float("nan"),
                         "n_ranked": 0 if t is None else len(t), "class_known": t is not None})
    return pd.DataFrame(rows, columns=["class", "gene", "rank", "n_ranked", "class_known"])


def dotplot_data(
    X_log: np.ndarray | sparse.spmatrix | sparse.sparray,
    labels: Sequence | np.ndarray | pd.Series,
    genes: Sequence[str],
    selected_genes: Sequence[str],
    *,
    classes: Sequence[str] | None = None,
    threshold: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean expression and fraction of expressing cells per class, for a few genes.

    The numbers behind :func:`expression_dotplot`. Computed as products of a
    sparse classes × cells indicator matrix with the selected columns, so cost
    grows with the non-zeros, not with a loop over cells.

    Parameters
    ----------
    X_log
        cells × genes, dense or scipy sparse (log-normalised expression).
    labels
        One class per cell; missing labels are left out.
    genes
        Names of the columns of ``X_log`` (the first of duplicated names is used).
    selected_genes
        Genes to aggregate, in the output column order.
    classes
        Row order (classes absent from ``labels`` give NaN rows); default: the categories
        of a categorical ``labels``, else sorted unique labels.
    threshold
        A cell expresses a gene when its value is above this (≥ 0).

    Returns
    -------
    mean_df, frac_df
        classes × selected genes: mean over all cells of the class, and the fraction of
        cells with a value above ``threshold``.

    Raises
    ------
    KeyError
        When a selected gene is not in ``genes``.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0 (zeros are never expressed), got {threshold}.")
    gene_pos = pd.Index([str(g) for g in genes])
    if len(gene_pos) != X_log.shape[1]:
        raise ValueError(f"{len(gene_pos)} gene names for {X_log.shape[1]} columns of X.")
    first = ~gene_pos.duplicated()
    lookup = pd.Series(np.flatnonzero(first), index=gene_pos[first])
    sel_names = [str(g) for g in selected_genes]
    missing = [g for g in sel_names if g not in lookup.index]
    if missing:
        raise KeyError(f"Genes not in the data: {', '.join(missing[:10])}" + (" …" if len(missing) > 10 else ""))
    cols = lookup.loc[sel_names].to_numpy()

    lab = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels, dtype=object))
    if len(lab) != X_log.shape[0]:
        raise ValueError(f"{len(lab)} labels for {X_log.shape[0]} cells.")
    if classes is None:
        if isinstance(lab.dtype, pd.CategoricalDtype):
            classes = [str(c) for c in lab.cat.categories]
        else:
            classes = sorted({str(v) for v in pd.unique(lab.dropna())})
    classes = [str(c) for c in classes]
    ok = lab.notna().to_numpy()
    code = pd.Categorical(lab.astype(object).where(lab.notna(), None).astype(str), categories=classes).codes
    ok &= code >= 0
    rows = np.flatnonzero(ok)
    G = sparse.csr_matrix(
        (np.ones(rows.size, dtype=np.float64), (code[rows], rows)), shape=(len(classes), X_log.shape[0])
    )
    n_per = np.asarray(G.sum(axis=1)).ravel()
    if sparse.issparse(X_log):
        Xs = sparse.csc_matrix(X_log)[:, cols].astype(np.float64)
        E = Xs.copy()
        E.data = (E.data > threshold).astype(np.float64)
        sums = np.asarray((G @ Xs).todense())
        expr = np.asarray((G @ E).todense())
    else:
        Xd = np.asarray(X_log)[:, cols].astype(np.float64)
        sums = np.asarray(G @ Xd)
        expr = np.asarray(G @ (Xd > threshold).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n_per[:, None]
        frac = expr / n_per[:, None]
    mean[n_per == 0] = np.nan
    frac[n_per == 0] = np.nan
    idx = pd.Index(classes, name="class")
    cols_idx = pd.Index(sel_names, name="gene")
    return pd.DataFrame(mean, index=idx, columns=cols_idx), pd.DataFrame(frac, index=idx, columns=cols_idx)
