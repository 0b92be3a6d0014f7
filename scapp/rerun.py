"""Train a run again from its own settings and say how its results differ (issue 14, reproducibility).

``scapp rerun RUN`` reads the run's ``config.json`` back into the ``TrainRequest`` it was trained with
(``scapp.retrain.request_of``, shared with ``scapp retrain``), trains it into a new run, and compares the
metrics. On the CPU, the same seed gives the same split and the same numbers; a difference means the data file,
the installed packages or the device changed (the notes say which of those this module can see).
"""

from __future__ import annotations

import math
import os
from typing import Any

from scapp import runs
from scapp.errors import InputError, RunError
from scapp.models.registry import get_spec
from scapp.retrain import request_of
from scapp.train.engine import TrainRequest, file_digest

METRICS = (("valid", "macro_f1"), ("valid", "accuracy"), ("test", "macro_f1"), ("test", "accuracy"),
           ("test", "unassigned_frac"), ("calibration", "ece_after"))
"""What the comparison shows: (part of metrics.json, key)."""


def rerun_request(run_ref: str | os.PathLike) -> tuple[TrainRequest, list[str]]:
    """The request a run was trained with, to train it again, and notes on what is not the same any more (the
    training file changed, other package versions). Raises ``RunError`` for a run that cannot be trained again
    (no settings, a pretraining run, an ensemble combined from other runs) and ``InputError`` when its training
    file is gone."""
    store = runs.RunStore.open(run_ref)
    cfg = store.config(missing_ok=True)
    if cfg is None:
        raise RunError(f"Run {store.id} has no saved settings to train again with; it may not have started.")
    if cfg.get("kind") == "pretraining":
        raise RunError(f"Run {store.id} is a pretraining run; start it again with 'scapp pretrain' and the files "
                       f"it lists ({', '.join(map(str, cfg.get('data') or [])) or 'see its config'}).")
    spec = get_spec(str(cfg.get("model") or ""))
    if not spec.trainable or not cfg.get("data"):
        raise RunError(f"Run {store.id} was combined from other runs, not trained from a file; rerun its members, "
                       "then combine them again with 'scapp ensemble'.")
    req = request_of(cfg)
    data = str(req.data)
    if not os.path.exists(data):
        raise InputError(f"Run {store.id} was trained on {data}, which is no longer there; put the file back to "
                         "train the run again.")
    notes = []
    try:
        info = store.data_info()
    except RunError:
        info = {}
    if info.get("sha256") and info["sha256"] != file_digest(data):
        notes.append(f"The training file {data} has changed since run {store.id} was trained (its checksum "
                     "differs): the metrics may differ for that reason.")
    try:
        then = (store.env() or {}).get("versions") or {}
    except RunError:
        then = {}
    from scapp.train.engine import environment

    now = environment("")["versions"]
    changed = [f"{k} {then[k]} → {now[k]}" for k in sorted(then) if k in now and then[k] != now[k]]
    if changed:
        notes.append("Other package versions than when the run was trained: " + ", ".join(changed) + ".")
    return req, notes


def _get(metrics: dict[str, Any], part: str, key: str) -> float | None:
    v = (metrics.get(part) or {}).get(key) if isinstance(metrics.get(part), dict) else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def compare_metrics(original: runs.RunStore, again: runs.RunStore) -> dict[str, Any]:
    """The headline metrics of both runs side by side, with the difference (again − original) and whether the
    predictions of every cell are the same."""
    a, b = original.metrics() or {}, again.metrics() or {}
    rows = []
    for part, key in METRICS:
        x, y = _get(a, part, key), _get(b, part, key)
        if x is None and y is None:
            continue
        rows.append({"metric": f"{part} {key}", "original": x, "rerun": y,
                     "difference": None if x is None or y is None else y - x})
    same_preds = None
    if original.has_predictions and again.has_predictions:
        try:
            pa, pb = (st.predictions(columns=["cell_id", "pred"]) for st in (original, again))
            same_preds = bool(len(pa) == len(pb) and (pa["cell_id"].to_numpy() == pb["cell_id"].to_numpy()).all()
                              and (pa["pred"].astype(str).to_numpy() == pb["pred"].astype(str).to_numpy()).all())
        except RunError:  # a run without predicted labels (a method that does not classify)
            same_preds = None
    identical = all(r["difference"] == 0 for r in rows if r["difference"] is not None) and same_preds is not False
    return {"original": original.id, "rerun": again.id, "metrics": rows, "same_predictions": same_preds,
            "identical": identical}


def format_comparison(cmp: dict[str, Any]) -> str:
    """The comparison as a small table and one verdict line."""
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"{'metric':<28}{'original':>10}{'rerun':>10}{'difference':>12}"]
    for r in cmp["metrics"]:
        d = "" if r["difference"] is None else f"{r['difference']:+.4f}"
        lines.append(f"{r['metric']:<28}{fmt(r['original']):>10}{fmt(r['rerun']):>10}{d:>12}")
    if cmp["same_predictions"] is not None:
        lines.append(f"predictions of every cell: {'the same' if cmp['same_predictions'] else 'different'}")
    lines.append(f"run {cmp['rerun']} reproduces run {cmp['original']}: "
                 + ("identical metrics" if cmp["identical"] else "the metrics differ (see above)"))
    return "\n".join(lines)
