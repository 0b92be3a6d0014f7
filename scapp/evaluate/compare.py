"""Two or more runs trained on the same data, side by side: metrics, agreement, disagreeing cells.

Pure functions over what each run saved (its data info, metrics and predictions,
as ``RunStore.results()`` returns them): :mod:`scapp.runs` reads the files, this
module only compares tables, so it knows nothing of models or folders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from scapp.errors import ScappError

__all__ = ["CompareError", "PretrainingEffect", "RunComparison", "check_same_data", "compare_runs",
           "pretraining_effect"]

HEADLINE = ("macro_f1", "median_f1", "balanced_accuracy", "accuracy")


class CompareError(ScappError):
    """The chosen runs cannot be compared (different data, no shared cells, fewer than two runs)."""


def check_same_data(data_infos: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`CompareError` unless every run was trained on the same file and label column.

    Parameters
    ----------
    data_infos
        ``{run_id: RunStore.data_info()}``; compared on ``sha256`` (the file's content) and ``label``.
    """
    if len(data_infos) < 2:
        msg = "Choose at least two runs to compare."
        raise CompareError(msg)
    by_hash: dict[str, list[str]] = {}
    for rid, info in data_infos.items():
        by_hash.setdefault(str(info.get("sha256") or f"unknown:{rid}"), []).append(rid)
    if len(by_hash) > 1:
        groups = "; ".join(f"{', '.join(ids)} on {_data_name(data_infos[ids[0]])}" for ids in by_hash.values())
        msg = (f"These runs were trained on different data ({groups}), so their predictions are not about the same "
               "cells. Choose runs trained on the same file.")
        raise CompareError(msg)
    labels = {str(info.get("label")) for info in data_infos.values()}
    if len(labels) > 1:
        msg = (f"These runs learned different label columns ({', '.join(sorted(labels))}); "
               "choose runs trained on the same labels.")
        raise CompareError(msg)


def _data_name(info: Mapping[str, Any]) -> str:
    path = str(info.get("path") or "?")
    return path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass
class RunComparison:
    """Runs side by side on the cells they share.

    Attributes
    ----------
    run_ids
        The runs, in the order given.
    metrics
        One row per run: ``run_id``, ``model``, the test-set headline metrics and ``ece_after``.
    cells
        One row per shared cell: ``cell_id``, ``true``, then ``pred_<run>`` and ``conf_<run>`` per run.
    scope
        ``"test"`` (cells in the test split of every run) or ``"all"``.
    note
        Why the cell set is smaller than expected, or ``""``.
    """

    run_ids: list[str]
    metrics: pd.DataFrame
    cells: pd.DataFrame
    scope: str
    note: str = ""

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def _preds(self) -> np.ndarray:
        return self.cells[[f"pred_{r}" for r in self.run_ids]].to_numpy(dtype=object)

    def all_agree(self) -> np.ndarray:
        """Boolean mask over :attr:`cells`: every run predicts the same label."""
        P = self._preds()
        return (P == P[:, :1]).all(axis=1) if len(P) else np.zeros(0, dtype=bool)

    @property
    def agreement_frac(self) -> float:
        return float(self.all_agree().mean()) if self.n_cells else float("nan")

    def agreement(self, a: str, b: str) -> pd.DataFrame:
        """Counts: run ``a``'s predicted class (rows) × run ``b``'s (columns), over the shared cells."""
        for r in (a, b):
            if r not in self.run_ids:
                raise KeyError(f"Run {r!r} is not part of this comparison.")
        pa, pb = self.cells[f"pred_{a}"].astype(str), self.cells[f"pred_{b}"].astype(str)
        rows = _ordered(pa, self.cells["true"])
        cols = _ordered(pb, self.cells["true"])
        tab = pd.crosstab(pa, pb).reindex(index=rows, columns=cols, fill_value=0)
        tab.index.name, tab.columns.name = a, b
        return tab.astype(np.int64)

    def disagreements(self) -> pd.DataFrame:
        """The cells where the runs do not all predict the same class (cell id, true label, each run's call)."""
        return self.cells[~self.all_agree()].reset_index(drop=True)

    def agreement_long(self, a: str, b: str) -> pd.DataFrame:
        """The agreement matrix as a tidy table (for CSV export)."""
        tab = self.agreement(a, b)
        long = tab.stack().rename("cells").reset_index()
        long.columns = [f"pred_{a}", f"pred_{b}", "cells"]
        return long


def _ordered(pred: pd.Series, true: pd.Series) -> list[str]:
    """Classes in a stable order: the true classes (sorted) first, then any other predicted label."""
    base = sorted({str(v) for v in true.dropna().unique()})
    extra = sorted(set(pred.unique()) - set(base))
    return base + extra


def compare_runs(
    predictions: Mapping[str, pd.DataFrame],
    metrics: Mapping[str, Mapping[str, Any]],
    data_infos: Mapping[str, Mapping[str, Any]],
    *,
    models: Mapping[str, str] | None = None,
    cells: Literal["test", "all"] = "test",
) -> RunComparison:
    """Line up the predictions of runs trained on the same data.

    Parameters
    ----------
    predictions
        ``{run_id: RunStore.predictions()}`` with ``cell_id``, ``split``, ``true``, ``pred``, ``confidence``.
    metrics
        ``{run_id: RunStore.metrics()}``.
    data_infos
        ``{run_id: RunStore.data_info()}``; runs on different files or label columns are refused.
    models
        ``{run_id: model name}`` for the metrics table.
    cells
        ``"test"``: the cells held out for testing in every run (fair to every run; the same set when the runs used
        the same seed); ``"all"``: every shared cell, including cells a run trained on.

    Returns
    -------
    RunComparison

    Raises
    ------
    CompareError
        Fewer than two runs, different data, or no shared cells.
    """
    ids = list(predictions)
    if cells not in ("test", "all"):
        raise ValueError(f"cells must be 'test' or 'all', got {cells!r}")
    check_same_data({r: data_infos[r] for r in ids})
    note = ""
    frames = []
    for r in ids:
        p = predictions[r]
        if cells == "test":
            p = p[p["split"] == "test"]
        frames.append(p.drop_duplicates("cell_id").set_index("cell_id"))
    shared = frames[0].index
    for f in frames[1:]:
        shared = shared.intersection(f.index, sort=False)
    if len(shared) == 0 and cells == "test":
        note = ("The runs held out different test cells (different seeds or split settings), so all shared cells "
                "are compared, including cells some runs trained on.")
        return _with_note(compare_runs(predictions, metrics, data_infos, models=models, cells="all"), note)
    if len(shared) == 0:
        msg = "These runs have no cell in common; they cannot be compared cell by cell."
        raise CompareError(msg)
    if cells == "test" and any(len(f) != len(shared) for f in frames):
        note = (f"The runs' test sets differ (different seeds?); {len(shared):,} test cells are held out by every run "
                "and compared here.")
    table = pd.DataFrame({"cell_id": shared.astype(str), "true": frames[0].loc[shared, "true"].astype(str).to_numpy()})
    for r, f in zip(ids, frames):
        table[f"pred_{r}"] = f.loc[shared, "pred"].astype(str).to_numpy()
        table[f"conf_{r}"] = f.loc[shared, "confidence"].astype(float).to_numpy()
    rows = []
    for r in ids:
        test = (metrics[r] or {}).get("test", {})
        cal = (metrics[r] or {}).get("calibration", {})
        row: dict[str, Any] = {"run_id": r, "model": (models or {}).get(r, "")}
        row.update({k: test.get(k) for k in HEADLINE})
        row["ece_after"] = cal.get("ece_after")
        row["n_test"] = test.get("n_cells")
        rows.append(row)
    met = pd.DataFrame(rows)
    for k in (*HEADLINE, "ece_after"):
        met[k] = pd.to_numeric(met[k], errors="coerce")
    return RunComparison(run_ids=ids, metrics=met, cells=table, scope=cells, note=note)


def _with_note(comp: RunComparison, note: str) -> RunComparison:
    comp.note = note
    return comp


def metrics_long(metrics: pd.DataFrame, *, keys: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """The metrics table as ``run_id``, ``metric``, ``value`` rows (for the grouped bar chart and its CSV)."""
    keep = [k for k in keys if k in metrics.columns]
    return metrics.melt(id_vars=["run_id"], value_vars=keep, var_name="metric", value_name="value")


def ensemble_members_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per member of an ensemble run (its metrics' ``members``): name, weight, validation and test scores."""
    rows = []
    for i, mem in enumerate(metrics.get("members") or []):
        valid, test = mem.get("valid") or {}, mem.get("test") or {}
        rows.append({"name": f"{mem.get('model')}", "model": mem.get("model"), "run_id": mem.get("run_id"),
                     "weight": mem.get("weight"), "valid_macro_f1": valid.get("macro_f1"),
                     "test_macro_f1": test.get("macro_f1"), "valid_balanced_accuracy": valid.get("balanced_accuracy"),
                     "test_balanced_accuracy": test.get("balanced_accuracy"), "fit_seconds": mem.get("fit_seconds")})
    df = pd.DataFrame(rows, columns=["name", "model", "run_id", "weight", "valid_macro_f1", "test_macro_f1",
                                     "valid_balanced_accuracy", "test_balanced_accuracy", "fit_seconds"])
    if df["name"].duplicated().any():  # two runs of one method: tell them apart
        df["name"] = [f"{n} ({r})" for n, r in zip(df["name"], df["run_id"])]
    return df


@dataclass
class PretrainingEffect:
    """A fine-tuned run beside the same method trained from scratch, on the test cells both held out.

    Attributes
    ----------
    per_class
        One row per true class: ``class``, ``support`` (test cells), ``recall_scratch``, ``recall_pretrained``,
        ``change`` (pretrained − scratch), ``n_changed`` (cells whose call differs between the two runs).
    metrics
        One row per arm (``arm``: "from scratch", "pretrained"; ``run_id``) with ``macro_f1``, ``balanced_accuracy``
        and ``accuracy`` on those shared cells.
    n_cells
        Test cells compared.
    note
        Why fewer cells are compared than expected (different splits), or ``""``.
    """

    per_class: pd.DataFrame
    metrics: pd.DataFrame
    n_cells: int
    note: str = ""

    def change(self, key: str = "macro_f1") -> float:
        """Pretrained minus from scratch in one metric."""
        m = self.metrics.set_index("arm")[key]
        return float(m["pretrained"] - m["from scratch"])


def pretraining_effect(pretrained: str, scratch: str, predictions: Mapping[str, pd.DataFrame],
                       data_infos: Mapping[str, Mapping[str, Any]]) -> PretrainingEffect:
    """What pretraining changed: per-class recall (and the headline scores) of run ``pretrained`` (fine-tuned from a
    pretraining run) and run ``scratch`` (the same method from scratch), on the test cells held out by both.

    ``predictions`` and ``data_infos``: ``{run_id: RunStore.predictions() / .data_info()}`` of the two runs.
    Scores are recomputed on the shared cells, so two runs whose splits differ slightly (a cell without counts in
    the pretraining genes is left out of the fine-tune) are still compared on the same cells. Raises
    :class:`CompareError` when the runs were trained on different data or share no test cell.
    """
    from scapp.evaluate.metrics import classification_metrics

    ids = [scratch, pretrained]
    comp = compare_runs({r: predictions[r] for r in ids}, {r: {} for r in ids}, {r: data_infos[r] for r in ids},
                        cells="test")
    if comp.scope != "test":
        raise CompareError("The two runs held out different test cells (different seeds or split settings), so "
                           "their scores are not about the same cells; compare runs trained with the same seed.")
    cells = comp.cells
    true = cells["true"].astype(str).to_numpy()
    classes = sorted(set(true))
    rows = []
    for c in classes:
        sel = true == c
        rows.append({"class": c, "support": int(sel.sum()),
                     "recall_scratch": float((cells.loc[sel, f"pred_{scratch}"] == c).mean()),
                     "recall_pretrained": float((cells.loc[sel, f"pred_{pretrained}"] == c).mean()),
                     "n_changed": int((cells.loc[sel, f"pred_{scratch}"] != cells.loc[sel, f"pred_{pretrained}"])
                                      .sum())})
    per_class = pd.DataFrame(rows, columns=["class", "support", "recall_scratch", "recall_pretrained", "n_changed"])
    per_class.insert(4, "change", per_class["recall_pretrained"] - per_class["recall_scratch"])
    met = []
    for arm, rid in (("from scratch", scratch), ("pretrained", pretrained)):
        pred = cells[f"pred_{rid}"].astype(str).to_numpy()
        pooled = pd.Index(sorted(set(classes) | set(pred)))  # a class only this run predicts counts against it
        m = classification_metrics(pooled.get_indexer(true), pooled.get_indexer(pred), list(pooled))
        met.append({"arm": arm, "run_id": rid, "macro_f1": m["macro_f1"],
                    "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"]})
    return PretrainingEffect(per_class=per_class, metrics=pd.DataFrame(met), n_cells=len(cells), note=comp.note)
