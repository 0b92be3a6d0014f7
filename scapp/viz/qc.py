"""Pictures of the input before training: how deep the cells are and how big the classes are.

They answer the first questions about a new dataset (are there empty or
doublet-like cells, is a class too small to learn) without rendering every
cell: histograms are binned in numpy, so a million cells cost a few hundred bars.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scapp.viz._style import REFERENCE_COLOR, fmt_num, style
from scapp.viz.colors import class_colors

__all__ = ["class_sizes_bar", "counts_histograms"]

_BAR_COLOR = "#4C78A8"


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks at 1, 2, 5 × 10^k inside [10^lo, 10^hi], as log10 positions and readable labels."""
    vals, text = [], []
    for k in range(int(np.floor(lo)) - 1, int(np.ceil(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**k
            p = np.log10(v)
            if lo - 1e-9 <= p <= hi + 1e-9:
                vals.append(float(p))
                text.append(fmt_num(v))
    if len(vals) > 9:  # wide range: decades only
        keep = [i for i, t in enumerate(text) if t.lstrip("0.,").startswith("1")]
        vals, text = [vals[i] for i in keep], [text[i] for i in keep]
    return vals, text


def _histogram_panel(
    fig: go.Figure, values: np.ndarray, *, col: int, what: str, log_x: bool, n_bins: int
) -> None:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    axis = "x" if col == 1 else f"x{col}"
    if v.size == 0:
        yref = "y domain" if col == 1 else f"y{col} domain"
        fig.add_annotation(text="no cells", x=0.5, y=0.5, xref=f"{axis} domain", yref=yref, showarrow=False)
        return
    n_zero = int(np.count_nonzero(v <= 0)) if log_x else 0
    data = v[v > 0] if log_x else v
    if data.size == 0:
        log_x, data, n_zero = False, v, 0
    if log_x:
        lo, hi = np.log10(data.min()), np.log10(data.max())
        if hi - lo < 1e-6:
            lo, hi = lo - 0.05, hi + 0.05
        edges_pos = np.linspace(lo, hi, n_bins + 1)
        counts, _ = np.histogram(np.log10(data), bins=edges_pos)
        edges = 10.0**edges_pos
    else:
        edges = np.histogram_bin_edges(data, bins=n_bins)
        counts, _ = np.histogram(data, bins=edges)
        edges_pos = edges
    centers = (edges_pos[:-1] + edges_pos[1:]) / 2
    custom = np.array([[fmt_num(round(a, 1)), fmt_num(round(b, 1))] for a, b in zip(edges[:-1], edges[1:])])
    fig.add_trace(
        go.Bar(
            x=centers, y=counts, width=np.diff(edges_pos), customdata=custom, name=what,
            marker=dict(color=_BAR_COLOR, line=dict(width=0)), showlegend=False,
            hovertemplate=f"{what}: %{{customdata[0]}}–%{{customdata[1]}}<br>%{{y:,}} cells<extra></extra>",
        ),
        row=1, col=col,
    )
    med = float(np.median(v))
    med_pos = np.log10(med) if log_x and med > 0 else (None if log_x else med)
    if med_pos is not None:
        fig.add_vline(x=med_pos, line=dict(color=REFERENCE_COLOR, dash="dash", width=2), row=1, col=col)
        fig.add_annotation(
            x=med_pos, y=1.0, xref=axis, yref=("y" if col == 1 else f"y{col}") + " domain",
            text=f"median {fmt_num(round(med, 1))}", showarrow=False, xanchor="left", yanchor="top", xshift=4,
        )
    title = f"{what} (log scale)" if log_x else what
    if n_zero:
        title += f"; {n_zero:,} cells at 0 not shown"
    fig.update_xaxes(title_text=title, row=1, col=col)
    if log_x:
        tv, tt = _log_ticks(float(edges_pos[0]), float(edges_pos[-1]))
        fig.update_xaxes(tickmode="array", tickvals=tv, ticktext=tt, row=1, col=col)


def counts_histograms(
    counts_per_cell: np.ndarray,
    genes_per_cell: np.ndarray,
    *,
    pct_mito: np.ndarray | None = None,
    log_x: bool = True,
    n_bins: int = 60,
    title: str | None = "Sequencing depth per cell",
    height: int = 420,
) -> go.Figure:
    """Histograms side by side: total counts per cell, detected genes per cell and, when given, % mitochondrial counts.

    Shown after loading so that empty cells, doublet-like outliers, damaged cells (a high mitochondrial share)
    and a low-depth dataset are visible before training.

    Parameters
    ----------
    counts_per_cell, genes_per_cell
        One value per cell (e.g. ``X.sum(1)`` and the number of non-zero genes).
    pct_mito
        One value per cell, 0-100: the share of its counts from mitochondrial genes
        (:func:`scapp.data.qc.mito_percent`); drawn on a linear axis as a third panel.
    log_x
        Bin and draw the depth panels on a log axis (depth is roughly log-normal); cells with
        0 are counted in the axis title instead.
    n_bins
        Bars per histogram.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    n_cols = 2 if pct_mito is None else 3
    fig = make_subplots(rows=1, cols=n_cols, horizontal_spacing=0.1 if n_cols == 2 else 0.07)
    _histogram_panel(fig, counts_per_cell, col=1, what="total counts per cell", log_x=log_x, n_bins=n_bins)
    _histogram_panel(fig, genes_per_cell, col=2, what="genes detected per cell", log_x=log_x, n_bins=n_bins)
    if pct_mito is not None:
        _histogram_panel(fig, pct_mito, col=3, what="% mitochondrial counts", log_x=False, n_bins=n_bins)
    fig.update_yaxes(title_text="cells", row=1, col=1)
    fig.update_layout(bargap=0)
    return style(fig, title=title, height=height)


def class_sizes_bar(
    class_counts: Mapping[str, int],
    *,
    colors: Mapping[str, str] | None = None,
    log_x: bool = False,
    small_frac: float = 0.01,
    title: str | None = "Cells per class",
) -> go.Figure:
    """Horizontal bars of cells per class, largest on top, each labelled with its count and share.

    Imbalance decides what a model can learn; the count and percentage printed next
    to every bar keep tiny classes readable even when their bar is a sliver, and
    classes under ``small_frac`` of the cells are flagged.

    Parameters
    ----------
    class_counts
        ``{class: number of cells}``.
    colors
        ``{class: colour}`` from :func:`scapp.viz.class_colors`; by default colours
        follow the order of ``class_counts``.
    log_x
        Log-scaled count axis for extreme imbalance.
    small_frac
        Classes with fewer than this fraction of all cells get a "small" mark.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    names = [str(k) for k in class_counts]
    counts = np.array([int(v) for v in class_counts.values()], dtype=np.int64)
    cmap = dict(colors) if colors is not None else class_colors(names)
    missing = [n for n in names if n not in cmap]
    if missing:  # colours for classes the caller did not know about, after its own
        extra = class_colors(list(cmap) + missing)
        cmap.update({n: extra[n] for n in missing})
    order = np.argsort(-counts, kind="stable")
    names = [names[i] for i in order]
    counts = counts[order]
    total = int(counts.sum())
    frac = counts / total if total else np.zeros(len(counts))
    small = frac < small_frac
    text = [
        f"{c:,} ({f:.1%})" + ("  ◀ small" if s else "") for c, f, s in zip(counts, frac, small)
    ]
    fig = go.Figure(
        go.Bar(
            x=counts, y=names, orientation="h", text=text, textposition="outside", cliponaxis=False,
            marker=dict(color=[cmap[n] for n in names], line=dict(color="#333333", width=1)),
            customdata=np.round(frac * 100, 2),
            hovertemplate="%{y}<br>%{x:,} cells (%{customdata}%)<extra></extra>",
            showlegend=False,
        )
    )
    style(fig, title=title, height=max(260, 120 + 34 * len(names)))
    fig.update_yaxes(autorange="reversed", title_text=None, showgrid=False)
    if log_x:
        fig.update_xaxes(type="log", title_text="cells (log scale)")
    else:
        fig.update_xaxes(title_text="cells", range=[0, max(1, int(counts.max(initial=0))) * 1.3])
    fig.update_layout(margin=dict(r=60))
    return fig
