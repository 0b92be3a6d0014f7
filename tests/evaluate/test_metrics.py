from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from scapp.evaluate.calibration import ece, fit_temperature, softmax
from scapp.evaluate.metrics import classification_metrics, confusion


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, 5, 500))
    m = classification_metrics(y, p, list("abcde"))
    assert np.isclose(m["macro_f1"], f1_score(y, p, average="macro"))
    assert np.isclose(m["weighted_f1"], f1_score(y, p, average="weighted"))
    assert np.isclose(m["balanced_accuracy"], balanced_accuracy_score(y, p))
    assert np.isclose(m["median_f1"], np.median(f1_score(y, p, average=None)))
    assert len(m["smallest_classes"]) == 3
    assert confusion(y, p, 5).sum() == 500


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 4000)
    logits = rng.normal(0, 1, (4000, 4))
    logits[np.arange(4000), y] += 1.0
    hot = logits * 6  # overconfident
    T = fit_temperature(hot, y)
    assert 4 < T < 8
    assert ece(softmax(hot / T), y) < ece(softmax(hot), y) / 2
