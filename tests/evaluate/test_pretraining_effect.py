"""scapp.evaluate.compare.pretraining_effect, the registry's run curve panels and the grouped recall bars
(issue 13: Explore's 'What pretraining changed')."""

from __future__ import annotations

import pandas as pd
import pytest

from scapp.evaluate.compare import CompareError, pretraining_effect

INFO = {"sha256": "abc", "label": "cell_type", "path": "/d/ref.h5ad"}


def _pred(true: list[str], pred: list[str], split: str = "test", prefix: str = "c") -> pd.DataFrame:
    return pd.DataFrame({"cell_id": [f"{prefix}{i}" for i in range(len(true))], "split": split, "true": true,
                         "pred": pred, "confidence": 0.9})


def test_per_class_recall_and_scores_on_the_shared_test_cells():
    true = ["B"] * 4 + ["T"] * 4 + ["rare"] * 2
    scratch = ["B", "B", "B", "T"] + ["T"] * 4 + ["T", "T"]
    pre = ["B"] * 4 + ["T", "T", "T", "B"] + ["rare", "T"]
    train = _pred(["B", "T"], ["B", "T"], split="train", prefix="tr")
    eff = pretraining_effect("pre", "scr", {"pre": pd.concat([_pred(true, pre), train]),
                                            "scr": pd.concat([_pred(true, scratch), train])},
                             {"pre": INFO, "scr": INFO})
    assert eff.n_cells == 10 and eff.note == ""
    pc = eff.per_class.set_index("class")
    assert pc.loc["B", "recall_scratch"] == 0.75 and pc.loc["B", "recall_pretrained"] == 1.0
    assert pc.loc["T", "recall_scratch"] == 1.0 and pc.loc["T", "recall_pretrained"] == 0.75
    assert pc.loc["rare", "recall_scratch"] == 0.0 and pc.loc["rare", "recall_pretrained"] == 0.5
    assert pc.loc["rare", "change"] == 0.5 and pc.loc["rare", "n_changed"] == 1 and pc.loc["B", "support"] == 4
    m = eff.metrics.set_index("arm")
    assert m.loc["from scratch", "accuracy"] == 0.7 and m.loc["pretrained", "accuracy"] == 0.8
    assert m.loc["pretrained", "balanced_accuracy"] == pytest.approx((1 + 0.75 + 0.5) / 3)
    assert eff.change("accuracy") == pytest.approx(0.1)
    assert m.loc["pretrained", "run_id"] == "pre"


def test_different_splits_compare_only_the_cells_both_held_out():
    true = ["B", "T", "B", "T"]
    a = _pred(true, true)
    b = _pred(true, ["B", "B", "B", "T"])
    b.loc[0, "split"] = "train"  # one cell trained on by the scratch run
    eff = pretraining_effect("pre", "scr", {"pre": a, "scr": b}, {"pre": INFO, "scr": INFO})
    assert eff.n_cells == 3 and "3 test cells" in eff.note


def test_runs_on_other_data_or_disjoint_test_sets_are_refused():
    a = _pred(["B", "T"], ["B", "T"])
    with pytest.raises(CompareError, match="different data"):
        pretraining_effect("pre", "scr", {"pre": a, "scr": a}, {"pre": INFO, "scr": {**INFO, "sha256": "other"}})
    b = _pred(["B", "T"], ["B", "T"], prefix="x")
    with pytest.raises(CompareError):
        pretraining_effect("pre", "scr", {"pre": a, "scr": b}, {"pre": INFO, "scr": INFO})


def test_recall_bars_put_rare_types_first_scratch_beside_pretrained():
    from scapp.viz import pretraining_recall_bars

    pc = pd.DataFrame({"class": ["B", "rare"], "support": [40, 3], "recall_scratch": [0.9, 0.0],
                       "recall_pretrained": [0.95, 1 / 3]})
    fig = pretraining_recall_bars(pc)
    assert [t.meta for t in fig.data] == ["recall_scratch", "recall_pretrained"]
    assert [t.name for t in fig.data] == ["from scratch", "pretrained, then fine-tuned"]
    assert fig.data[0].x[0].startswith("rare") and list(fig.data[1].y) == [1 / 3, 0.95]
    assert fig.layout.barmode == "group"
    assert "No test cells" in pretraining_recall_bars(pc.iloc[:0]).layout.annotations[0].text


def test_run_curve_panels_follow_the_runs_kind():
    from scapp.models.registry import REGISTRY, run_curve_panels

    pre = run_curve_panels({"model": "ssl", "kind": "pretraining", "label": None})
    assert pre and pre[0].title == "Reconstruction loss (hidden genes)"
    assert run_curve_panels({"model": "ssl", "label": None}) == pre  # trained without labels: a pretraining
    assert run_curve_panels({"model": "ssl", "label": "cell_type"}) == ()  # a classifier's loss and scores
    assert run_curve_panels({"model": "zipo", "label": None}) == REGISTRY["zipo"].curves
    assert run_curve_panels({}) == () and run_curve_panels(None) == ()


def test_a_flat_learning_rate_gets_a_readable_log_axis():
    """Two pretraining epochs keep the learning rate at 1e-3: plotly's own range for a constant series on a log
    axis was a decade of overlapping minor labels (seen on the Train page)."""
    from scapp.models.registry import REGISTRY
    from scapp.viz import training_curves

    h = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.7], "valid_loss": [0.8, 0.7], "lr": [1e-3, 1e-3],
                      "best_epoch": [1, 2]})
    fig = training_curves(h, panels=REGISTRY["ssl"].pretrain_curves)
    assert [a.text for a in fig.layout.annotations][:2] == ["Reconstruction loss (hidden genes)", "Learning rate"]
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.tickvals == (0.0005, 0.001, 0.002)
    assert fig.layout.yaxis2.range == pytest.approx((-3.30103, -2.69897), abs=1e-4)
