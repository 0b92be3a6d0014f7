"""Pictures of why the model predicts what it does: per-class gene scores, gene rankings,
one cell's explanation, and the expression dot plot that checks them against the data.

The per-class scores come from :mod:`scapp.explain` (TabNet masks, Integrated
Gradients); :func:`dotplot_data` aggregates expression per class with sparse
indicator-matrix products so it also runs on a million cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import sparse

from scapp.explain.markers import dotplot_data  # noqa: F401 - numbers behind the dot plot, re-exported
from scapp.viz._style import message_figure, style

__all__ = [
    "cell_explain_bar",
    "class_gene_heatmap",
    "dotplot_data",
    "expression_dotplot",
    "gene_importance_bar",
]

_POS_COLOR = "#2166AC"
_NEG_COLOR = "#B2182B"
_EXPR_COLOR = "#74C476"  # expression beside a score: another quantity, another hue


def class_gene_heatmap(
    scores: np.ndarray,
    classes: Sequence[str],
    genes: Sequence[str],
    *,
    top: int = 50,
    signed: bool = False,
    colorscale: str | None = None,
    value_label: str = "score",
    title: str | None = "Genes the model relies on, per class",
    rank_by: np.ndarray | None = None,
) -> go.Figure:
    """Heatmap of classes × the ``top`` genes with the largest scores across classes.

    Shows at a glance which genes each class is recognised by. Genes are chosen
    by the norm of their column (strong for any class) and grouped by the class
    where they score highest, so the picture reads as blocks along a diagonal.

    Parameters
    ----------
    scores
        classes × genes (e.g. ``class_scores`` of ``RunStore.explain()``).
    classes, genes
        Row and column names.
    top
        Number of genes to show.
    signed
        Scores can be negative (Integrated Gradients): diverging colours centred on 0.
    colorscale
        Override the colour scale (default ``Viridis``, or ``RdBu_r`` when signed).
    rank_by
        classes × genes scores that choose and order the genes when the colours (``scores``) are a
        rescaled view of them (SIMS: each gene divided by its maximum over classes); default ``scores``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    S = np.asarray(scores, dtype=np.float64)
    classes = [str(c) for c in classes]
    genes = [str(g) for g in genes]
    if S.ndim != 2 or S.shape != (len(classes), len(genes)):
        raise ValueError(f"scores has shape {S.shape}; expected classes × genes = ({len(classes)}, {len(genes)}).")
    if S.size == 0:
        return message_figure("No gene scores to show.", title=title)
    S = np.nan_to_num(S, nan=0.0, posinf=0.0, neginf=0.0)
    R = S if rank_by is None else np.nan_to_num(np.asarray(rank_by, dtype=np.float64), nan=0.0)
    if R.shape != S.shape:
        raise ValueError(f"rank_by has shape {R.shape}; expected {S.shape}.")
    norm = np.sqrt((R**2).sum(axis=0))
    sel = np.argsort(-norm, kind="stable")[: max(1, min(int(top), S.shape[1]))]
    sub = S[:, sel]
    strength = np.abs(R[:, sel]) if signed else R[:, sel]
    peak_class = strength.argmax(axis=0)
    peak = strength.max(axis=0)
    order = np.lexsort((-peak, peak_class))
    sub, sel = sub[:, order], sel[order]
    gene_names = [genes[i] for i in sel]
    if signed:
        m = float(np.abs(sub).max()) or 1.0
        zargs = dict(zmid=0.0, zmin=-m, zmax=m, colorscale=colorscale or "RdBu_r")
    else:
        zargs = dict(colorscale=colorscale or "Viridis")
    fig = go.Figure(
        go.Heatmap(
            z=sub, x=gene_names, y=classes, colorbar=dict(title=dict(text=value_label)), xgap=1, ygap=1,
            hovertemplate=f"class: %{{y}}<br>gene: %{{x}}<br>{value_label}: %{{z:.3g}}<extra></extra>", **zargs,
        )
    )
    style(fig, title=title, height=max(360, 220 + 36 * len(classes)))
    fig.update_xaxes(type="category", tickangle=-60, tickmode="linear", showgrid=False, showline=False,
                     title_text="gene")
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False, showline=False, title_text=None)
    return fig


def _top_genes_bar(
    genes: Sequence[str], values: np.ndarray, *, top: int, title: str | None, value_label: str,
    extra: np.ndarray | None = None, extra_label: str = "",
) -> go.Figure:
    names = np.asarray([str(g) for g in genes], dtype=object)
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.shape[0] != names.shape[0]:
        raise ValueError(f"{v.shape[0]} values for {names.shape[0]} genes.")
    v = np.where(np.isfinite(v), v, 0.0)
    if v.size == 0:
        return message_figure("No genes to show.", title=title)
    sel = np.argsort(-np.abs(v), kind="stable")[: max(1, min(int(top), v.size))]
    custom = None
    hover = f"%{{y}}<br>{value_label}: %{{x:.3g}}"
    if extra is not None:
        e = np.asarray(extra, dtype=np.float64).ravel()
        if e.shape != v.shape:
            raise ValueError(f"{e.shape[0]} {extra_label} values for {v.shape[0]} genes.")
        custom = e[sel].reshape(-1, 1)
        hover += f"<br>{extra_label}: %{{customdata[0]:.3g}}"
    fig = go.Figure(
        go.Bar(
            x=v[sel], y=names[sel], orientation="h", customdata=custom, showlegend=False,
            marker=dict(color=np.where(v[sel] < 0, _NEG_COLOR, _POS_COLOR)),
            hovertemplate=hover + "<extra></extra>",
        )
    )
    style(fig, title=title, height=max(300, 130 + 24 * sel.size))
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False, tickmode="linear", title_text=None)
    fig.update_xaxes(title_text=value_label, zeroline=True, zerolinecolor="#888888")
    return fig


def gene_importance_bar(
    genes: Sequence[str],
    importance: np.ndarray,
    *,
    top: int = 30,
    value_label: str = "importance",
    title: str | None = "Most important genes overall",
) -> go.Figure:
    """Horizontal bars of the ``top`` genes by absolute importance, largest on top.

    The short list a biologist checks first: are these known markers of the
    tissue, or batch/technical genes? Negative values (signed attributions) are red.

    Parameters
    ----------
    genes
        Gene names.
    importance
        One value per gene (``RunStore.global_importance()``).
    top
        Number of genes.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    return _top_genes_bar(genes, importance, top=top, title=title, value_label=value_label)


def cell_explain_bar(
    genes: Sequence[str],
    mask_row: np.ndarray,
    *,
    top: int = 30,
    expression: np.ndarray | None = None,
    value_label: str = "attention",
    expression_label: str = "expression<br>log(1 + counts per 10k)",
    title: str | None = "Genes behind this cell's prediction",
) -> go.Figure:
    """One cell's explanation (a TabNet mask row or an attribution): its ``top`` non-zero genes, largest first,
    with the cell's expression of the same genes beside them.

    Lets a user check a surprising call cell by cell: did the model look at sensible
    genes, and were they expressed in this cell? A mask is sparse (a cell's mask
    typically names 5-10 of thousands of genes), so genes scoring exactly 0 are left
    out rather than drawn as a row of empty bars; the title says how many are shown.

    Parameters
    ----------
    genes
        Gene names.
    mask_row
        One value per gene for the cell (a row of ``cell_masks``).
    top
        At most this many genes (by absolute value).
    expression
        The cell's (log-normalised) expression of each gene: a second panel of bars on the
        same rows, and the hover of the first.

    Returns
    -------
    plotly.graph_objects.Figure
        ``data[0]``: the scores (``y`` genes, ``customdata`` their expression when given);
        ``data[1]``: the expression bars, when given.
    """
    names = np.asarray([str(g) for g in genes], dtype=object)
    v = np.asarray(mask_row, dtype=np.float64).ravel()
    if v.shape[0] != names.shape[0]:
        raise ValueError(f"{v.shape[0]} values for {names.shape[0]} genes.")
    v = np.where(np.isfinite(v), v, 0.0)
    e = None
    if expression is not None:
        e = np.asarray(expression, dtype=np.float64).ravel()
        if e.shape != v.shape:
            raise ValueError(f"{e.shape[0]} expression values for {v.shape[0]} genes.")
    nz = np.flatnonzero(v != 0)
    if nz.size == 0:
        return message_figure("This cell's explanation names no gene (all scores are 0).", title=title)
    sel = nz[np.argsort(-np.abs(v[nz]), kind="stable")][: max(1, int(top))]
    shown = f"{sel.size} of {v.size:,} genes" + (f"; {nz.size - sel.size} more are non-zero" if nz.size > sel.size
                                                 else " (the others score 0)")
    full_title = f"{title} — {shown}" if title else None
    height = max(300, 150 + 26 * sel.size)
    bar = go.Bar(
        x=v[sel], y=names[sel], orientation="h", showlegend=False,
        marker=dict(color=np.where(v[sel] < 0, _NEG_COLOR, _POS_COLOR)),
        customdata=None if e is None else e[sel].reshape(-1, 1),
        hovertemplate=f"%{{y}}<br>{value_label}: %{{x:.3g}}"
                      + ("" if e is None else "<br>expression: %{customdata[0]:.3g}") + "<extra></extra>",
    )
    if e is None:
        fig = go.Figure(bar)
        style(fig, title=full_title, height=height)
        fig.update_yaxes(autorange="reversed", type="category", showgrid=False, tickmode="linear", title_text=None)
        fig.update_xaxes(title_text=value_label, zeroline=True, zerolinecolor="#888888")
        return fig
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.58, 0.42], horizontal_spacing=0.04)
    fig.add_trace(bar, row=1, col=1)
    ev = e[sel]
    fig.add_trace(
        go.Bar(x=ev, y=names[sel], orientation="h", showlegend=False, marker=dict(color=_EXPR_COLOR),
               text=[f"{x:.2g}" if x > 0 else "0 (silent)" for x in ev], textposition="outside", cliponaxis=False,
               hovertemplate="%{y}<br>expression in this cell: %{x:.3g}<extra></extra>"),
        row=1, col=2,
    )
    style(fig, title=full_title, height=height)
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False, tickmode="linear", title_text=None)
    fig.update_xaxes(title_text=value_label, zeroline=True, zerolinecolor="#888888", row=1, col=1)
    emax = float(ev.max()) if ev.size and ev.max() > 0 else 1.0
    fig.update_xaxes(title_text=expression_label, range=[0, emax * 1.3], row=1, col=2)
    return fig


def expression_dotplot(
    mean_expr: pd.DataFrame,
    frac_expr: pd.DataFrame,
    *,
    standard_scale: Literal["gene"] | None = None,
    colorscale: str = "Reds",
    max_dot_px: float = 26.0,
    color_label: str | None = None,
    title: str | None = "Expression of selected genes per class",
) -> go.Figure:
    """Dot plot, classes × genes: dot area = fraction of cells expressing, colour = mean expression.

    The standard check that a model's top genes are real markers: a good marker
    is a big dark dot in its own class and small pale dots elsewhere.

    Parameters
    ----------
    mean_expr, frac_expr
        classes × genes with the same index and columns (from :func:`dotplot_data`).
    standard_scale
        ``"gene"`` rescales each gene's means to 0–1 so weakly expressed markers show
        colour too (hover still gives the raw mean).
    colorscale
        Sequential colour scale for the mean.
    max_dot_px
        Diameter of a dot for 100% of cells (made smaller when many genes would make dots overlap).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if mean_expr.shape != frac_expr.shape:
        raise ValueError(f"mean_expr {mean_expr.shape} and frac_expr {frac_expr.shape} differ in shape.")
    if mean_expr.size == 0:
        return message_figure("No genes selected.", title=title)
    frac_expr = frac_expr.reindex(index=mean_expr.index, columns=mean_expr.columns)
    classes = [str(c) for c in mean_expr.index]
    genes = [str(g) for g in mean_expr.columns]
    M = mean_expr.to_numpy(dtype=np.float64)
    F = np.clip(np.nan_to_num(frac_expr.to_numpy(dtype=np.float64), nan=0.0), 0.0, 1.0)
    C = M
    label = color_label or "mean expression"
    if standard_scale == "gene":
        lo, hi = np.nanmin(M, axis=0), np.nanmax(M, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            C = np.where(hi > lo, (M - lo) / (hi - lo), 0.0)
        label = color_label or "mean expression<br>(scaled per gene)"
    gx, cy = np.meshgrid(np.arange(len(genes)), np.arange(len(classes)))
    gx, cy = gx.ravel(), cy.ravel()
    max_dot_px = min(max_dot_px, max(10.0, 900.0 / max(len(genes), 1)))  # many genes: smaller dots, no overlap
    diam = np.maximum(max_dot_px * np.sqrt(F.ravel()), 1.5)  # area ∝ fraction; 0% still a speck
    custom = np.stack([M.ravel(), F.ravel() * 100], axis=1)
    fig = go.Figure(
        go.Scatter(
            x=np.asarray(genes, dtype=object)[gx], y=np.asarray(classes, dtype=object)[cy], mode="markers",
            marker=dict(size=diam, color=C.ravel(), colorscale=colorscale, cmin=0 if np.nanmin(C) >= 0 else None,
                        line=dict(color="#777777", width=0.5), colorbar=dict(title=dict(text=label), x=1.02)),
            customdata=custom, showlegend=False,
            hovertemplate="class: %{y}<br>gene: %{x}<br>mean expression: %{customdata[0]:.3g}"
                          "<br>expressed in %{customdata[1]:.1f}% of cells<extra></extra>",
        )
    )
    for p in (0.25, 0.5, 0.75, 1.0):  # size key
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=f"{p:.0%} of cells",
            marker=dict(size=max_dot_px * np.sqrt(p), color="#999999", line=dict(color="#777777", width=0.5)),
        ))
    style(fig, title=title, height=max(380, 240 + 40 * len(classes)), legend_title="expressing:")
    # size key in one row above the plot, so it never collides with the colour bar on the right
    fig.update_layout(legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom", itemsizing="trace"),
                      margin=dict(t=(80 if title else 40) + max_dot_px + 16, r=40))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=genes, tickangle=-60,
                     tickmode="linear", title_text="gene", showgrid=True)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=classes, autorange="reversed",
                     title_text=None, showgrid=True)
    return fig
