"""Pictures for the Annotate page: the query's own labels against the predictions, and the query's cell map.

Inputs are the tables of :class:`scapp.evaluate.query_labels.LabelCheck` and plain arrays; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scapp.viz._style import fmt_num, message_figure, style
from scapp.viz.embedding import embedding_scatter

__all__ = ["AGREEMENT_COLORS", "label_check_heatmap", "query_map"]


def label_check_heatmap(
    counts: pd.DataFrame,
    agreeing: Iterable[tuple[str, str]] = (),
    *,
    title: str | None = "Predicted class against the query's own labels",
) -> go.Figure:
    """Predicted class (rows) × given label (columns), cells printed in each square.

    Colour is the fraction of each given label's cells, so a small population that the
    model calls something else stands out as much as a large one. The squares that count
    as agreement under the current name mapping are outlined, so what is a different call
    and what is only a finer name ("CD4 T naive" for "CD4 T") can be told apart at a glance.

    Parameters
    ----------
    counts
        Cells, predicted × given (:meth:`LabelCheck.confusion`).
    agreeing
        (predicted class, given label) pairs that count as agreement (:meth:`LabelCheck.agreeing_pairs`).
    """
    if counts.size == 0 or counts.to_numpy().sum() == 0:
        return message_figure("No cells to compare: map at least one given label to a model class.", title=title)
    C = np.nan_to_num(counts.to_numpy(dtype=np.float64))
    col = C.sum(axis=0, keepdims=True)
    frac = np.divide(C, col, out=np.zeros_like(C), where=col > 0)
    text = np.array([[fmt_num(v) if v else "" for v in r] for r in C], dtype=object)
    y = [str(c) for c in counts.index]
    x = [str(c) for c in counts.columns]
    fig = go.Figure(go.Heatmap(
        z=frac, x=x, y=y, text=text, customdata=C, colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        texttemplate="%{text}" if max(len(x), len(y)) <= 40 else None, textfont=dict(size=14),
        colorbar=dict(title=dict(text="fraction of<br>given label"), tickformat=".0%"),
        hovertemplate=("given: %{x}<br>predicted: %{y}<br>%{customdata:,} cells<br>"
                       "%{z:.1%} of the given label<extra></extra>"),
    ))
    for pred, given in agreeing:
        if pred in y and given in x:
            i, j = y.index(pred), x.index(given)
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, xref="x", yref="y",
                          line=dict(color="#222222", width=2), fillcolor="rgba(0,0,0,0)", layer="above")
    style(fig, title=title, height=max(440, 220 + 36 * len(y)))
    fig.update_xaxes(title_text=str(counts.columns.name or "given label"), tickangle=-30, type="category",
                     showgrid=False, showline=False)
    fig.update_yaxes(title_text="predicted", autorange="reversed", type="category", showgrid=False, showline=False)
    fig.add_annotation(text="outlined: counts as agreement", x=1, y=1, xref="paper", yref="paper",
                       xanchor="right", yanchor="bottom", showarrow=False, font=dict(color="#555555"))
    return fig


def query_map(
    coords: np.ndarray,
    labels: np.ndarray | pd.Series,
    *,
    colors: Mapping[str, str] | None = None,
    method: str = "UMAP",
    hover: pd.DataFrame | None = None,
    color_label: str = "predicted type",
    height: int = 620,
) -> go.Figure:
    """Query cells on a 2-D map, coloured by a label (predicted type, the query's own labels, agreement).

    Drawn the full width of the page: the equal-scaled axes of
    :func:`scapp.viz.embedding_scatter` in a half-width column left the cells as specks
    beside a long legend.
    """
    return embedding_scatter(coords, np.asarray(labels, dtype=object), colors=colors, kind="categorical",
                             hover=hover, axis_labels=(f"{method} 1", f"{method} 2"), height=height,
                             color_label=color_label, title=f"Query cells coloured by {color_label} ({method})")


AGREEMENT_COLORS = {"agrees": "#9aa5b1", "differs": "#d6336c", "not compared": "#e3e6ea"}
"""Colours of :meth:`LabelCheck.cell_status` on a map: the cells that differ stand out."""
