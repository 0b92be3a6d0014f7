"""The words the Train page shows for a run: its options, what it is doing, how long it has left.

Pure functions of a run's ``status.json`` (written by the engine's reporter) and its options, so the page
stays a few lines and never needs to know which method is training (issue 11: phases, ranges, no dicts).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from scapp.train.timing import about, about_range

SHORT_NAMES: dict[str, str] = {
    "max_epochs": "max epochs", "early_stopping_patience": "patience", "lr": "learning rate",
    "n_models": "models", "refine_epochs": "refinement epochs", "ig_cells_per_class": "IG cells per class",
    "max_iter": "max iterations", "n_genes_grid": "genes tried", "C_grid": "C tried",
    "lambda_sparse": "mask sparsity", "n_steps": "attention steps", "weight_step": "weight step",
}
"""How an option reads in one line; options not listed read as their name (n_d, n_a …)."""


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) and "model" in x for x in v):  # ensemble members
            return " + ".join(f"{x['model']}" + (f" ({x['preset']})" if x.get("preset") else "") for x in v)
        return "/".join(_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    return str(v)


def options_line(options: dict[str, Any]) -> str:
    """``{"max_epochs": 40, "early_stopping_patience": 5, "n_d": 8}`` → ``max epochs 40 · patience 5 · n_d 8``."""
    return " · ".join(f"{SHORT_NAMES.get(k, k if re.fullmatch(r'[a-z]_[a-z]', k) else k.replace('_', ' '))} "
                      f"{_value(v)}" for k, v in options.items())


def phase_line(status: dict[str, Any]) -> str:
    """What the run is doing: ``refining 25 models: epoch 12/30``, ``Integrated Gradients: class 4/9``, or the
    phase alone when it counts nothing."""
    phase = str(status.get("phase") or status.get("state") or "")
    steps = status.get("phase_steps")
    if steps:
        unit = status.get("phase_unit") or "step"
        return f"{phase}: {unit} {int(status.get('phase_step') or 0)}/{int(steps)}"
    return phase


def time_left(status: dict[str, Any]) -> str | None:
    """``about 1–3 min left`` while running (the range the engine wrote), None when nothing is known yet."""
    if status.get("state") != "running":
        return None
    lo, hi = status.get("eta_s"), status.get("eta_max_s")
    if lo is None and hi is None:
        return None
    lo = float(lo if lo is not None else hi)
    hi = float(hi if hi is not None else lo)
    return f"{about_range(lo, hi)} left"


def progress_text(status: dict[str, Any]) -> str:
    """The progress bar's line: the phase, then the time left when known."""
    left = time_left(status)
    return " · ".join(p for p in (phase_line(status), left) if p)


def _when(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso))
    except (TypeError, ValueError):
        return None


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 10 s``, ``1 h 05 min``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def timing_note(status: dict[str, Any], now: datetime | None = None) -> str | None:
    """``Running for 1 min 10 s; estimated about 4 min in all (…)``, or, once finished, the time it took
    beside the estimate, so the estimate can be judged."""
    start, end = _when(status.get("started")), _when(status.get("finished"))
    est, src = status.get("estimate_s"), status.get("estimate_source")
    est_txt = f"estimated {about(float(est))} in all" + (f" ({src})" if src else "") if est else None
    if start is None:
        return None
    state = status.get("state")
    if state == "running":
        now = now or datetime.now(start.tzinfo)
        parts = [f"Running for {duration((now - start).total_seconds())}", est_txt]
    elif state in ("finished", "cancelled", "failed") and end is not None:
        took = f"{'Took' if state == 'finished' else 'Ran for'} {duration((end - start).total_seconds())} of training"
        parts = [took, est_txt.replace("estimated", "estimate was") if est_txt else None]
    else:
        return None
    return "; ".join(p for p in parts if p) + "."
