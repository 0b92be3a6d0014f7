"""The Data page's depth histograms gain a third panel, % mitochondrial counts, when the file has them (issue 11)."""

from __future__ import annotations

import numpy as np

from scapp import viz


def test_counts_histograms_draw_pct_mito_as_a_third_linear_panel():
    rng = np.random.default_rng(0)
    counts, genes = rng.lognormal(7, 0.5, 500), rng.lognormal(6, 0.4, 500)
    pct = np.append(rng.uniform(0, 12, 499), np.nan)  # a cell without counts has no share
    fig = viz.counts_histograms(counts, genes, pct_mito=pct)
    assert len(fig.data) == 3
    assert int(np.sum(fig.data[2].y)) == 499  # every cell with a value binned once
    assert fig.layout.xaxis3.title.text == "% mitochondrial counts" and fig.layout.xaxis3.type != "log"
    assert len(viz.counts_histograms(counts, genes).data) == 2  # without it: the two depth panels as before
