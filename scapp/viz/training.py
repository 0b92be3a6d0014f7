"""Live and final training curves, drawn from the per-epoch history (``RunStore.epochs()``).

The Train page redraws this every few seconds while a job runs, so it must
cope with a history that is still empty, has one epoch, or lacks columns a
method does not log.

Which curves: a classifier's loss and validation scores by default; a method that logs other things per epoch
(ZiPo: likelihood, rate error, zero inflation, learning rate) declares its own panels (``ModelSpec.curves``) and
the page passes them in, so nothing here knows a method's name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scapp.viz._style import REFERENCE_COLOR, message_figure, style

__all__ = ["curve_help", "training_curves"]

# (column, legend name, colour, dash)
_LOSSES = (
    ("train_loss", "train loss", "#1F77B4", "solid"),
    ("valid_loss", "validation loss", "#FF7F0E", "solid"),
)
_METRICS = (
    ("valid_accuracy", "accuracy", "#2CA02C", "solid"),
    ("valid_macro_f1", "macro-F1", "#D62728", "solid"),
    ("valid_balanced_accuracy", "balanced accuracy", "#9467BD", "dash"),
)
WAITING = "Waiting for the first epoch…"
# a declared panel's series, by legend name (the same name has the same colour in every panel)
_SERIES_COLORS = {"train": "#1F77B4", "validation": "#FF7F0E"}
_MORE_COLORS = ("#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F")


class _Panel(NamedTuple):
    """The shape ``training_curves`` reads a panel in (``scapp.models.registry.CurvePanel`` has the same fields)."""

    title: str
    series: tuple[tuple[str, str], ...]
    y_title: str = ""
    log_y: bool = False
    unit_range: bool = False
    help: str = ""


def _default_panels() -> tuple[_Panel, ...]:
    """A classifier's chart: the loss, and the validation scores."""
    return (_Panel("Loss", tuple((c, lab) for c, lab, _, _ in _LOSSES), y_title="loss"),
            _Panel("Validation metrics", tuple((c, lab) for c, lab, _, _ in _METRICS), y_title="score",
                   unit_range=True))


def _style_of(column: str, label: str, used: dict[str, str]) -> tuple[str, str]:
    """Colour and dash of a series: the classifier's fixed ones, else one per legend name."""
    for name, _, color, dash in (*_LOSSES, *_METRICS):
        if name == column:
            return color, dash
    if label not in used:
        used[label] = _SERIES_COLORS.get(label, _MORE_COLORS[len(used) % len(_MORE_COLORS)])
    return used[label], "solid"


def curve_help(panels: Sequence[Any] | None, history: pd.DataFrame | None = None) -> list[str]:
    """The one-sentence explanation of each declared panel the history has data for (for a caption)."""
    out = []
    for p in panels or ():
        if getattr(p, "help", "") and (history is None or any(c in history.columns for c, _ in p.series)):
            out.append(f"**{p.title}**: {p.help}")
    return out


def epoch_tick(lo: float, hi: float) -> int:
    """Spacing of the epoch ticks: every epoch up to 10, then a round step giving at most about 10 ticks."""
    span = max(hi - lo, 1.0)
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if span / step <= 10:
            return step
    return int(10 ** np.ceil(np.log10(span / 10)))


def log_ticks(lo: float, hi: float) -> list[float] | None:
    """Round tick values for a log axis over ``[lo, hi]``, printed as plain numbers: 1-2-5 per decade, finer when
    that leaves fewer than three (plotly's own labels on a short log range read "2, 10⁻², 9, 8 …" and overlap)."""
    lo, hi = max(lo, 1e-300), max(hi, lo)
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8), (1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9)):
        ticks = [round(m * 10.0**k, 12) for k in range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
                 for m in steps]
        ticks = [t for t in ticks if lo * 0.999 <= t <= hi * 1.001]
        if len(ticks) >= 3:
            return ticks
    return ticks if len(ticks) >= 2 else None  # a very short range: plotly's own ticks


def loss_axis(history: pd.DataFrame, *, factor: float = 4.0,
              series: Sequence[tuple[str, str]] | None = None) -> tuple[float, str] | None:
    """``(top, note)`` when a few epochs' values would flatten the rest of the curve, else None.

    That is when a value is over ``factor`` × the 90th percentile of all values shown (a spike, as Hydra's VAE had
    before issue 11). The axis then ends just above every other point, and the note names the
    points left off the scale with their values, so nothing is hidden. Negative values: never clipped.
    ``series``: ``(column, legend name)`` of one panel; default the train and validation loss.
    """
    series = tuple(series) if series is not None else tuple((n, lab) for n, lab, _, _ in _LOSSES)
    labels = dict(series)
    vals = []
    for name, _ in series:
        if name in history.columns:
            v = pd.to_numeric(history[name], errors="coerce")
            vals.append((name, v))
    allv = pd.concat([v for _, v in vals]).dropna() if vals else pd.Series(dtype=float)
    allv = allv[np.isfinite(allv)]
    if len(allv) < 3 or allv.min() < 0:
        return None
    # the percentile leaves out the largest tenth of the values (at least one): in a short history (a live chart's
    # first epochs) a single spike would otherwise lift the 90th percentile with it and never be clipped
    rest = np.sort(allv.to_numpy(float))[: len(allv) - max(1, len(allv) // 10)]
    limit = factor * max(float(np.percentile(rest, 90)), 1e-12)
    if allv.max() <= limit:
        return None
    top = 1.1 * float(allv[allv <= limit].max())
    off = []
    for name, v in vals:
        label = labels[name]
        for ep, x in zip(history["epoch"], v):
            if np.isfinite(x) and x > top:
                off.append(f"{label} {x:.3g} at epoch {ep:g}")
    return top, "Off the scale: " + "; ".join(off[:3]) + (" …" if len(off) > 3 else "")


def training_curves(
    history: pd.DataFrame,
    *,
    panels: Sequence[Any] | None = None,
    title: str | None = "Training progress",
    height: int = 420,
) -> go.Figure:
    """Per-epoch curves against epoch, one panel per quantity, two panels a row.

    Watching them tells whether a model is still learning, over-fitting
    (validation loss rising while train loss falls) or done; the epoch kept as
    the final model (``best_epoch``) is marked with a dashed line.

    Parameters
    ----------
    history
        One row per epoch, as in ``RunStore.epochs()`` / ``RunStore.history()``: ``epoch``, ``best_epoch`` and
        the columns the panels name. Missing columns are skipped, a panel without any is left out.
        Rows without an epoch are ignored; a repeated epoch keeps its last row.
    panels
        The method's declared panels (``ModelSpec.curves``: objects with ``title``, ``series`` as
        ``(column, legend name)`` pairs, ``y_title``, ``log_y``, ``unit_range``). None or empty: a classifier's
        "Loss" (``train_loss``, ``valid_loss``) and "Validation metrics" (``valid_accuracy``,
        ``valid_macro_f1``, ``valid_balanced_accuracy``).
    height
        Of one row of panels.

    Returns
    -------
    plotly.graph_objects.Figure
        With no epoch yet, an empty figure that says "Waiting for the first epoch…". Each trace's ``meta`` is
        the history column it draws.
    """
    h = pd.DataFrame(history).copy()
    if len(h) and "epoch" not in h.columns:
        h["epoch"] = np.arange(1, len(h) + 1)
    if len(h):
        h["epoch"] = pd.to_numeric(h["epoch"], errors="coerce")
        h = h.dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last").sort_values("epoch")
    if len(h) == 0:
        return message_figure(WAITING, title=title, height=height)

    declared = tuple(panels) if panels else _default_panels()
    series_of: list[tuple[Any, list[tuple[str, str, np.ndarray]]]] = []
    for p in declared:
        drawn = []
        for col, label in p.series:
            if col not in h.columns:
                continue
            y = pd.to_numeric(h[col], errors="coerce").to_numpy(dtype=np.float64)
            if p.log_y:
                y = np.where(y > 0, y, np.nan)  # a log axis cannot show 0 or less
            if np.isfinite(y).any():
                drawn.append((col, label, y))
        series_of.append((p, drawn))
    if not panels:  # a classifier keeps both panels (the metrics one fills in as they are logged)
        shown = series_of
    else:
        shown = [(p, d) for p, d in series_of if d]
    if not any(d for _, d in shown):  # rows, but none of the curves logged yet
        return message_figure(WAITING, title=title, height=height)

    n = len(shown)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[p.title for p, _ in shown],
                        horizontal_spacing=0.1, vertical_spacing=0.16 if nrows > 1 else 0.1)
    mode = "lines+markers" if len(h) <= 60 else "lines"
    epochs = h["epoch"].to_numpy()
    used: dict[str, str] = {}
    in_legend: set[str] = set()
    for k, (p, drawn) in enumerate(shown):
        row, col = k // ncols + 1, k % ncols + 1
        fmt = ".3f" if p.unit_range else ".4g"
        for column, label, y in drawn:
            color, dash = _style_of(column, label, used)
            fig.add_trace(
                go.Scatter(
                    x=epochs, y=y, name=label, mode=mode, line=dict(color=color, width=3, dash=dash),
                    marker=dict(size=7), connectgaps=True, legendgroup=label, showlegend=label not in in_legend,
                    meta=column,
                    hovertemplate=f"epoch %{{x}}<br>{p.title}, {label}: %{{y:{fmt}}}<extra></extra>",
                ),
                row=row, col=col,
            )
            in_legend.add(label)
        if p.unit_range:
            fig.update_yaxes(range=[0, 1.02], row=row, col=col)
        elif p.log_y:
            vals = np.concatenate([y[np.isfinite(y)] for _, _, y in drawn])
            lo_y, hi_y = float(vals.min()), float(vals.max())
            if hi_y < 1.5 * lo_y:  # (nearly) flat, e.g. a learning rate before its first decay: plotly's own range
                lo_y, hi_y = lo_y / 2, hi_y * 2  # is a decade of overlapping minor labels; a factor 2 each side
                fig.update_yaxes(range=[math.log10(lo_y), math.log10(hi_y)], row=row, col=col)
            fig.update_yaxes(type="log", tickvals=log_ticks(lo_y, hi_y), tickformat="~g", row=row, col=col)
        else:
            clipped = loss_axis(h, series=[(c, lab) for c, lab, _ in drawn])
            if clipped is not None:
                top, note = clipped
                fig.update_yaxes(range=[0, top], row=row, col=col)
                ax = "" if k == 0 else str(k + 1)
                fig.add_annotation(x=0, y=1.0, xref=f"x{ax} domain", yref=f"y{ax} domain", text=note,
                                   showarrow=False, xanchor="left", yanchor="top", align="left",
                                   font=dict(size=12), bgcolor="rgba(255,255,255,0.85)")
        if p.y_title:
            fig.update_yaxes(title_text=p.y_title, row=row, col=col)
    if "best_epoch" in h.columns:
        best = pd.to_numeric(h["best_epoch"], errors="coerce").dropna()
        if len(best):
            b = float(best.iloc[-1])
            for k in range(n):
                fig.add_vline(x=b, line=dict(color=REFERENCE_COLOR, dash="dash", width=2),
                              row=k // ncols + 1, col=k % ncols + 1)
            right = b > (float(epochs.min()) + float(epochs.max())) / 2  # the note goes where there is room
            ax = str(min(n, ncols)) if min(n, ncols) > 1 else ""  # the top right panel: the loss note is top left
            fig.add_annotation(
                x=b, y=1.0, xref=f"x{ax}", yref=f"y{ax} domain", text=f"best epoch {b:g}", showarrow=False,
                xanchor="right" if right else "left", yanchor="top", xshift=-4 if right else 4,
                bgcolor="rgba(255,255,255,0.8)",
            )
    for k in range(n):
        if k + ncols >= n:  # the lowest panel of its column: one "epoch" title, not one per row
            fig.update_xaxes(title_text="epoch", row=k // ncols + 1, col=k % ncols + 1)
    lo, hi = float(epochs.min()), float(epochs.max())
    pad = 1.0 if hi - lo < 1 else max(0.25, 0.03 * (hi - lo))  # one epoch: keep the point off the frame
    fig.update_xaxes(range=[lo - pad, hi + pad])  # every panel alike (the best-epoch note would widen one)
    # whole epochs only: plotly's automatic ticks at 1, 1.5, 2 … printed as integers read "1 2 2 3 3"
    fig.update_xaxes(tickmode="linear", tick0=1, dtick=epoch_tick(lo, hi), tickformat="d")
    fig.update_layout(hovermode="x unified")
    total = height if nrows == 1 else int(height * 0.8 * nrows)
    style(fig, title=title, height=total)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22 / nrows, x=0), margin=dict(b=110))
    return fig
