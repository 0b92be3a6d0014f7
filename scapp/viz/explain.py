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
) -> go.Figure:
    """Heatmap of classes × the ``top`` genes with the largest scores across classes.

    Shows at a glance which genes each class is recognised by. Genes are chosen
    by the norm of their column (strong for any class) and grouped by the class
    where they score highest, so the picture reads as blocks along a diagonal.

    Parameters
    ----------
    scores
        classes × genes (e.g. ``class_scores`` of ``explain.safetensors``).
    classes, genes
        Row and column names.
    top
        Number of genes to show.
    signed
        Scores can be negative (Integrated Gradients): diverging colours centred on 0.
    colorscale
        Override the colour scale (default ``Viridis``, or ``RdBu_r`` when signed).

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
    norm = np.sqrt((S**2).sum(axis=0))
    sel = np.argsort(-norm, kind="stable")[: max(1, min(int(top), S.shape[1]))]
    sub = S[:, sel]
    strength = np.abs(sub) if signed else sub
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
        One value per gene (``global_importance.csv``).
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
    title: str | None = "Genes behind this cell's prediction",
) -> go.Figure:
    """The ``top`` genes of one cell's explanation vector (TabNet mask row or attribution).

    Lets a user check a surprising call cell by cell: did the model look at
    sensible genes, and were they actually expressed (``expression`` on hover)?

    Parameters
    ----------
    genes
        Gene names.
    mask_row
        One value per gene for the cell (a row of ``cell_masks``).
    top
        Number of genes.
    expression
        The cell's (log-normalised) expression of each gene, shown on hover.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    return _top_genes_bar(genes, mask_row, top=top, title=title, value_label=value_label,
                          extra=expression, extra_label="expression")


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
