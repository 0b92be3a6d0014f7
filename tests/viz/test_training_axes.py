"""Training curves (issue 11): whole-epoch ticks, and a loss spike that does not flatten the rest."""

from __future__ import annotations

import pandas as pd

from scapp.viz.training import epoch_tick, loss_axis, training_curves


def test_epoch_ticks_are_whole_epochs():
    assert [epoch_tick(1, hi) for hi in (1, 3, 11, 40, 200)] == [1, 1, 1, 5, 20]
    fig = training_curves(pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.9, 0.8]}))
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickmode == "linear"


def test_a_spike_is_taken_off_the_scale_and_named():
    h = pd.DataFrame({"epoch": range(1, 21), "train_loss": [1.4, 448.0] + [0.9] * 18,
                      "valid_loss": [1.7] + [0.93] * 19})
    top, note = loss_axis(h)
    assert 1.7 < top < 2.0  # the first epoch stays on the chart; only the spike leaves it
    assert note == "Off the scale: train loss 448 at epoch 2"
    fig = training_curves(h)
    assert tuple(fig.layout.yaxis.range) == (0, top)
    assert any(a.text == note for a in fig.layout.annotations)


def test_ordinary_curves_keep_their_automatic_axis():
    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [2.0, 1.0, 0.8, 0.7], "valid_loss": [2.1, 1.2, 1, 1]})
    assert loss_axis(h) is None


def test_a_spike_in_the_first_epochs_of_a_live_chart_is_clipped():
    """Four epochs, one spike (the live Train chart right after Hydra's epoch 2): the spike alone must not lift the
    axis limit with it (it did when the 90th percentile included it)."""
    import pandas as pd

    from scapp.viz.training import loss_axis

    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.5, 448.0, 1.2, 1.0],
                      "valid_loss": [1.4, 1.3, 1.1, 1.0]})
    got = loss_axis(h)
    assert got is not None
    top, note = got
    assert 1.5 <= top < 10 and "448" in note


def test_a_steep_but_smooth_short_curve_is_not_clipped():
    import pandas as pd

    from scapp.viz.training import loss_axis

    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [5.0, 3.0, 2.0, 1.5], "valid_loss": [1.2, 1.0, 0.9, 0.8]})
    assert loss_axis(h) is None
