"""Issue 11 on Explore's figures: the confusion matrix is clickable (defect 2), one cell's explanation shows only
the genes it names, beside their expression (defect 3), counts get whole-number ticks (defect 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scapp import viz


def _cm() -> pd.DataFrame:
    return pd.DataFrame([[5, 2, 0], [1, 7, 0], [0, 3, 4]], index=["A", "B", "C"], columns=["A", "B", "C"])


def test_confusion_matrix_has_one_clickable_point_per_cell():
    fig = viz.confusion_heatmap(_cm())
    heat, layer = fig.data
    assert heat.hoverinfo == "skip" and layer.type == "scatter"
    pts = set(zip(layer.y, layer.x))  # (true, predicted), as the page reads a selected point
    assert pts == {(t, p) for t in "ABC" for p in "ABC"}
    counts = {(t, p): c for t, p, (c, _) in zip(layer.y, layer.x, layer.customdata)}
    assert counts[("C", "B")] == "3" and counts[("A", "A")] == "5"
    assert layer.marker.color == "rgba(0,0,0,0)"  # invisible: the heatmap is what one sees
    # nearest centre wins wherever one clicks in the plot; a click selects (what st.plotly_chart's on_select hears)
    assert fig.layout.hovermode == "closest" and fig.layout.hoverdistance == -1
    assert fig.layout.clickmode == "event+select"
    assert not fig.layout.shapes


def test_confusion_matrix_outlines_the_selected_cell():
    fig = viz.confusion_heatmap(_cm(), selected=("C", "B"))
    (shape,) = fig.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (0.5, 1.5, 1.5, 2.5)  # column B, row C
    assert not viz.confusion_heatmap(_cm(), selected=("Z", "B")).layout.shapes  # a class no longer in the matrix


def test_small_count_scales_tick_whole_numbers():
    raw = viz.confusion_heatmap(_cm(), normalize=False).data[0]
    assert raw.colorbar.dtick == 1 and raw.colorbar.tickformat == ",d"
    d = {"bin_lower": [0, 0.5], "bin_upper": [0.5, 1], "confidence": [0.3, 0.8], "accuracy": [0.2, 0.9],
         "count": [2, 3]}
    fig = viz.reliability_diagram(d, d)
    assert fig.layout.yaxis2.dtick == 1 and fig.layout.yaxis2.tickformat == ",d"


def test_cell_explanation_shows_only_non_zero_genes_beside_expression():
    genes = [f"g{i}" for i in range(30)]
    mask = np.zeros(30)
    mask[[3, 7, 20, 29]] = [0.1, 0.5, 0.3, 0.1]
    expr = np.zeros(30)
    expr[[7, 29]] = [2.5, 1.0]
    fig = viz.cell_explain_bar(genes, mask, expression=expr, value_label="share of the cell's mask")
    scores, expression = fig.data
    assert list(scores.y) == ["g7", "g20", "g3", "g29"]  # the 26 zeros are gone, largest first
    assert list(expression.y) == list(scores.y)
    np.testing.assert_allclose(expression.x, [2.5, 0.0, 0.0, 1.0])
    assert list(expression.text) == ["2.5", "0 (silent)", "0 (silent)", "1"]
    assert "4 of 30 genes" in fig.layout.title.text
    only = viz.cell_explain_bar(genes, mask, top=2)
    assert len(only.data) == 1 and list(only.data[0].y) == ["g7", "g20"] and "2 more" in only.layout.title.text
    assert "no gene" in viz.cell_explain_bar(genes, np.zeros(30)).layout.annotations[0].text
