"""Training curves from a method's declared panels (issue 12): ZiPo's likelihood, rate error, zero inflation and
learning rate; a classifier keeps its loss / validation-metrics chart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scapp.models.registry import curve_panels
from scapp.viz.training import curve_help, training_curves


def _zipo_history(n: int = 5, *, zero_inflated: bool = True) -> pd.DataFrame:
    e = np.arange(1, n + 1)
    h = pd.DataFrame({"epoch": e, "train_loss": 2 / e, "valid_loss": 2.1 / e, "train_nll": 1.9 / e,
                      "valid_nll": 2.0 / e, "train_rate_mse": 40 / e, "valid_rate_mse": 45 / e,
                      "lr": 0.0212 * 0.9 ** (e - 1), "best_epoch": e})
    if zero_inflated:
        h["train_zero_prob"], h["valid_zero_prob"] = 0.5 - 0.01 * e, 0.48 - 0.01 * e
    return h


def _titles(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_zipo_declares_its_curves_and_no_name_is_needed_to_draw_them():
    assert curve_panels("zipo") and curve_panels("sims") == () and curve_panels(None) == ()
    fig = training_curves(_zipo_history(), panels=curve_panels("zipo"))
    assert {t.meta for t in fig.data} == {"train_nll", "valid_nll", "train_rate_mse", "valid_rate_mse",
                                          "train_zero_prob", "valid_zero_prob", "lr"}
    assert _titles(fig)[:4] == ["Negative log-likelihood (NLL)", "Rate error (MSE)",
                                "Mean zero-inflation probability", "Learning rate"]
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis4.type == "log"  # MSE and learning rate
    assert [t.name for t in fig.data if t.showlegend is not False] == ["train", "validation", "learning rate"]
    assert "best epoch 5" in _titles(fig)
    assert len(curve_help(curve_panels("zipo"), _zipo_history())) == 4


def test_a_panel_the_history_lacks_is_left_out():
    nb = training_curves(_zipo_history(zero_inflated=False), panels=curve_panels("zipo"))  # the DCA-like preset
    assert "Mean zero-inflation probability" not in _titles(nb)
    assert {t.meta for t in nb.data} == {"train_nll", "valid_nll", "train_rate_mse", "valid_rate_mse", "lr"}
    waiting = training_curves(pd.DataFrame({"epoch": [1], "phase": ["training"]}), panels=curve_panels("zipo"))
    assert not waiting.data and "Waiting" in waiting.layout.annotations[0].text


def test_a_classifier_keeps_its_loss_and_metrics_chart():
    h = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "valid_loss": [1.1, 0.9, 0.85],
                      "valid_accuracy": [0.6, 0.7, 0.75], "valid_macro_f1": [0.5, 0.6, 0.7], "best_epoch": [1, 2, 3]})
    for name in ("sims", "logreg", "hydra"):
        fig = training_curves(h, panels=curve_panels(name))
        assert _titles(fig)[:2] == ["Loss", "Validation metrics"]
        assert tuple(fig.layout.yaxis2.range) == (0, 1.02)


def test_log_axes_get_plain_round_ticks():
    from scapp.viz.training import log_ticks

    assert log_ticks(0.0028, 0.0212) == [0.005, 0.01, 0.02]  # ZiPo's learning rate over 20 epochs
    assert log_ticks(1.3, 4.6) == [1.5, 2.0, 3.0, 4.0]  # finer where 1-2-5 leaves one tick
    assert log_ticks(2.0, 2.01) is None  # plotly's own
    fig = training_curves(_zipo_history(20), panels=curve_panels("zipo"))
    assert fig.layout.yaxis4.tickformat == "~g" and len(fig.layout.yaxis4.tickvals) >= 3
