"""SIMS's per-class gene ranking reads as biology: genes a class looked at *where they are expressed* (issue 11).

TabNet masks carry no sign, and a gene whose absence is informative gets attention in the cells where it is silent
(LYZ checked in T cells: "not a monocyte"). Ranked by the plain class mean mask, such a gene topped the ranking of
the class that never expresses it.
"""

from __future__ import annotations

import numpy as np

from scapp.models.base import FitData
from scapp.models.sims import SIMSConfig, SIMSModel
from scapp.train.trainer import Trainer

ABSENT, MARKER = 0, 39  # B's marker (silent in A) comes first, so a tie or gene order cannot favour A's marker


def _absence_data(n: int = 800, d: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts-like log data with real zeros. Class "b" expresses gene 0 in every cell, class "a" never does; class
    "a"'s own marker (the last gene) is expressed in only half its cells, so the model leans on gene 0's absence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    counts = rng.poisson(0.3, (n, d)).astype(np.float32)  # sparse noise genes
    counts[:, ABSENT] = np.where(y == 1, rng.poisson(6, n) + 1, 0)
    counts[:, MARKER] = np.where((y == 0) & (rng.random(n) < 0.5), rng.poisson(3, n) + 1, 0)
    return np.log1p(counts), y


def test_a_gene_informative_by_absence_does_not_outrank_the_class_own_marker():
    X, y = _absence_data()
    m = SIMSModel(SIMSConfig(max_epochs=15, batch_size=128, seed=0), n_features=X.shape[1], classes=["a", "b"])
    m.fit(FitData(X[:600], y[:600]), FitData(X[600:], y[600:]), Trainer())
    assert (m.predict_logits(X[600:]).argmax(1) == y[600:]).mean() > 0.9
    ex = m.explain(X, y)
    a = ex.class_scores[0]
    assert a[MARKER] > a[ABSENT], (a[MARKER], a[ABSENT])  # the plain mean mask ranked gene 0 first here
    assert a[ABSENT] == 0  # never expressed in "a": no attention counted there
    assert int((a > a[MARKER]).sum()) <= 2, np.argsort(-a)[:5]  # A's marker is at (or next to) the top
    assert int(np.argmax(ex.class_scores[1])) == ABSENT  # B's own marker, expressed there, tops B's list
    # the plain mean mask stays available, and shows why it was not used: gene 0 heads class "a"
    plain = ex.extra["mean_mask"]
    assert plain[0, ABSENT] > plain[0, MARKER]
    assert np.allclose(plain.sum(1), 1, atol=1e-4) and np.all(ex.class_scores <= plain + 1e-7)
