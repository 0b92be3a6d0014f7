"""Denoised counts from a run whose method denoises (ZiPo): summaries kept in the run, and a streamed h5ad.

Both walk over the cells in blocks, so the only dense cells × genes arrays ever in memory are one
block's outputs; a 100k-cell whole-transcriptome file is written without holding its denoised matrix.

* ``summarize`` / ``write_run_artifacts`` (called by the training engine for every method declared
  ``denoises``): per cell the observed and predicted library size, mean zero-inflation probability and
  NLL; per gene the mean count, detection rate, mean rate and mean zero-inflation probability; per
  split the NLL, rate-MSE and the library-size correlation; and the method's gene programs.
* ``write_denoised`` (``scapp denoise`` and the Annotate page): a new h5ad with the denoised layers, never
  touching the input. Layers ``scapp_denoised`` (``l·μ``) and, for zero-inflated methods,
  ``scapp_denoised_nonzero`` (``(1 − z)·l·μ``); ``obs`` columns ``scapp_library_observed``,
  ``scapp_library_predicted``, ``scapp_zero_prob_mean``, ``scapp_nll``; ``var`` columns
  ``scapp_mean_rate`` and ``scapp_mean_zero_prob``; the latent in ``obsm['X_scapp_<model>']``; provenance in
  ``uns['scapp_denoise']``. Existing names are never overwritten (a numbered suffix is added).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp import __version__, runs
from scapp.errors import InputError, RunError

if TYPE_CHECKING:
    import anndata as ad

    from scapp.annotate import LoadedRun

BLOCK = 512
"""Cells per block: the outputs of one block are dense (rates, zero probabilities, …)."""
OBS_KEYS = ("scapp_library_observed", "scapp_library_predicted", "scapp_zero_prob_mean", "scapp_nll")


def _free_name(existing: Any, name: str) -> str:
    existing = set(map(str, existing))
    if name not in existing:
        return name
    i = 2
    while f"{name}_{i}" in existing:
        i += 1
    return f"{name}_{i}"


def _csr(X: Any) -> sp.csr_matrix:
    return X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float32))


@dataclass
class Summary:
    """Per-cell and per-gene denoising statistics of a set of cells (see module docstring)."""

    cells: pd.DataFrame
    genes: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def summarize(model: Any, X: Any, *, genes: list[str], groups: np.ndarray | None = None,
              block: int = BLOCK) -> Summary:
    """Walk ``X`` (raw counts, the model's input) in blocks through ``model.denoise_batch``.

    ``groups``: a label per cell (e.g. the split: train / valid / test); metrics are given per group
    and for all cells.
    """
    X = _csr(X)
    n, G = X.shape
    cols = {k: np.full(n, np.nan, np.float32) for k in ("library_observed", "library_predicted",
                                                        "zero_prob_mean", "nll", "rate_sq_err")}
    gsum = {k: np.zeros(G, np.float64) for k in ("count", "detected", "rate", "zero_prob", "rate_nonzero")}
    has_z = False
    for i in range(0, n, block):
        xb = X[i : i + block]
        d = model.denoise_batch(xb)
        dense = xb.toarray()
        s = slice(i, i + xb.shape[0])
        cols["library_observed"][s] = dense.sum(1)
        cols["rate_sq_err"][s] = ((d.rates - dense) ** 2).mean(1)
        if d.library is not None:
            cols["library_predicted"][s] = d.library
        if d.nll is not None:
            cols["nll"][s] = d.nll
        gsum["count"] += dense.sum(0)
        gsum["detected"] += (dense > 0).sum(0)
        gsum["rate"] += d.rates.sum(0)
        if d.zero_prob is not None:
            has_z = True
            cols["zero_prob_mean"][s] = d.zero_prob.mean(1)
            gsum["zero_prob"] += d.zero_prob.sum(0)
            gsum["rate_nonzero"] += ((1 - d.zero_prob) * d.rates).sum(0)
        else:
            gsum["rate_nonzero"] += d.rates.sum(0)
    cells = pd.DataFrame(cols)
    if groups is not None:
        cells.insert(0, "split", np.asarray(groups, dtype=object))
    nn = max(n, 1)
    gdf = pd.DataFrame({"gene": list(genes), "mean_count": gsum["count"] / nn, "detected_frac": gsum["detected"] / nn,
                        "mean_rate": gsum["rate"] / nn, "mean_rate_nonzero": gsum["rate_nonzero"] / nn,
                        "mean_zero_prob": gsum["zero_prob"] / nn if has_z else np.nan})
    metrics: dict[str, Any] = {}
    parts = {"all": np.ones(n, bool)}
    if groups is not None:
        for g in pd.unique(np.asarray(groups, dtype=object)):
            parts[str(g)] = np.asarray(groups, dtype=object) == g
    for name, m in parts.items():
        if not m.any():
            continue
        c = cells[m]
        lo, lp = c["library_observed"].to_numpy(np.float64), c["library_predicted"].to_numpy(np.float64)
        metrics[name] = {
            "n_cells": int(m.sum()),
            "nll": float(np.nanmean(c["nll"])) if c["nll"].notna().any() else None,
            "rate_mse": float(c["rate_sq_err"].mean()),
            "zero_prob_mean": float(c["zero_prob_mean"].mean()) if has_z else None,
            "library_corr": _corr(lo, lp),
            "library_corr_log": _corr(np.log(np.maximum(lo, 1)), np.log(np.maximum(lp, 1e-30))),
        }
    return Summary(cells=cells, genes=gdf, metrics=metrics)


def write_run_artifacts(store: runs.RunStore, model: Any, X: Any, *, genes: list[str], groups: np.ndarray,
                        cell_ids: Any) -> dict[str, Any]:
    """Summaries of every cell of a run (``summarize``), its gene programs, kept in the run; returns the metrics.

    The programs' first-layer genes are ranked by ``weight × sd`` (``sd``: the gene's spread of the encoder input
    over the training cells, ``model.input_sd``; see ``scapp.explain.programs``), and both are kept in the table.
    """
    s = summarize(model, X, genes=genes, groups=groups)
    cells = s.cells
    cells.insert(0, "cell_id", np.asarray(cell_ids).astype(str))
    store.write_denoise_cells(cells)
    store.write_denoise_genes(s.genes)
    train = np.asarray(groups, dtype=object) == "train"
    Xs = _csr(X)
    sd = model.input_sd(Xs[np.flatnonzero(train)] if train.any() else Xs)
    programs = model.gene_programs(list(genes), input_sd=sd)
    if programs is not None:
        store.write_gene_programs(programs)
    return s.metrics


def gene_values(model: Any, X: Any, genes: list[str], gene: str, *, block: int = BLOCK) -> pd.DataFrame:
    """Raw count, denoised rate ``l·μ`` and ``(1 − z)·l·μ`` of one gene in every cell of ``X`` (the model's
    input, raw counts over ``genes``): what a raw-vs-denoised map colours by. Streams over the cells."""
    try:
        j = list(genes).index(gene)
    except ValueError:
        raise InputError(f"Gene {gene!r} is not among the run's {len(genes):,} genes.") from None
    X = _csr(X)
    raw = np.asarray(X[:, j].todense()).ravel().astype(np.float32)
    rate = np.empty(X.shape[0], np.float32)
    nonzero = np.empty(X.shape[0], np.float32)
    for i in range(0, X.shape[0], block):
        d = model.denoise_batch(X[i : i + block])
        s = slice(i, i + d.rates.shape[0])
        rate[s] = d.rates[:, j]
        nonzero[s] = rate[s] if d.zero_prob is None else (1 - d.zero_prob[:, j]) * d.rates[:, j]
    return pd.DataFrame({"raw": raw, "denoised": rate, "denoised_nonzero": nonzero})


# -- the denoised h5ad, streamed ----------------------------------------------------------------------------
def _check_denoises(run: LoadedRun) -> None:
    if not run.spec.capabilities.denoises:
        from scapp.models.registry import REGISTRY

        which = ", ".join(n for n, s in REGISTRY.items() if s.capabilities.denoises and s.available) or "none yet"
        msg = (f"Run {run.run_id} was trained with {run.config['model']}, which does not denoise counts; "
               f"methods that do: {which}.")
        raise RunError(msg)


def write_denoised(run: LoadedRun, adata: ad.AnnData, out: str | os.PathLike, *, layer: str | None = None,
                   genes: str = "model", min_frac: float = 0.5, min_shared: int = 250,
                   block: int = BLOCK) -> dict[str, Any]:
    """Write a copy of ``adata`` with the run's denoised layers to ``out`` (h5ad), block by block.

    ``genes="model"``: the file holds the run's genes (``X`` = the query's raw counts of them, zeros where
    the query lacks one). ``genes="query"``: the file keeps the query's own genes, ``X`` and layers, and
    the denoised layers are NaN for genes the run does not model. ``adata`` is never modified. Returns
    what was written (names of the layers and columns, cells, genes, the gene overlap).
    """
    import anndata as ad
    import h5py

    from scapp.data.align import align_genes, match_genes
    from scapp.data.validate import check_counts, get_matrix

    _check_denoises(run)
    if genes not in ("model", "query"):
        raise InputError(f"genes must be 'model' or 'query', not {genes!r}.")
    out = Path(out)
    X = get_matrix(adata, layer)
    check_counts(X, what="The data to denoise", layer_hint=True)
    counts, report = align_genes(X, adata.var, run.recipe.genes, min_frac=min_frac, min_shared=min_shared)
    Xp = _csr(run.features(counts, adata))  # raw counts of the model's features, CSR
    features = run.recipe.features
    n, G = Xp.shape
    if genes == "model":
        raw = counts if run.recipe.feature_idx is None else counts[:, run.recipe.feature_idx]
        base = ad.AnnData(X=raw, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(features, dtype=str)),
                          obsm=dict(adata.obsm.items()))
        col_map = None
    else:
        base = ad.AnnData(X=adata.X, obs=adata.obs.copy(), var=adata.var.copy(), obsm=dict(adata.obsm.items()),
                          layers=dict(adata.layers.items()), uns=dict(adata.uns.items()))
        idx, _, _ = match_genes(adata.var, features)  # model feature j is query column idx[j] (or -1)
        col_map = idx
    G_out = base.n_vars
    model = run.model
    probe = model.denoise_batch(Xp[: min(2, n)])
    zero_inflated = probe.zero_prob is not None
    names: dict[str, str] = {}
    for key in OBS_KEYS:
        names[key] = _free_name(base.obs.columns, key)
        base.obs[names[key]] = np.full(n, np.nan, np.float32)
    for key in ("scapp_mean_rate", "scapp_mean_zero_prob"):
        names[key] = _free_name(base.var.columns, key)
        base.var[names[key]] = np.full(G_out, np.nan, np.float32)
    latent_key = None
    if probe.latent is not None:
        latent_key = _free_name(base.obsm.keys(), f"X_scapp_{run.config['model']}")
        base.obsm[latent_key] = np.zeros((n, probe.latent.shape[1]), np.float32)
    layer_names = {"rates": _free_name(base.layers.keys(), "scapp_denoised")}
    if zero_inflated:
        layer_names["rates_nonzero"] = _free_name(base.layers.keys(), "scapp_denoised_nonzero")
    info = {"run_id": run.run_id, "model": run.config["model"], "scapp_version": __version__,
            "layers": list(layer_names.values()), "obs_columns": [names[k] for k in OBS_KEYS],
            "genes": genes, "n_model_genes": G,
            "gene_overlap": {k: v for k, v in report.to_dict().items() if v is not None}}
    base.uns[_free_name(base.uns.keys(), "scapp_denoise")] = info

    def write(tmp: str) -> None:
        base.write_h5ad(tmp)
        with h5py.File(tmp, "r+") as f:
            grp = f["layers"]
            chunks = (max(1, min(block, n)), max(1, min(G_out, 4096)))
            dsets = {}
            for k, name in layer_names.items():
                dsets[k] = grp.create_dataset(name, shape=(n, G_out), dtype="float32", chunks=chunks)
                dsets[k].attrs["encoding-type"] = "array"
                dsets[k].attrs["encoding-version"] = "0.2.0"
            lib_obs = np.zeros(n, np.float32)
            lib_pred = np.full(n, np.nan, np.float32)
            zmean = np.full(n, np.nan, np.float32)
            nll = np.full(n, np.nan, np.float32)
            lat = None if latent_key is None else np.zeros((n, probe.latent.shape[1]), np.float32)
            rate_sum = np.zeros(G, np.float64)
            z_sum = np.zeros(G, np.float64)
            for i in range(0, n, block):
                xb = Xp[i : i + block]
                d = model.denoise_batch(xb)
                s = slice(i, i + xb.shape[0])
                lib_obs[s] = np.asarray(xb.sum(1)).ravel()
                if d.library is not None:
                    lib_pred[s] = d.library
                if d.nll is not None:
                    nll[s] = d.nll
                if lat is not None and d.latent is not None:
                    lat[s] = d.latent
                rate_sum += d.rates.sum(0)
                blocks = {"rates": d.rates}
                if zero_inflated:
                    zmean[s] = d.zero_prob.mean(1)
                    z_sum += d.zero_prob.sum(0)
                    blocks["rates_nonzero"] = (1 - d.zero_prob) * d.rates
                for k, v in blocks.items():
                    if col_map is None:
                        dsets[k][s] = v.astype(np.float32, copy=False)
                    else:
                        full = np.full((v.shape[0], G_out), np.nan, np.float32)
                        hit = col_map >= 0
                        full[:, col_map[hit]] = v[:, hit]
                        dsets[k][s] = full
            obs = f["obs"]
            for key, vals in (("scapp_library_observed", lib_obs), ("scapp_library_predicted", lib_pred),
                              ("scapp_zero_prob_mean", zmean), ("scapp_nll", nll)):
                obs[names[key]][...] = vals
            var = f["var"]
            for key, vals in (("scapp_mean_rate", rate_sum / max(n, 1)),
                              ("scapp_mean_zero_prob", z_sum / max(n, 1) if zero_inflated else None)):
                if vals is None:
                    continue
                if col_map is None:
                    var[names[key]][...] = vals.astype(np.float32)
                else:
                    full = np.full(G_out, np.nan, np.float32)
                    hit = col_map >= 0
                    full[col_map[hit]] = vals[hit]
                    var[names[key]][...] = full
            if lat is not None:
                f["obsm"][latent_key][...] = lat

    if out.resolve() in {Path(p).resolve() for p in [getattr(adata, "filename", None)] if p}:
        raise InputError("The output path is the input file itself; scapp never overwrites its input.")
    runs.write_atomic(out, write)
    return {"path": str(out.resolve()), "n_cells": n, "n_genes": G_out, "layers": list(layer_names.values()),
            "obs": {k: names[k] for k in OBS_KEYS},
            "var": {k: names[k] for k in ("scapp_mean_rate", "scapp_mean_zero_prob")}, "obsm": latent_key,
            "overlap": report}
