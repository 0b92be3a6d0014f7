"""Shared look of every scapp figure: white background and fonts readable on a projector.

Applied per figure (``fig.update_layout``), never through ``plotly.io.templates``,
so importing scapp changes nothing for other plotly users in the same process.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

FONT_FAMILY = "Arial, Helvetica, sans-serif"
FONT_SIZE = 15  # body text, legend, hover
TICK_SIZE = 14
TITLE_SIZE = 20
TEXT_COLOR = "#222222"
GRID_COLOR = "#E5E5E5"
REFERENCE_COLOR = "#888888"  # diagonals, best-epoch lines


def style(
    fig: go.Figure,
    *,
    title: str | None,
    height: int | None = None,
    legend_title: str | None = None,
) -> go.Figure:
    """Apply the scapp look to ``fig`` in place and return it."""
    fig.update_layout(
        template="plotly_white",
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=dict(family=FONT_FAMILY, size=FONT_SIZE, color=TEXT_COLOR),
        title=dict(text=title, font=dict(size=TITLE_SIZE), x=0.01, xanchor="left") if title else None,
        hoverlabel=dict(font=dict(size=FONT_SIZE, family=FONT_FAMILY)),
        legend=dict(font=dict(size=FONT_SIZE), title=dict(text=legend_title) if legend_title else None),
        margin=dict(l=70, r=30, t=80 if title else 40, b=60),
    )
    if height is not None:
        fig.update_layout(height=int(height))
    fig.update_xaxes(
        tickfont=dict(size=TICK_SIZE), title_font=dict(size=FONT_SIZE + 1), gridcolor=GRID_COLOR,
        linecolor="#BBBBBB", showline=True, zeroline=False,
    )
    fig.update_yaxes(
        tickfont=dict(size=TICK_SIZE), title_font=dict(size=FONT_SIZE + 1), gridcolor=GRID_COLOR,
        linecolor="#BBBBBB", showline=True, zeroline=False,
    )
    fig.update_annotations(font_size=FONT_SIZE)
    return fig


def message_figure(message: str, *, title: str | None = None, height: int = 360) -> go.Figure:
    """A blank figure that says why there is nothing to draw yet (no data, no epoch)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font=dict(size=FONT_SIZE + 3, color="#666666"),
    )
    style(fig, title=title, height=height)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def fmt_num(x: float) -> str:
    """Compact number for hover/labels: thousands separators for integers, 3 significant digits else."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.3g}" if abs(x) >= 1000 else f"{x:.3g}"
