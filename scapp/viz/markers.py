"""Pictures that set a model's marker genes beside the statistical ones, and rare vs common classes.

Inputs are the tidy tables of :mod:`scapp.explain.markers` and the run's
per-class scores (``RunStore.per_class()``); nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from scapp.viz._style import message_figure, style

__all__ = ["marker_overlap_bars", "rare_common_recall"]

_TOP_COLORS = ("#C6DBEF", "#6BAED6", "#2171B5", "#08306B")


def marker_overlap_bars(overlap: pd.DataFrame, *, title: str | None = "Model markers vs Wilcoxon markers") -> go.Figure:
    """Jaccard index of the two top-k lists per class, one bar per k (horizontal, classes as rows)."""
    if overlap.empty:
        return message_figure("No classes to compare (the reference markers need ≥ 2 cells per class).", title=title)
    classes = list(dict.fromkeys(overlap["class"]))
    fig = go.Figure()
    for i, (k, part) in enumerate(overlap.groupby("top", sort=True)):
        part = part.set_index("class").reindex(classes)
        fig.add_bar(y=classes, x=part["jaccard"], orientation="h", name=f"top {k}",
                    marker_color=_TOP_COLORS[i % len(_TOP_COLORS)],
                    customdata=part[["shared"]].to_numpy(),
                    hovertemplate="%{y}<br>top " + str(k) + ": Jaccard %{x:.2f} (%{customdata[0]} shared genes)"
                                  "<extra></extra>")
    style(fig, title=title, height=max(320, 60 + 28 * len(classes) * max(1, overlap["top"].nunique()) // 2),
          legend_title="list length")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="Jaccard index (0 = disjoint, 1 = same genes)", range=[0, 1])
    fig.update_yaxes(autorange="reversed")
    return fig


def rare_common_recall(per_class: pd.DataFrame, *, n: int = 3, colors: Mapping[str, str] | None = None,
                       accuracy: float | None = None, balanced_accuracy: float | None = None,
                       title: str | None = "Smallest and largest classes (test recall)") -> go.Figure:
    """Recall of the ``n`` smallest and ``n`` largest classes (the Hydra paper's view of balancing).

    Classes are ordered by training-set-independent test support; accuracy and
    balanced accuracy are drawn as reference lines because a model can win on
    one and lose on the other exactly through its rare classes.
    """
    t = per_class[per_class["support"] > 0].sort_values("support", kind="stable")
    if t.empty:
        return message_figure("No test cells.", title=title)
    pick = pd.concat([t.head(n), t.tail(n)]).drop_duplicates("class")
    group = ["smallest" if c in set(t.head(n)["class"]) else "largest" for c in pick["class"]]
    labels = [f"{c} (n={s:,})" for c, s in zip(pick["class"], pick["support"])]
    colors = colors or {}
    fig = go.Figure(go.Bar(x=labels, y=pick["recall"], marker_color=[colors.get(c, "#4292C6") for c in pick["class"]],
                           text=[f"{r:.2f}" for r in pick["recall"]], textposition="outside",
                           customdata=list(zip(group, pick["precision"])),
                           hovertemplate="%{x}<br>recall %{y:.3f}<br>precision %{customdata[1]:.3f}"
                                         "<br>%{customdata[0]} classes<extra></extra>"))
    fig.data[0].showlegend = False
    for val, name, dash in ((accuracy, "accuracy", "dot"), (balanced_accuracy, "balanced accuracy", "dash")):
        if val is not None:  # legend entries, not annotations: they never sit on a bar label
            fig.add_scatter(x=[labels[0], labels[-1]], y=[val, val], mode="lines", name=f"{name} {val:.3f}",
                            line=dict(color="#555555", dash=dash, width=2), hoverinfo="skip")
    style(fig, title=title, height=440)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_yaxes(title_text="recall", range=[0, 1.15])
    fig.update_xaxes(title_text=f"{min(n, len(t))} smallest · {min(n, len(t))} largest classes by test cells")
    return fig
