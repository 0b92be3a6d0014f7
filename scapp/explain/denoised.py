"""What the Explore page shows of a run whose method denoises counts (ZiPo): the numbers behind its panels.

* ``cells_input``: the model's input (raw counts of its genes) for chosen training cells, read back from the
  training file (only those rows where the format allows), so one gene can be denoised on the cell map's cells
  with ``scapp.denoise.gene_values`` without reading or denoising the whole file;
* ``default_gene``: a gene worth looking at first; ``sample_positions``: the cells it is denoised in on a big map;
* ``library_view``: predicted vs observed library size, a sample of cells to draw and the correlation over all;
* ``zero_inflation_view``: mean zero-inflation probability per gene beside its mean count;
* ``pruning_view``: the first layer's relative-weight histogram, the threshold and the sparsity reached.

Everything per cell or per gene was written into the run when it finished (``scapp.denoise.summarize``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp.errors import InputError

if TYPE_CHECKING:
    from scapp.annotate import LoadedRun

SAMPLE_CELLS = 20_000
"""Cells drawn in a per-cell scatter: more would not be told apart on screen and slow the browser."""
GENE_MAP_CELLS = 10_000
"""Cells a gene is denoised in for the raw-vs-denoised map (a sample of the map's cells when it has more): the
model runs its whole network over each cell for every gene asked for, 10-30 s for 10,000 cells × 33,000 genes on
2 CPU cores."""
_HOUSEKEEPING = re.compile(r"^(MT-|MT\.|RPL|RPS|MRPL|MRPS|MALAT1$)", re.IGNORECASE)


def cells_input(run: LoadedRun, cell_ids: Any) -> sp.csr_matrix:
    """Raw counts of the run's features (the model's input) for ``cell_ids`` of its training file, in that order.

    Raises ``InputError`` when the file is gone or lacks some of the cells (it changed since training).
    """
    from scapp.explain.cells import _read_cells

    cfg = run.config
    path = Path(cfg.get("data") or "")
    if not path.exists():
        raise InputError(f"The training data {path} is not there any more; genes cannot be denoised on the map.")
    ids = np.asarray(cell_ids).astype(str)
    counts, genes = _read_cells(path, ids, layer=cfg.get("layer"), orientation=cfg.get("orientation") or "auto")
    cols = pd.Index(genes).get_indexer(run.recipe.genes)
    counts = sp.csr_matrix(counts, dtype=np.float32)
    aligned = counts[:, np.maximum(cols, 0)]
    if (cols < 0).any():  # a gene of the model the file lacks: zero
        aligned = aligned.multiply(sp.csr_matrix((cols >= 0).astype(np.float32))).tocsr()
    return sp.csr_matrix(run.recipe.transform(aligned), dtype=np.float32)


def sample_positions(n: int, max_cells: int, *, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` of ``n`` cells, the same ones every time (seeded)."""
    if n <= max_cells:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False))


def default_gene(genes: pd.DataFrame) -> str:
    """The gene the raw-vs-denoised map opens on: the most expressed gene (mean count) that is detected in 10-90 %
    of the cells, leaving out mitochondrial, ribosomal and MALAT1 (ubiquitous): it has zeros for the model to fill
    and cells that express it. Falls back to the most expressed gene."""
    g = genes.dropna(subset=["mean_count"])
    if not len(g):
        return str(genes["gene"].iloc[0])
    ok = g[g["detected_frac"].between(0.1, 0.9) & ~g["gene"].astype(str).str.match(_HOUSEKEEPING)]
    pick = ok if len(ok) else g
    return str(pick.loc[pick["mean_count"].idxmax(), "gene"])


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


@dataclass
class LibraryView:
    """Predicted vs observed library size: ``cells`` (a sample to draw: ``cell_id, split, observed, predicted``),
    ``r_log`` (Pearson r of the logs over ``n_cells`` cells with counts, all of them), per split ``r_log_split``."""

    cells: pd.DataFrame
    r_log: float | None
    r_log_split: dict[str, float | None]
    n_cells: int
    n_empty: int


def library_view(cells: pd.DataFrame, *, max_cells: int = SAMPLE_CELLS, seed: int = 0) -> LibraryView:
    """From the run's per-cell table (``RunStore.denoise_cells()``); cells with no counts cannot sit on a log axis
    and are counted in ``n_empty``."""
    obs = cells["library_observed"].to_numpy(np.float64)
    pred = cells["library_predicted"].to_numpy(np.float64)
    ok = (obs > 0) & (pred > 0) & np.isfinite(pred)
    split = cells["split"].astype(str).to_numpy() if "split" in cells else np.full(len(cells), "all")
    lo, lp = np.log(np.where(ok, obs, 1.0)), np.log(np.where(ok, pred, 1.0))
    per = {str(s): _pearson(lo[ok & (split == s)], lp[ok & (split == s)]) for s in pd.unique(split)}
    idx = np.flatnonzero(ok)
    if idx.size > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_cells, replace=False))
    ids = cells["cell_id"].astype(str).to_numpy()[idx] if "cell_id" in cells else idx.astype(str)
    sample = pd.DataFrame({"cell_id": ids, "split": split[idx], "observed": obs[idx], "predicted": pred[idx]})
    return LibraryView(cells=sample, r_log=_pearson(lo[ok], lp[ok]), r_log_split=per, n_cells=int(ok.sum()),
                       n_empty=int((~ok).sum()))


def zero_inflation_view(genes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``(gene, mean_count, detected_frac, mean_zero_prob)`` of the genes seen in at least one cell (a log axis
    cannot hold the others), and how many genes were left out. Empty when the run's likelihood has no zero
    inflation (all ``mean_zero_prob`` missing)."""
    if "mean_zero_prob" not in genes or genes["mean_zero_prob"].isna().all():
        return pd.DataFrame(columns=["gene", "mean_count", "detected_frac", "mean_zero_prob"]), 0
    seen = genes["mean_count"].to_numpy(np.float64) > 0
    out = genes.loc[seen, ["gene", "mean_count", "detected_frac", "mean_zero_prob"]].reset_index(drop=True)
    return out, int((~seen).sum())


@dataclass
class PruningView:
    """The first layer's weights relative to each neuron's largest |w|, before pruning: histogram in log10 bins
    (``edges`` has one more entry than ``counts``; the first bin also holds everything below it), the threshold
    ``delta``, the fraction of weights set to zero and what pruning cost."""

    edges: np.ndarray
    counts: np.ndarray
    delta: float
    sparsity: float
    genes_per_neuron_median: float | None
    nll_before: float | None
    nll_after: float | None
    rate_mse_before: float | None
    rate_mse_after: float | None


def pruning_view(metrics: dict[str, Any]) -> PruningView | None:
    """From the run's ``metrics.json`` (``fit_info.pruning``, written by the model); None for a run that was not
    pruned (e.g. the DCA-like preset)."""
    p = ((metrics or {}).get("fit_info") or {}).get("pruning")
    if not p or "hist_counts" not in p:
        return None
    counts = np.asarray(p["hist_counts"], np.int64)
    edges = np.asarray(p["hist_log10_edges"], np.float64)
    if edges.size == counts.size:  # the last bin is closed at 0.5 (log10 of 1 is 0, the largest weight)
        edges = np.append(edges, edges[-1] + (edges[-1] - edges[-2] if edges.size > 1 else 0.5))
    return PruningView(edges=edges, counts=counts, delta=float(p["delta"]), sparsity=float(p["sparsity"]),
                       genes_per_neuron_median=p.get("genes_per_neuron_median"), nll_before=p.get("nll_before"),
                       nll_after=p.get("nll_after"), rate_mse_before=p.get("rate_mse_before"),
                       rate_mse_after=p.get("rate_mse_after"))
