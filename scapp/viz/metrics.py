"""Pictures of test-set performance: confusion, per-class scores and calibration.

Each builder takes the tidy table that :mod:`scapp.evaluate` computes and the run
keeps (``RunStore.confusion()``, ``.per_class()``, ``.reliability()``) and returns a
figure; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scapp.viz._style import REFERENCE_COLOR, fmt_num, message_figure, style

__all__ = ["class_f1_bars", "confusion_heatmap", "reliability_diagram"]

_METRIC_COLORS = {"precision": "#9ECAE1", "recall": "#4292C6", "f1": "#08306B"}
_METRIC_NAMES = {"precision": "precision", "recall": "recall", "f1": "F1"}
_HIGHLIGHT_FILL = "rgba(255, 196, 0, 0.15)"
_HIGHLIGHT_TEXT = "#8A5A00"
_SELECTED_LINE = "#E8590C"


def confusion_heatmap(
    cm: pd.DataFrame,
    *,
    normalize: bool = True,
    show_text: bool | None = None,
    colorscale: str = "Blues",
    title: str | None = "Confusion matrix (test cells)",
    selected: tuple[str, str] | None = None,
) -> go.Figure:
    """Heatmap of true (rows, y) against predicted (columns, x) classes, counts printed in each cell.

    Colour is the row-normalised fraction by default, so a small class that is
    always confused is as visible as a large one; the printed numbers stay the
    raw counts so nobody mistakes 1 of 2 cells for a trend.

    Parameters
    ----------
    cm
        Counts, true classes × predicted classes (``RunStore.confusion()``, indexed by
        the true class); an extra predicted column such as "Unassigned" is fine.
        Classes are drawn in the given order, the first at the top left.
    normalize
        Colour by fraction of each true class (``True``) or by raw count.
    show_text
        Print counts in the cells; by default only up to 30 classes.
    colorscale
        Plotly sequential colour scale.
    selected
        ``(true class, predicted class)`` of the cell to outline (the one a user clicked).

    Returns
    -------
    plotly.graph_objects.Figure
        ``data[0].text`` holds the counts as strings. ``data[1]`` is a transparent marker at the centre of every
        matrix cell (``x`` predicted, ``y`` true): a heatmap emits no click or selection events, so this layer is
        what a click selects (``st.plotly_chart(..., on_select="rerun", selection_mode="points")``), and it
        carries the hover text. Nearest centre wins (no hover distance cut-off), so a click anywhere in a cell
        selects that cell.
    """
    if cm.size == 0:
        return message_figure("No test cells to compare.", title=title)
    counts = cm.to_numpy(dtype=np.float64)
    counts = np.nan_to_num(counts, nan=0.0)
    row_sum = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, row_sum, out=np.zeros_like(counts), where=row_sum > 0)
    count_text = np.array([[fmt_num(v) for v in row] for row in counts], dtype=object)
    y = [str(c) for c in cm.index]
    x = [str(c) for c in cm.columns]
    if show_text is None:
        show_text = max(len(x), len(y)) <= 30
    z = frac if normalize else counts
    zmax = 1 if normalize else max(1.0, float(counts.max()))
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, text=count_text, customdata=frac, colorscale=colorscale,
            zmin=0, zmax=zmax,
            texttemplate="%{text}" if show_text else None, textfont=dict(size=14),
            colorbar=dict(
                title=dict(text="fraction of<br>true class" if normalize else "cells"),
                tickformat=".0%" if normalize else ",d",
                **({} if normalize or zmax > 10 else {"dtick": 1}),  # no "0 1 1 2 2" on a small count scale
            ),
            hoverinfo="skip",  # the click layer below carries the hover
            xgap=1, ygap=1,
        )
    )
    n = max(len(x), len(y))
    height = max(420, 200 + 38 * n)
    # One transparent marker per matrix cell: what a click hits and selects.
    yy, xx = np.meshgrid(np.arange(len(y)), np.arange(len(x)), indexing="ij")
    fig.add_trace(
        go.Scatter(
            x=np.asarray(x, dtype=object)[xx.ravel()], y=np.asarray(y, dtype=object)[yy.ravel()], mode="markers",
            marker=dict(symbol="square", size=max(8, min(40, (height - 200) / max(n, 1) * 0.8)),
                        color="rgba(0,0,0,0)", line=dict(width=0)),
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
            customdata=np.stack([count_text.ravel(), frac.ravel()], axis=1), showlegend=False, name="",
            hovertemplate="true: %{y}<br>predicted: %{x}<br>%{customdata[0]} cells<br>"
                          "%{customdata[1]:.1%} of the true class<br><i>click to list these cells</i><extra></extra>",
        )
    )
    if selected is not None and selected[0] in y and selected[1] in x:
        i, j = y.index(selected[0]), x.index(selected[1])
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, xref="x", yref="y",
                      line=dict(color=_SELECTED_LINE, width=4), fillcolor="rgba(0,0,0,0)", layer="above")
    style(fig, title=title, height=height)
    fig.update_layout(hovermode="closest", hoverdistance=-1, clickmode="event+select")
    fig.update_xaxes(title_text="predicted class", tickangle=-45, type="category", showgrid=False, showline=False)
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category", showgrid=False, showline=False)
    return fig


def class_f1_bars(
    per_class: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    highlight_smallest: int = 3,
    metrics: Sequence[str] = ("precision", "recall", "f1"),
    title: str | None = "Per-class scores (test cells)",
) -> go.Figure:
    """Precision, recall and F1 per class as grouped bars, largest class first.

    Accuracy hides rare cell types; ordering by support and shading the
    ``highlight_smallest`` smallest classes (with their F1 printed) shows whether
    the model learned them at all.

    Parameters
    ----------
    per_class
        ``RunStore.per_class()``: columns ``class``, ``support`` and the ``metrics``.
    colors
        ``{class: colour}``; each class name on the axis gets a dot in its colour.
    highlight_smallest
        How many of the smallest classes (by support, support > 0) to call out; 0 for none.
    metrics
        Which score columns to draw.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if per_class is None or len(per_class) == 0:
        return message_figure("No per-class scores yet.", title=title)
    df = per_class.copy()
    df["class"] = df["class"].astype(str)
    support = pd.to_numeric(df.get("support", pd.Series(0, index=df.index)), errors="coerce").fillna(0)
    df["support"] = support.astype(np.int64)
    df = df.sort_values("support", ascending=False, kind="stable").reset_index(drop=True)
    classes = df["class"].tolist()
    present = df[df["support"] > 0]
    n_small = max(0, int(highlight_smallest))
    small = set(present.nsmallest(n_small, "support", keep="first")["class"]) if n_small else set()

    def tick(c: str, n: int) -> str:
        dot = f"<span style='color:{colors[c]}'>●</span> " if colors and c in colors else ""
        name = f"<b>{c}</b>" if c in small else c
        return f"{dot}{name}<br>n={n:,}"

    ticktext = [tick(c, n) for c, n in zip(classes, df["support"])]
    fig = go.Figure()
    for m in metrics:
        if m not in df.columns:
            continue
        vals = pd.to_numeric(df[m], errors="coerce").to_numpy(dtype=np.float64)
        label = _METRIC_NAMES.get(m, m)
        fig.add_trace(
            go.Bar(
                x=classes, y=vals, name=label, marker=dict(color=_METRIC_COLORS.get(m)),
                customdata=df["support"].to_numpy(),
                hovertemplate=f"%{{x}}<br>{label}: %{{y:.3f}}<br>support: %{{customdata:,}} cells<extra></extra>",
            )
        )
    for i, c in enumerate(classes):
        if c not in small:
            continue
        fig.add_vrect(x0=i - 0.5, x1=i + 0.5, fillcolor=_HIGHLIGHT_FILL, line_width=0, layer="below")
        f1 = df.loc[i, "f1"] if "f1" in df.columns else None
        label = f"F1 {float(f1):.2f}" if f1 is not None and pd.notna(f1) else "small"
        fig.add_annotation(x=c, y=1.04, yref="y", text=label, showarrow=False, yanchor="bottom",
                           font=dict(color=_HIGHLIGHT_TEXT))
    if small:
        fig.add_annotation(
            x=1, y=1.0, xref="paper", yref="paper", xanchor="right", yanchor="bottom", yshift=28, showarrow=False,
            text=f"shaded: the {len(small)} smallest class{'es' if len(small) != 1 else ''}",
            font=dict(color=_HIGHLIGHT_TEXT),
        )
    style(fig, title=title, height=480)
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(tickmode="array", tickvals=classes, ticktext=ticktext, tickangle=0 if len(classes) <= 8 else -45,
                     type="category", title_text="class (largest first)")
    fig.update_yaxes(title_text="score", range=[0, 1.12], tickvals=[0, 0.25, 0.5, 0.75, 1.0])
    fig.update_layout(margin=dict(t=110))
    return fig


def _bins(d: Mapping) -> pd.DataFrame:
    """Reliability dict (``bin_lower``, ``bin_upper``, ``confidence``, ``accuracy``, ``count``) as a frame."""
    n = len(d.get("count", []))
    df = pd.DataFrame({k: pd.to_numeric(pd.Series(d.get(k, [np.nan] * n), dtype=object), errors="coerce")
                       for k in ("bin_lower", "bin_upper", "confidence", "accuracy", "count")})
    df["count"] = df["count"].fillna(0).astype(np.int64)
    return df


def reliability_diagram(
    before: Mapping,
    after: Mapping | None = None,
    *,
    ece_before: float | None = None,
    ece_after: float | None = None,
    temperature: float | None = None,
    title: str | None = "Calibration (test cells)",
) -> go.Figure:
    """Accuracy against confidence per confidence bin, before and after temperature scaling.

    The unknown-cell threshold is a confidence, so it only means what it says if
    confidence matches accuracy (points on the diagonal). The lower panel shows
    how many cells fall in each bin, so a wild point backed by one cell is read as such.

    Parameters
    ----------
    before, after
        Reliability dicts as in ``RunStore.reliability()`` (``"before"`` / ``"after"``):
        lists ``bin_lower``, ``bin_upper``, ``confidence``, ``accuracy`` (``None`` for
        empty bins) and ``count``. ``after`` may be omitted.
    ece_before, ece_after
        Expected calibration errors to print in the legend (``calibration`` of ``RunStore.metrics()``).
    temperature
        The fitted temperature, named in the "after" legend entry.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.06)
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                   line=dict(color=REFERENCE_COLOR, dash="dash", width=2), hoverinfo="skip"),
        row=1, col=1,
    )
    series = [("before", before, ece_before, "#FF7F0E")]
    if after is not None:
        series.append(("after", after, ece_after, "#1F77B4"))
    for key, d, ece, color in series:
        df = _bins(d)
        if key == "before":
            name = "before calibration"
        else:
            name = "after temperature scaling" + (f" (T={temperature:.3g})" if temperature is not None else "")
        if ece is not None and np.isfinite(ece):
            name += f", ECE {ece:.3f}"
        ok = (df["count"] > 0) & df["confidence"].notna() & df["accuracy"].notna()
        pts = df[ok]
        custom = np.stack([pts["bin_lower"], pts["bin_upper"], pts["count"]], axis=1) if len(pts) else None
        sizes = 8 + 14 * np.sqrt(pts["count"] / max(1, int(df["count"].max()))) if len(pts) else 8
        fig.add_trace(
            go.Scatter(
                x=pts["confidence"], y=pts["accuracy"], mode="lines+markers", name=name, legendgroup=key,
                line=dict(color=color, width=3),
                marker=dict(size=sizes, color=color, line=dict(color="white", width=1)),
                customdata=custom,
                hovertemplate=("confidence bin %{customdata[0]:.2f}–%{customdata[1]:.2f}<br>mean confidence %{x:.3f}"
                               "<br>accuracy %{y:.3f}<br>%{customdata[2]:,} cells<extra>" + key + "</extra>"),
            ),
            row=1, col=1,
        )
        centers = (df["bin_lower"] + df["bin_upper"]) / 2
        width = (df["bin_upper"] - df["bin_lower"]) / (len(series) + 0.5)
        fig.add_trace(
            go.Bar(x=centers, y=df["count"], width=width, name=f"cells ({key})", legendgroup=key, showlegend=False,
                   marker=dict(color=color), customdata=np.stack([df["bin_lower"], df["bin_upper"]], axis=1),
                   hovertemplate="confidence %{customdata[0]:.2f}–%{customdata[1]:.2f}<br>%{y:,} cells"
                                 f"<extra>{key}</extra>"),
            row=2, col=1,
        )
    fig.update_layout(barmode="group")
    style(fig, title=title, height=620)
    fig.update_xaxes(range=[0, 1], tickformat=".1f")
    fig.update_xaxes(title_text="confidence (max probability)", row=2, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    most = max([int(_bins(d)["count"].max() or 0) for _, d, _, _ in series] + [0])
    # cell counts are whole numbers: no "0 0.5 1 1.5" (or "0 1 1 2" once formatted) on a small test set
    fig.update_yaxes(title_text="cells", rangemode="tozero", tickformat=",d", row=2, col=1,
                     **({"dtick": 1} if most <= 6 else {}))
    fig.update_layout(legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top", bgcolor="rgba(255,255,255,0.85)"))
    return fig
