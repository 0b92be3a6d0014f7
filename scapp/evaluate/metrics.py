"""Classification metrics of methods.md §0, as plain dicts and tidy tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class under softmax(logits)."""
    if len(y) == 0:
        return float("nan")
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, true classes in rows, predicted in columns."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, ordered by support (largest first)."""
    C = len(classes)
    cm = confusion(y_true, y_pred, C)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    df = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                       "support": support, "predicted": predicted})
    df.loc[df["support"] == 0, "f1"] = np.nan
    return df.sort_values("support", ascending=False, kind="stable").reset_index(drop=True)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro/median/weighted F1 over classes present in ``y_true``.

    Also the three smallest classes (by support) with their recall and F1, the
    view the Hydra paper reports for rare types.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return {"n_cells": 0}
    tab = per_class_table(y_true, y_pred, classes)
    present = tab[tab["support"] > 0]
    smallest = present.sort_values("support", kind="stable").head(3)
    return {
        "n_cells": int(y_true.size),
        "n_classes_scored": int(len(present)),
        "accuracy": float((y_true == y_pred).mean()),
        "balanced_accuracy": float(present["recall"].mean()),
        "macro_f1": float(present["f1"].mean()),
        "median_f1": float(present["f1"].median()),
        "weighted_f1": float(np.average(present["f1"], weights=present["support"])),
        "smallest_classes": [
            {"class": r["class"], "support": int(r["support"]), "recall": float(r["recall"]), "f1": float(r["f1"])}
            for _, r in smallest.iterrows()
        ],
    }
