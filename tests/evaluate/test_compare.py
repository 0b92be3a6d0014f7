"""Comparing runs: same-data check, shared cells, agreement matrix, disagreeing cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scapp.errors import ScappError
from scapp.evaluate.compare import CompareError, check_same_data, compare_runs, metrics_long

INFO = {"sha256": "abc", "label": "cell_type", "path": "/d/pbmc.h5ad"}


def _pred(preds: list[str], *, split: list[str] | None = None, conf: float = 0.9) -> pd.DataFrame:
    n = len(preds)
    return pd.DataFrame({"cell_id": [f"c{i}" for i in range(n)], "split": split or ["test"] * n,
                         "true": ["B", "B", "T", "T", "NK", "NK"][:n], "pred": preds, "confidence": [conf] * n})


def _met(f1: float) -> dict:
    return {"test": {"macro_f1": f1, "median_f1": f1, "balanced_accuracy": f1, "accuracy": f1, "n_cells": 6},
            "calibration": {"ece_after": 0.05}}


def test_agreement_matrix_and_disagreements_by_hand():
    a = _pred(["B", "B", "T", "T", "NK", "NK"], conf=0.9)
    b = _pred(["B", "T", "T", "T", "NK", "B"], conf=0.6)
    comp = compare_runs({"ra": a, "rb": b}, {"ra": _met(1.0), "rb": _met(0.6)}, {"ra": INFO, "rb": INFO},
                        models={"ra": "sims", "rb": "logreg"})
    tab = comp.agreement("ra", "rb")
    assert list(tab.index) == ["B", "NK", "T"] and list(tab.columns) == ["B", "NK", "T"]
    assert tab.loc["B", "B"] == 1 and tab.loc["B", "T"] == 1 and tab.loc["NK", "B"] == 1
    assert tab.loc["NK", "NK"] == 1 and tab.loc["T", "T"] == 2
    assert tab.to_numpy().sum() == 6 and np.trace(tab.to_numpy()) == 4
    assert comp.agreement_frac == pytest.approx(4 / 6)
    dis = comp.disagreements()
    assert dis["cell_id"].tolist() == ["c1", "c5"]
    assert dis[["true", "pred_ra", "pred_rb"]].values.tolist() == [["B", "B", "T"], ["NK", "NK", "B"]]
    assert dis["conf_rb"].tolist() == [0.6, 0.6]
    assert comp.metrics["model"].tolist() == ["sims", "logreg"]
    assert comp.metrics["macro_f1"].tolist() == [1.0, 0.6]
    long = metrics_long(comp.metrics)
    assert set(long["metric"]) == {"macro_f1", "median_f1", "balanced_accuracy", "accuracy"} and len(long) == 8
    assert comp.agreement_long("ra", "rb")["cells"].sum() == 6


def test_three_runs_disagree_when_any_differs_and_test_cells_only():
    split = ["test", "test", "train", "test", "test", "valid"]
    a = _pred(["B", "B", "T", "T", "NK", "NK"], split=split)
    b = _pred(["B", "B", "B", "T", "NK", "B"], split=split)
    c = _pred(["B", "T", "T", "T", "NK", "NK"], split=split)
    comp = compare_runs({"a": a, "b": b, "c": c}, {k: _met(0.8) for k in "abc"}, {k: INFO for k in "abc"})
    assert comp.n_cells == 4 and comp.scope == "test"  # train/valid cells left out
    assert comp.disagreements()["cell_id"].tolist() == ["c1"]
    assert compare_runs({"a": a, "b": b}, {k: _met(0.8) for k in "ab"}, {k: INFO for k in "ab"},
                        cells="all").disagreements()["cell_id"].tolist() == ["c2", "c5"]


def test_different_test_splits_fall_back_to_shared_cells_with_a_note():
    a = _pred(["B", "B", "T", "T"], split=["test", "test", "train", "train"])
    b = _pred(["B", "B", "T", "T"], split=["train", "train", "test", "test"])
    comp = compare_runs({"a": a, "b": b}, {k: _met(0.8) for k in "ab"}, {k: INFO for k in "ab"})
    assert comp.scope == "all" and comp.n_cells == 4 and "different test cells" in comp.note


def test_runs_on_different_data_or_labels_are_refused_with_a_clear_message():
    other = {**INFO, "sha256": "zzz", "path": "/d/other.h5ad"}
    with pytest.raises(CompareError, match="different data.*other.h5ad"):
        compare_runs({"a": _pred(["B"]), "b": _pred(["B"])}, {k: _met(1) for k in "ab"}, {"a": INFO, "b": other})
    with pytest.raises(CompareError, match="different label columns"):
        check_same_data({"a": INFO, "b": {**INFO, "label": "cell_type_coarse"}})
    with pytest.raises(CompareError, match="at least two"):
        check_same_data({"a": INFO})
    assert issubclass(CompareError, ScappError)
    no_shared = _pred(["B", "B"]).assign(cell_id=["x", "y"])
    with pytest.raises(CompareError, match="no cell in common"):
        compare_runs({"a": _pred(["B", "B"]), "b": no_shared}, {k: _met(1) for k in "ab"}, {k: INFO for k in "ab"})
