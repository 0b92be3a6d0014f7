"""Plot builders of the Annotate page."""

from __future__ import annotations

import numpy as np

from scapp.evaluate.query_labels import check_labels
from scapp.viz.query_check import label_check_heatmap, query_map


def test_label_check_heatmap_outlines_the_agreeing_squares():
    chk = check_labels(["CD4 T naive", "CD4 T memory", "CD4 T naive", "CD8 T", "B"], ["CD4 T", "CD4 T", "CD8 T",
                                                                                       "CD8 T", "B"],
                       ["B", "CD4 T memory", "CD4 T naive", "CD8 T"], column="authors")
    fig = label_check_heatmap(chk.confusion(), chk.agreeing_pairs())
    hm = fig.data[0]
    assert list(hm.x) == ["CD4 T", "CD8 T", "B"] and "CD4 T naive" in hm.y
    assert len(fig.layout.shapes) == 4  # CD4 T ← naive, memory; CD8 T ← CD8 T; B ← B
    assert fig.layout.xaxis.title.text == "given (authors)"
    # colour is the fraction of the given label: the CD8 T column is half CD4 T naive
    j, i = list(hm.x).index("CD8 T"), list(hm.y).index("CD4 T naive")
    assert hm.z[i][j] == 0.5


def test_label_check_heatmap_with_nothing_compared_is_a_message():
    chk = check_labels(["B"], ["x"], ["B"])
    fig = label_check_heatmap(chk.confusion(), chk.agreeing_pairs())
    assert "No cells to compare" in fig.layout.annotations[0].text


def test_query_map_is_titled_by_its_method():
    fig = query_map(np.random.default_rng(0).normal(size=(50, 2)), np.array(["a", "b"] * 25), method="PCA")
    assert "PCA" in fig.layout.title.text and fig.layout.xaxis.title.text == "PCA 1"
