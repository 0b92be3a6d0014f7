"""Pictures of two or more runs side by side: headline metrics and where their predictions agree.

Inputs are the tables of :class:`scapp.evaluate.compare.RunComparison`; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scapp.viz._style import fmt_num, message_figure, style

__all__ = ["agreement_heatmap", "ensemble_members_bars", "metrics_comparison_bars", "pretraining_recall_bars"]

_METRIC_NAMES = {"macro_f1": "macro F1", "median_f1": "median class F1", "balanced_accuracy": "balanced accuracy",
                 "accuracy": "accuracy", "ece_after": "ECE (calibrated)"}
_RUN_COLORS = ("#08306B", "#F28E2B", "#59A14F", "#B07AA1", "#E15759", "#76B7B2", "#9C755F", "#EDC948")


def agreement_heatmap(
    counts: pd.DataFrame,
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    title: str | None = "Agreement between the two runs",
) -> go.Figure:
    """Run A's predicted class (rows) against run B's (columns), number of cells printed in each square.

    Colour is the fraction of run A's class, so the diagonal is where the runs agree and
    any off-diagonal square is a group of cells the two models call differently.

    Parameters
    ----------
    counts
        Cells, A's classes × B's classes (:meth:`RunComparison.agreement`).
    name_a, name_b
        Axis titles (default: the index and column names of ``counts``).

    Returns
    -------
    plotly.graph_objects.Figure
        ``data[0].text`` holds the counts as strings.
    """
    if counts.size == 0 or counts.to_numpy().sum() == 0:
        return message_figure("No shared cells to compare.", title=title)
    name_a = name_a or str(counts.index.name or "run A")
    name_b = name_b or str(counts.columns.name or "run B")
    C = np.nan_to_num(counts.to_numpy(dtype=np.float64))
    row = C.sum(axis=1, keepdims=True)
    frac = np.divide(C, row, out=np.zeros_like(C), where=row > 0)
    text = np.array([[fmt_num(v) if v else "" for v in r] for r in C], dtype=object)
    y = [str(c) for c in counts.index]
    x = [str(c) for c in counts.columns]
    agree = sum(C[i, x.index(c)] for i, c in enumerate(y) if c in x)
    total = C.sum()
    fig = go.Figure(go.Heatmap(
        z=frac, x=x, y=y, text=text, customdata=C, colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        texttemplate="%{text}" if max(len(x), len(y)) <= 30 else None, textfont=dict(size=14),
        colorbar=dict(title=dict(text="fraction<br>of the row"), tickformat=".0%"),
        hovertemplate=(f"{_short(name_a)}: %{{y}}<br>{_short(name_b)}: %{{x}}<br>%{{customdata:,}} cells"
                       "<br>%{z:.1%} of the row<extra></extra>"),
    ))
    n = max(len(x), len(y))
    full = f"{title} — same call for {agree / total:.1%} of {fmt_num(total)} cells" if title else None
    style(fig, title=full, height=max(440, 220 + 38 * n))
    fig.update_xaxes(title_text=f"predicted by {name_b}", tickangle=-45, type="category", showgrid=False,
                     showline=False)
    fig.update_yaxes(title_text=f"predicted by {name_a}", autorange="reversed", type="category", showgrid=False,
                     showline=False)
    return fig


def _short(run_id: str, n: int = 28) -> str:
    return run_id if len(run_id) <= n else run_id[: n - 1] + "…"


def metrics_comparison_bars(
    metrics: pd.DataFrame,
    *,
    keys: tuple[str, ...] = ("macro_f1", "median_f1", "balanced_accuracy", "accuracy"),
    names: Mapping[str, str] | None = None,
    title: str | None = "Test-set metrics, run by run",
) -> go.Figure:
    """Grouped bars: one group per metric, one bar per run, value printed on the bar.

    Parameters
    ----------
    metrics
        One row per run with ``run_id`` and the ``keys`` columns (:attr:`RunComparison.metrics`).
    names
        ``{run_id: legend name}`` (default: the run id).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    keep = [k for k in keys if k in metrics.columns]
    if metrics.empty or not keep:
        return message_figure("No metrics to compare.", title=title)
    fig = go.Figure()
    labels = [_METRIC_NAMES.get(k, k) for k in keep]
    for i, row in enumerate(metrics.itertuples(index=False)):
        rid = str(row.run_id)
        vals = np.array([getattr(row, k) for k in keep], dtype=np.float64)
        fig.add_trace(go.Bar(
            x=labels, y=vals, name=(names or {}).get(rid, rid), marker=dict(color=_RUN_COLORS[i % len(_RUN_COLORS)]),
            text=[f"{v:.3f}" if np.isfinite(v) else "" for v in vals], textposition="outside",
            hovertemplate=f"{rid}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
        ))
    style(fig, title=title, height=440)
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05,
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    fig.update_yaxes(title_text="score", range=[0, 1.1], tickvals=[0, 0.25, 0.5, 0.75, 1.0])
    fig.update_xaxes(type="category")
    return fig


def ensemble_members_bars(members: pd.DataFrame, *, ensemble: Mapping[str, float],
                          title: str | None = "Members and the ensemble") -> go.Figure:
    """Validation and test macro-F1 of each member run beside the ensemble's; the members' weights in the labels.

    Parameters
    ----------
    members
        One row per member: ``name``, ``weight``, ``valid_macro_f1``, ``test_macro_f1`` (as the ensemble run's
        metrics list them).
    ensemble
        The ensemble's ``valid_macro_f1`` and ``test_macro_f1``.
    """
    if members.empty:
        return message_figure("This ensemble has no members.", title=title)
    names = [f"{n}<br>weight {w:.0%}" for n, w in zip(members["name"], members["weight"])] + ["<b>ensemble</b>"]
    fig = go.Figure()
    for col, label, color in (("valid_macro_f1", "validation", "#9ECAE1"), ("test_macro_f1", "test", "#08306B")):
        vals = [*members[col].astype(float).tolist(), float(ensemble.get(col, np.nan))]
        fig.add_trace(go.Bar(x=names, y=vals, name=f"{label} macro F1", marker_color=color,
                             text=[fmt_num(round(v, 3)) if np.isfinite(v) else "–" for v in vals],
                             textposition="outside", hovertemplate="%{x}<br>" + label + " macro F1 %{y:.3f}"
                                                                   "<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.3)
    fig.update_yaxes(title_text="macro F1", range=[0, 1.08])
    return style(fig, title=title, height=420, legend_title=None)


def _wrap(name: str, width: int = 10) -> str:
    """A class name broken at spaces into lines of about ``width`` characters ("CD4 T memory" → "CD4 T<br>memory")."""
    lines: list[str] = []
    for word in name.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines) or name


def pretraining_recall_bars(per_class: pd.DataFrame, *, names: Mapping[str, str] | None = None,
                            title: str | None = "Recall per cell type: from scratch vs pretrained") -> go.Figure:
    """Grouped bars: per true class (rarest first, its test-cell count under the name), the recall of the run
    trained from scratch beside the recall of the run fine-tuned from a pretraining run.

    Parameters
    ----------
    per_class
        :attr:`scapp.evaluate.compare.PretrainingEffect.per_class` (``class``, ``support``, ``recall_scratch``,
        ``recall_pretrained``).
    names
        Legend names of the two arms, by ``"scratch"`` and ``"pretrained"``.
    """
    if per_class.empty:
        return message_figure("No test cells to compare.", title=title)
    df = per_class.sort_values(["support", "class"], kind="stable").reset_index(drop=True)
    # upright names, wrapped at spaces, with the test-cell count under each (rotated names ran into each other)
    x = [f"{_wrap(str(c))}<br><span style='font-size:11px'>n={n}</span>" for c, n in zip(df["class"], df["support"])]
    fig = go.Figure()
    names = {"scratch": "from scratch", "pretrained": "pretrained, then fine-tuned", **(names or {})}
    for arm, col, color in (("scratch", "recall_scratch", "#9ECAE1"), ("pretrained", "recall_pretrained", "#08306B")):
        vals = df[col].astype(float).to_numpy()
        fig.add_trace(go.Bar(x=x, y=vals, name=names[arm], marker_color=color, meta=col,
                             text=[f"{v:.2f}" if np.isfinite(v) else "–" for v in vals], textposition="outside",
                             customdata=df["class"], hovertemplate="%{customdata}<br>" + names[arm]
                             + " recall %{y:.3f}<extra></extra>"))
    style(fig, title=title, height=460, legend_title=None)
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_yaxes(title_text="recall (test cells)", range=[0, 1.12], tickvals=[0, 0.25, 0.5, 0.75, 1.0])
    fig.update_xaxes(type="category", title_text="cell type (rarest first)", tickangle=0)
    return fig
