"""Live and final training curves, drawn from the per-epoch history (``RunStore.epochs()``).

The Train page redraws this every few seconds while a job runs, so it must
cope with a history that is still empty, has one epoch, or lacks columns a
method does not log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scapp.viz._style import REFERENCE_COLOR, message_figure, style

__all__ = ["training_curves"]

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


def epoch_tick(lo: float, hi: float) -> int:
    """Spacing of the epoch ticks: every epoch up to 10, then a round step giving at most about 10 ticks."""
    span = max(hi - lo, 1.0)
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if span / step <= 10:
            return step
    return int(10 ** np.ceil(np.log10(span / 10)))


def loss_axis(history: pd.DataFrame, *, factor: float = 4.0) -> tuple[float, str] | None:
    """``(top, note)`` when a few epochs' loss would flatten the rest of the curve, else None.

    That is when a loss is over ``factor`` × the 90th percentile of all losses shown (a spike, as Hydra's VAE had
    before issue 11). The loss axis then ends just above every other point, and the note names the
    points left off the scale with their values, so nothing is hidden. Negative losses: never clipped.
    """
    vals = []
    for name, _, _, _ in _LOSSES:
        if name in history.columns:
            v = pd.to_numeric(history[name], errors="coerce")
            vals.append((name, v))
    allv = pd.concat([v for _, v in vals]).dropna() if vals else pd.Series(dtype=float)
    allv = allv[np.isfinite(allv)]
    if len(allv) < 3 or allv.min() < 0:
        return None
    limit = factor * max(float(np.percentile(allv, 90)), 1e-12)
    if allv.max() <= limit:
        return None
    top = 1.1 * float(allv[allv <= limit].max())
    off = []
    for name, v in vals:
        label = dict((n, lab) for n, lab, _, _ in _LOSSES)[name]
        for ep, x in zip(history["epoch"], v):
            if np.isfinite(x) and x > top:
                off.append(f"{label} {x:.3g} at epoch {ep:g}")
    return top, "Off the scale: " + "; ".join(off[:3]) + (" …" if len(off) > 3 else "")


def training_curves(
    history: pd.DataFrame,
    *,
    title: str | None = "Training progress",
    height: int = 420,
) -> go.Figure:
    """Loss (train/validation) and validation metrics against epoch, as two panels.

    Watching both panels tells whether a model is still learning, over-fitting
    (validation loss rising while train loss falls) or done; the epoch kept as
    the final model (``best_epoch``) is marked with a dashed line.

    Parameters
    ----------
    history
        One row per epoch, as in ``RunStore.epochs()`` / ``RunStore.history()``: ``epoch``
        and any of ``train_loss``, ``valid_loss``, ``valid_accuracy``, ``valid_macro_f1``,
        ``valid_balanced_accuracy``, ``best_epoch``. Missing columns are skipped.
        Rows without an epoch are ignored; a repeated epoch keeps its last row.

    Returns
    -------
    plotly.graph_objects.Figure
        With no epoch yet, an empty figure that says "Waiting for the first epoch…".
    """
    h = pd.DataFrame(history).copy()
    if len(h) and "epoch" not in h.columns:
        h["epoch"] = np.arange(1, len(h) + 1)
    if len(h):
        h["epoch"] = pd.to_numeric(h["epoch"], errors="coerce")
        h = h.dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last").sort_values("epoch")
    if len(h) == 0:
        return message_figure(WAITING, title=title, height=height)

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Validation metrics"), horizontal_spacing=0.1)
    mode = "lines+markers" if len(h) <= 60 else "lines"
    epochs = h["epoch"].to_numpy()
    for col, specs, fmt in ((1, _LOSSES, ".4f"), (2, _METRICS, ".3f")):
        for name, label, color, dash in specs:
            if name not in h.columns:
                continue
            y = pd.to_numeric(h[name], errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(y).any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=epochs, y=y, name=label, mode=mode, line=dict(color=color, width=3, dash=dash),
                    marker=dict(size=7), connectgaps=True,
                    hovertemplate=f"epoch %{{x}}<br>{label}: %{{y:{fmt}}}<extra></extra>",
                ),
                row=1, col=col,
            )
    if not fig.data:  # rows, but none of the curves logged yet
        return message_figure(WAITING, title=title, height=height)
    if "best_epoch" in h.columns:
        best = pd.to_numeric(h["best_epoch"], errors="coerce").dropna()
        if len(best):
            b = float(best.iloc[-1])
            for col in (1, 2):
                fig.add_vline(x=b, line=dict(color=REFERENCE_COLOR, dash="dash", width=2), row=1, col=col)
            right = b > (float(epochs.min()) + float(epochs.max())) / 2  # the note goes where there is room
            fig.add_annotation(
                x=b, y=1.0, xref="x2", yref="y2 domain", text=f"best epoch {b:g}", showarrow=False,
                xanchor="right" if right else "left", yanchor="top", xshift=-4 if right else 4,
                bgcolor="rgba(255,255,255,0.8)",
            )
    fig.update_xaxes(title_text="epoch")
    lo, hi = float(epochs.min()), float(epochs.max())
    pad = 1.0 if hi - lo < 1 else max(0.25, 0.03 * (hi - lo))  # one epoch: keep the point off the frame
    fig.update_xaxes(range=[lo - pad, hi + pad])  # both panels alike (the best-epoch note would widen one)
    # whole epochs only: plotly's automatic ticks at 1, 1.5, 2 … printed as integers read "1 2 2 3 3"
    fig.update_xaxes(tickmode="linear", tick0=1, dtick=epoch_tick(lo, hi), tickformat="d")
    clipped = loss_axis(h)
    if clipped is not None:
        top, note = clipped
        fig.update_yaxes(range=[0, top], row=1, col=1)
        fig.add_annotation(x=0, y=1.0, xref="x domain", yref="y domain", text=note, showarrow=False,
                           xanchor="left", yanchor="top", align="left", font=dict(size=12),
                           bgcolor="rgba(255,255,255,0.85)")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="score", range=[0, 1.02], row=1, col=2)
    fig.update_layout(hovermode="x unified")
    style(fig, title=title, height=height)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0), margin=dict(b=110))
    return fig
