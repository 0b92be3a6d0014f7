"""Pictures of a denoising run (ZiPo): one gene raw vs denoised on the cell map, predicted vs observed library
size, zero inflation per gene, the first layer's sparsity and one gene program.

Pure functions from arrays and tables (``scapp.explain.denoised``, ``scapp.explain.programs``) to plotly figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scapp.viz._style import REFERENCE_COLOR, TITLE_SIZE, message_figure, style

__all__ = ["gene_program_bar", "gene_raw_vs_denoised", "library_size_scatter", "sparsity_histogram",
           "zero_inflation_scatter"]

_POINT = "#3B6FB6"
_POS_COLOR = "#2166AC"
_NEG_COLOR = "#B2182B"
_SPLIT_COLORS = {"train": "#9AA5B1", "valid": "#F08C00", "test": "#3B6FB6"}


def _nice_ticks(lo: float, hi: float, *, steps: Sequence[float] = (1, 3)) -> np.ndarray:
    """Round numbers ``steps``·10^k between ``lo`` and ``hi`` (> 0): the ticks of a log axis or a log colour scale,
    never the crowded 2-3-4-5… plotly puts between decades."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= 0:
        return np.array([1.0])
    lo = max(lo, hi * 1e-12)
    out = [m * 10.0**k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1) for m in steps]
    return np.array([t for t in out if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)])


def _log_axis_ticks(lo: float, hi: float) -> dict:
    """``tickvals``/``ticktext`` of a log axis from ``lo`` to ``hi``: 1-2-5 steps over up to two decades, powers of
    ten beyond (three decades or more), 1-3 in between."""
    decades = np.log10(max(hi, 1e-300)) - np.log10(max(lo, 1e-300))
    steps = (1, 2, 5) if decades <= 2 else (1, 3) if decades <= 3.5 else (1,)
    ticks = _nice_ticks(lo, hi, steps=steps)
    if ticks.size < 2:
        ticks = _nice_ticks(lo, hi, steps=tuple(range(1, 10)))
    if ticks.size < 2:  # a range narrower than one step: plotly's own ticks
        return {}
    return {"tickvals": ticks.tolist(), "ticktext": [f"{t:,.10g}" for t in ticks]}


def _fmt_r(r: float | None) -> str:
    return "–" if r is None or not np.isfinite(r) else f"{r:.3f}"


def gene_raw_vs_denoised(
    coords: np.ndarray,
    raw: np.ndarray,
    denoised: np.ndarray,
    *,
    gene: str,
    denoised_label: str = "denoised (l·μ)",
    axis_labels: tuple[str, str] = ("UMAP 1", "UMAP 2"),
    hover: pd.DataFrame | None = None,
    title: str | None = None,
    height: int = 560,
) -> go.Figure:
    """The cell map twice, side by side: coloured by ``gene``'s raw count (left) and its denoised value (right),
    on one colour scale of ``log1p`` so equal colours mean equal expression in both. Cells are drawn in order of
    their value (highest on top), as a sparse gene would otherwise vanish under its zeros.

    ``coords``: cells × 2; ``raw``, ``denoised``: one value per cell; ``hover``: extra per-cell columns.
    ``layout.meta`` holds ``{"gene", "cells", "cmax"}``.
    """
    xy = np.asarray(coords, dtype=np.float64)
    raw = np.asarray(raw, dtype=np.float64)
    den = np.asarray(denoised, dtype=np.float64)
    n = xy.shape[0]
    if xy.ndim != 2 or xy.shape[1] < 2 or raw.shape != (n,) or den.shape != (n,):
        raise ValueError(f"coords must be cells × 2 and raw/denoised one value per cell; got {xy.shape}, "
                         f"{raw.shape}, {den.shape}.")
    lr, ld = np.log1p(np.maximum(raw, 0)), np.log1p(np.maximum(den, 0))
    finite = np.concatenate([lr[np.isfinite(lr)], ld[np.isfinite(ld)]])
    cmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    detected = float((raw > 0).mean()) if n else 0.0
    titles = (f"<b>{gene}</b> raw counts · detected in {detected:.0%} of cells", f"<b>{gene}</b> {denoised_label}")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.04)
    size = 6 if n <= 5_000 else 4 if n <= 30_000 else 2.5
    extra = "" if hover is None else "".join(f"<br>{c}: %{{customdata[{j + 2}]}}" for j, c in enumerate(hover.columns))
    for col, (vals, logv, name) in enumerate(((raw, lr, "raw count"), (den, ld, denoised_label)), start=1):
        order = np.argsort(np.where(np.isfinite(logv), logv, -1.0), kind="stable")
        custom = np.column_stack([vals[order], logv[order]] + ([] if hover is None else
                                                               [hover[c].astype(str).to_numpy()[order]
                                                                for c in hover.columns]))
        fig.add_trace(go.Scattergl(
            x=xy[order, 0], y=xy[order, 1], mode="markers", name=name, showlegend=False,
            marker=dict(color=logv[order], coloraxis="coloraxis", size=size, opacity=0.85, line=dict(width=0)),
            customdata=custom,
            hovertemplate=(f"{gene} {name}: %{{customdata[0]:.3g}}<br>log1p: %{{customdata[1]:.2f}}{extra}"
                           "<extra></extra>"),
        ), row=1, col=col)
    style(fig, title=title, height=height)
    ticks = np.r_[0.0, _nice_ticks(1.0, float(np.expm1(cmax)))]
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0.0, cmax=cmax,
                                     colorbar=dict(title=dict(text=f"{gene}<br>count", font=dict(size=14)), tickvals=np.log1p(ticks),
                                                   ticktext=[f"{t:g}" for t in ticks], thickness=16)),
                      meta={"gene": gene, "cells": int(n), "cmax": cmax},
                      margin=dict(l=40, r=20, t=90 if title else 60, b=50))
    for col in (1, 2):
        fig.update_xaxes(title_text=axis_labels[0], showgrid=False, showticklabels=False, showline=False,
                         row=1, col=col)
        fig.update_yaxes(title_text=axis_labels[1] if col == 1 else None, showgrid=False, showticklabels=False,
                         showline=False, scaleanchor="x" if col == 1 else "x2", scaleratio=1, row=1, col=col)
    fig.update_annotations(font_size=TITLE_SIZE - 3)
    return fig


def library_size_scatter(
    cells: pd.DataFrame,
    *,
    r_log: float | None,
    n_total: int | None = None,
    title: str | None = None,
    height: int = 520,
) -> go.Figure:
    """Predicted vs observed library size per cell (``cells``: ``observed``, ``predicted``, optional ``split``,
    ``cell_id``), both axes log, the line y = x for reference. The title gives Pearson r of the logs (``r_log``,
    computed by the caller over all ``n_total`` cells, not only those drawn)."""
    if not len(cells):
        return message_figure("No cell has counts to compare.", title="Library size", height=height)
    shown = len(cells)
    n_total = n_total or shown
    if title is None:
        title = f"Predicted vs observed library size · Pearson r (log scale) = {_fmt_r(r_log)}"
    fig = go.Figure()
    splits = cells["split"].astype(str) if "split" in cells else pd.Series(["cells"] * shown)
    ids = cells["cell_id"].astype(str).to_numpy() if "cell_id" in cells else np.arange(shown).astype(str)
    size = 6 if shown <= 5_000 else 4
    for s in [k for k in ("train", "valid", "test") if k in set(splits)] + sorted(set(splits) - set(_SPLIT_COLORS)):
        m = (splits == s).to_numpy()
        fig.add_trace(go.Scattergl(
            x=cells["observed"].to_numpy()[m], y=cells["predicted"].to_numpy()[m], mode="markers",
            name=f"{s} ({int(m.sum()):,})", customdata=ids[m],
            marker=dict(color=_SPLIT_COLORS.get(s, _POINT), size=size, opacity=0.6, line=dict(width=0)),
            hovertemplate="cell %{customdata}<br>observed %{x:,.0f}<br>predicted %{y:,.0f}<extra>" + s + "</extra>"))
    lo = float(np.nanmin(np.r_[cells["observed"], cells["predicted"]]))
    hi = float(np.nanmax(np.r_[cells["observed"], cells["predicted"]]))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = observed",
                             line=dict(color=REFERENCE_COLOR, dash="dash", width=1.5), hoverinfo="skip"))
    style(fig, title=title, height=height)
    # bottom right: below the diagonal, where a model that tracks depth leaves the plot empty
    fig.update_layout(legend=dict(x=0.99, y=0.01, xanchor="right", yanchor="bottom", bgcolor="rgba(255,255,255,0.8)",
                                  itemsizing="constant"))
    fig.update_xaxes(type="log", title_text="observed library size (total counts)", **_log_axis_ticks(lo, hi))
    fig.update_yaxes(type="log", title_text="predicted library size (l)", **_log_axis_ticks(lo, hi))
    if shown < n_total:
        fig.add_annotation(text=f"showing {shown:,} of {n_total:,} cells (random sample); r over all of them",
                           x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                           font=dict(color="#555555"))
    fig.update_layout(meta={"shown": shown, "total": int(n_total)})
    return fig


def zero_inflation_scatter(
    genes: pd.DataFrame,
    *,
    highlight: Sequence[str] = (),
    title: str | None = "Zero inflation per gene against its mean expression",
    height: int = 520,
) -> go.Figure:
    """Each gene's mean zero-inflation probability (mean over cells of z) against its mean count (log x),
    coloured by the fraction of cells it is detected in. ``highlight``: genes to mark and name (e.g. the gene on
    the map)."""
    if not len(genes):
        return message_figure("This run's likelihood has no zero inflation (Poisson or negative binomial).",
                              title=title, height=height)
    names = genes["gene"].astype(str).to_numpy()
    fig = go.Figure(go.Scattergl(
        x=genes["mean_count"], y=genes["mean_zero_prob"], mode="markers", name="genes", showlegend=False,
        customdata=np.column_stack([names, genes["detected_frac"].to_numpy(np.float64)]),
        marker=dict(color=genes["detected_frac"], colorscale="Cividis", cmin=0, cmax=1, size=5, opacity=0.75,
                    line=dict(width=0), colorbar=dict(title=dict(text="detected<br>in cells", font=dict(size=14)), tickformat=".0%",
                                                      thickness=16)),
        hovertemplate="<b>%{customdata[0]}</b><br>mean count %{x:.3g}<br>mean zero-inflation %{y:.3f}"
                      "<br>detected in %{customdata[1]:.1%} of cells<extra></extra>"))
    hl = genes[genes["gene"].astype(str).isin([str(g) for g in highlight])]
    if len(hl):
        fig.add_trace(go.Scatter(
            x=hl["mean_count"], y=hl["mean_zero_prob"], mode="markers+text", text=hl["gene"].astype(str),
            textposition="top center", showlegend=False, hoverinfo="skip", textfont=dict(size=15, color="#111111"),
            marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(color="#D6336C", width=2.5))))
    style(fig, title=title, height=height)
    mc = genes["mean_count"].to_numpy(np.float64)
    mc = mc[np.isfinite(mc) & (mc > 0)]
    fig.update_xaxes(type="log", title_text="mean count per cell",
                     **(_log_axis_ticks(float(mc.min()), float(mc.max())) if mc.size else {}))
    fig.update_yaxes(title_text="mean zero-inflation probability z", rangemode="tozero")
    return fig


def _pow10(e: float) -> str:
    return "1" if e == 0 else f"10<sup>{int(e)}</sup>" if float(e).is_integer() else ""


def sparsity_histogram(
    edges: np.ndarray,
    counts: np.ndarray,
    *,
    delta: float,
    sparsity: float,
    title: str | None = None,
    height: int = 440,
) -> go.Figure:
    """Histogram of the first layer's weights relative to their neuron's largest |w| (log10 bins ``edges``,
    ``counts`` weights per bin; the first bin holds everything below it, exact zeros included), the pruning
    threshold ``delta`` marked and the ``sparsity`` reached (fraction of weights set to zero) in the title."""
    edges = np.asarray(edges, np.float64)
    counts = np.asarray(counts, np.float64)
    if title is None:
        title = f"First-layer sparsity: {sparsity:.1%} of the weights pruned at δ = {delta:g}"
    total = counts.sum()
    if total <= 0:
        return message_figure("No first-layer weights recorded.", title=title, height=height)
    share = counts / total
    mids = (edges[:-1] + edges[1:]) / 2
    below = edges[1:] <= np.log10(delta)
    colors = np.where(below, "#B0B7C0", _POINT)
    lo_txt = [("≤ " if i == 0 else "") + f"{10 ** a:.0e}–{10 ** b:.0e}" for i, (a, b) in enumerate(pairwise(edges))]
    fig = go.Figure(go.Bar(x=mids, y=share, width=np.diff(edges) * 0.95, marker=dict(color=colors.tolist()),
                           customdata=np.column_stack([lo_txt, counts.astype(np.int64)]), name="weights",
                           showlegend=False,
                           hovertemplate="|w| / max|w|: %{customdata[0]}<br>%{customdata[1]:,} weights "
                                         "(%{y:.1%})<extra></extra>"))
    x0 = float(np.log10(delta))
    fig.add_vline(x=x0, line=dict(color="#D6336C", width=2.5, dash="dash"))
    fig.add_annotation(x=x0, y=1, xref="x", yref="paper", yanchor="bottom", xanchor="right", showarrow=False,
                       text=f"δ = {delta:g} · left: set to zero ", font=dict(color="#D6336C"))
    style(fig, title=title, height=height)
    ticks = np.arange(np.ceil(edges[0]), np.floor(edges[-1]) + 1, 2 if edges[-1] - edges[0] > 8 else 1)
    fig.update_xaxes(title_text="weight relative to its neuron's largest |w| (log scale)", tickvals=ticks,
                     ticktext=[_pow10(t) for t in ticks], range=[edges[0], edges[-1]])
    fig.update_yaxes(title_text="share of the weights", tickformat=".0%", rangemode="tozero")
    fig.update_layout(bargap=0.05)
    return fig


def gene_program_bar(
    genes: pd.DataFrame,
    *,
    unit: int,
    unit_name: str = "first-layer unit",
    top: int = 25,
    highlight: str | None = None,
    weight_label: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """The ``top`` strongest genes of one unit (``genes``: ``gene, weight, relative`` strongest first, optional
    ``rank``, and ``contribution, input_sd`` when the run ranks by them) as horizontal bars of their signed
    contribution (weight × spread; the signed weight for runs without it); ``highlight`` (a searched gene) is
    outlined, and shown last with its rank when it is not among the ``top``."""
    genes = genes.reset_index(drop=True)
    by_contrib = "contribution" in genes and genes["contribution"].notna().any()
    if weight_label is None:
        weight_label = ("contribution: weight × spread (blue: positive, red: negative)" if by_contrib
                        else "weight (blue: positive, red: negative)")
    rank = genes["rank"].to_numpy(int) if "rank" in genes else np.arange(1, len(genes) + 1)
    is_hl = (genes["gene"].astype(str).str.upper() == str(highlight or "").upper()).to_numpy()
    rows = np.arange(min(top, len(genes)))
    if is_hl.any() and not is_hl[rows].any():  # the searched gene ranks lower: the top − 1, then it
        rows = np.r_[rows[: max(top - 1, 0)], np.flatnonzero(is_hl)[:1]]
    g = genes.iloc[rows]
    if title is None:
        title = f"Gene program of {unit_name} {unit}: its {min(top, len(genes))} strongest genes"
    if not len(g):
        return message_figure(f"{unit_name.capitalize()} {unit} reads no gene (all its weights were pruned).",
                              title=title, height=300)
    names = [f"{n} (#{r})" if r > len(g) else str(n) for n, r in zip(g["gene"], rank[rows], strict=True)]
    g = g.iloc[::-1]
    names = names[::-1]
    w = g["contribution" if by_contrib else "weight"].to_numpy(np.float64)
    hl = is_hl[rows][::-1]
    if by_contrib:
        custom = np.c_[g["weight"].to_numpy(np.float64), g["relative"].to_numpy(np.float64),
                       g["input_sd"].to_numpy(np.float64)]
        hover = ("<b>%{y}</b><br>contribution %{x:.3g}<br>weight %{customdata[0]:.3g} "
                 "(%{customdata[1]:.1%} of the unit's largest)<br>spread across cells (sd) %{customdata[2]:.3g}"
                 "<extra></extra>")
    else:
        custom = g["relative"].to_numpy(np.float64)
        hover = "<b>%{y}</b><br>weight %{x:.3g}<br>relative to the largest %{customdata:.1%}<extra></extra>"
    fig = go.Figure(go.Bar(
        x=w, y=names, orientation="h", showlegend=False,
        marker=dict(color=np.where(w >= 0, _POS_COLOR, _NEG_COLOR).tolist(),
                    line=dict(color=np.where(hl, "#111111", "rgba(0,0,0,0)").tolist(), width=np.where(hl, 3, 0))),
        customdata=custom, hovertemplate=hover))
    style(fig, title=title, height=max(320, 110 + 24 * len(g)))
    fig.update_xaxes(title_text=weight_label, zeroline=True,
                     zerolinecolor=REFERENCE_COLOR)
    fig.update_yaxes(title_text=None, type="category", automargin=True)
    fig.update_layout(margin=dict(l=110))
    return fig
