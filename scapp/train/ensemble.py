"""Build ensemble runs: from finished runs (``scapp ensemble``), or by training the members first (``auto``).

An ensemble run is a run folder like any other (config, metrics, predictions, confusion matrix …) whose members
are complete run folders inside it (``RunStore.member``), so deleting or moving an original run loses nothing.
The members must come from the same file, label column, cells and split: the validation cells they were
calibrated on are the cells the ensemble's weights are chosen on (``scapp.models.ensemble``), and the test cells
none of them saw are the cells it is scored on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scapp import runs
from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.data.split import Split
from scapp.errors import RunError, ScappError, TrainingCancelled
from scapp.models.registry import config_from_dict, get_spec

log = logging.getLogger(__name__)


def _member_facts(store: runs.RunStore) -> dict[str, Any]:
    """What combining needs of one finished run; a ``RunError`` saying why a run cannot be a member."""
    st = store.status() or {}
    if not st.get("has_model"):
        raise RunError(f"Run {store.id} has no trained model (state: {st.get('state', 'unknown')}); an ensemble "
                       "combines finished runs.")
    cfg = store.config()
    caps = get_spec(cfg["model"]).capabilities
    if not caps.classifies:
        raise RunError(f"Run {store.id} ({cfg['model']}) does not classify cells; it cannot be an ensemble member.")
    if caps.combines:
        raise RunError(f"Run {store.id} is an ensemble itself; combine its members instead.")
    if store.protein() is not None:
        raise RunError(f"Run {store.id} reads a protein matrix beside RNA; ensembles combine RNA-only runs for now.")
    labels = store.labels()
    return {"store": store, "config": cfg, "data": store.data_info(), "label": labels.get("label_column"),
            "classes": list(labels["classes"]), "pred": store.predictions(), "metrics": store.metrics() or {}}


def _check_same_cells(facts: list[dict[str, Any]]) -> None:
    first = facts[0]
    a = first["store"].id
    for f in facts[1:]:
        b = f["store"].id
        if f["data"].get("sha256") != first["data"].get("sha256"):
            raise RunError(f"Runs {a} and {b} were trained on different files ({Path(first['data']['path']).name} "
                           f"and {Path(f['data']['path']).name}); an ensemble combines runs on the same file.")
        if f["label"] != first["label"]:
            raise RunError(f"Runs {a} and {b} learned different label columns ({first['label']} and {f['label']}).")
        if sorted(f["classes"]) != sorted(first["classes"]):
            raise RunError(f"Runs {a} and {b} know different cell types; train them on the same labels.")
        pa, pb = first["pred"], f["pred"]
        if len(pa) != len(pb) or not (pa["cell_id"].to_numpy() == pb["cell_id"].to_numpy()).all():
            raise RunError(f"Runs {a} and {b} used different cells (e.g. --drop-empty-cells); an ensemble needs the "
                           "same cells.")
        if not (pa["split"].to_numpy() == pb["split"].to_numpy()).all():
            raise RunError(f"Runs {a} and {b} split the cells differently (another seed or other fractions); an "
                           "ensemble needs the same split, so that no member has trained on its test cells.")


def _union(gene_lists: list[list[str]]) -> list[str]:
    return list(dict.fromkeys(g for genes in gene_lists for g in genes))


def build_ensemble(sources: list[runs.RunStore], run: Path, *, model: str = "ensemble", adopt: bool = True,
                   config: dict[str, Any] | None = None, threshold: float | None = None,
                   notes: list[str] | None = None, t_start: float | None = None) -> dict[str, Any]:
    """Combine finished runs into the ensemble run ``run``; returns its metrics.

    ``adopt``: copy each source run into the ensemble (``scapp ensemble``); otherwise they are already its members
    (``auto``). ``config``: the ensemble's request (``TrainRequest`` fields); by default the first member's, with
    this model. Every file of a run is written, ``status`` last.
    """
    from scapp.train.engine import environment, score_and_save

    t_start = time.monotonic() if t_start is None else t_start
    store = runs.RunStore(run)
    if not sources:
        raise RunError("An ensemble needs at least one finished member run.")
    if len({s.id for s in sources}) < len(sources):
        raise RunError("The same run is named twice; an ensemble combines different runs.")
    facts = [_member_facts(s) for s in sources]
    _check_same_cells(facts)
    members = [store.adopt_member(s) for s in sources] if adopt else list(sources)
    first = facts[0]
    classes = first["classes"]
    pred = first["pred"]
    codes = {c: i for i, c in enumerate(classes)}
    y = pred["true"].map(codes).fillna(-1).to_numpy(dtype=np.int64)
    where = pred["split"].to_numpy()
    split = Split(train=np.flatnonzero(where == "train"), valid=np.flatnonzero(where == "valid"),
                  test=np.flatnonzero(where == "test"))
    probas = [f["pred"][[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64) for f in facts]
    va = split.valid[y[split.valid] >= 0]

    spec = get_spec(model)
    cls = spec.load()
    base = dict(config or {k: v for k, v in first["config"].items() if k not in ("format_version", "created")})
    ens_cfg = config_from_dict(cls.Config, base.get("model_config") if config else {})
    weights, alone = cls.choose_weights(probas=[p[va] for p in probas], y=y[va], step=ens_cfg.weight_step)
    ens_cfg.member_runs = [m.id for m in members]
    ens_cfg.weights = [float(w) for w in weights]
    if not config:  # what retraining this ensemble trains again: each member's method, options and preprocessing
        ens_cfg.members = [{"model": f["config"]["model"], "options": f["config"].get("model_config", {}),
                            "preprocess": f["config"].get("preprocess", {})} for f in facts]
    combined = np.tensordot(weights, np.stack(probas), axes=1)
    logits = np.log(np.clip(combined, 1e-12, 1.0))
    thr = float(threshold if threshold is not None else base.get("threshold", 0.5))
    out, T = score_and_save(store, logits, y, split, pred["cell_id"].to_numpy(), classes, threshold=thr)

    genes = _union([m.genes() for m in members])
    recipe = Recipe(config=PreprocessConfig(**cls.preprocess_defaults), genes=genes)
    ens = cls(ens_cfg, n_features=len(genes), classes=classes)
    store.write_config({**base, "created": runs.now_iso(), "model": model, "threshold": thr,
                        "model_config": asdict(ens_cfg), "preprocess": asdict(recipe.config)})
    data = dict(first["data"])
    data["notes"] = list(notes or []) + [f"Ensemble of {len(members)} runs: " + ", ".join(
        f"{f['config']['model']} ({w:.0%})" for f, w in zip(facts, weights))]
    store.write_data_info(data)
    store.write_env(environment(first["config"].get("device_used", "cpu")))
    store.write_genes(genes)
    store.write_labels(classes, first["label"])
    store.write_recipe(recipe.to_dict())
    store.write_temperature(T)
    store.write_weights(ens.save_weights)
    store.write_history(pd.DataFrame())
    nll = {a["member"]: a["balanced_nll"] for a in alone}
    out["members"] = [{"run_id": m.id, "model": f["config"]["model"], "weight": float(w),
                       "valid_balanced_nll": nll.get(i),
                       "valid": {k: (f["metrics"].get("valid") or {}).get(k) for k in
                                 ("macro_f1", "balanced_accuracy", "accuracy")},
                       "test": {k: (f["metrics"].get("test") or {}).get(k) for k in
                                ("macro_f1", "balanced_accuracy", "accuracy")},
                       "fit_seconds": f["metrics"].get("fit_seconds")}
                      for i, (m, f, w) in enumerate(zip(members, facts, weights))]
    out["weights"] = [float(w) for w in weights]
    out.update({"notes": data["notes"], "n_train": int(split.train.size), "n_valid": int(split.valid.size),
                "n_test": int(split.test.size), "fit_seconds": float(sum(f["metrics"].get("fit_seconds") or 0
                                                                         for f in facts)),
                "total_seconds": time.monotonic() - t_start, "fit_info": {"weight_step": ens_cfg.weight_step}})
    store.write_metrics(out)
    return out


def _member_span(members: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each member's share of the progress bar, by its method's rough time estimate (registry)."""
    cost = np.array([get_spec(m["model"]).seconds_per_1k.get(m.get("preset", "default"), 10.0) for m in members])
    edges = np.concatenate([[0.0], np.cumsum(cost) / max(cost.sum(), 1e-9)]) * 0.95
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def run_auto(req: Any, run: Path) -> dict[str, Any]:
    """Train each member the ensemble's config lists on the same file and split, then combine them.

    A Stop ends the member in training (its best epoch is kept, as for any run) and skips the rest; the members
    that finished are combined and the run ends ``cancelled``. A member that fails on a user mistake is
    recorded as failed and the others go on; if every member fails, the first error is raised.
    """
    from scapp.train.engine import Within, run_training

    t_start = time.monotonic()
    store = runs.RunStore(run)
    spec = get_spec(req.model)
    cfg = config_from_dict(spec.load().Config, dict(req.model_config))
    if not cfg.members:
        raise RunError(f"{spec.title} lists no members to train.")
    spans = _member_span(cfg.members)
    finished: list[runs.RunStore] = []
    errors: list[ScappError] = []
    notes: list[str] = []
    stopped = False
    for i, (member, span) in enumerate(zip(cfg.members, spans)):
        name = member["model"]
        mspec = get_spec(name)
        if mspec.capabilities.combines:
            raise RunError(f"An ensemble member cannot be an ensemble ({name}).")
        label = f"{name} ({i + 1}/{len(cfg.members)})"
        if runs.stop_requested(run):
            stopped = True
            notes.append(f"{name} was not trained (stopped before it started).")
            continue
        options = {**mspec.presets.get(member.get("preset", "default"), {}), **member.get("options", {})}
        mstore = store.member(f"{i + 1}-{name}")
        mstore.path.mkdir(parents=True, exist_ok=True)
        # Each member preprocesses as its method does (or as the member entry says); the request's own
        # preprocessing is the ensemble's (raw counts over the members' genes) and never a member's.
        mreq = replace(req, model=name, model_config=options, preprocess=dict(member.get("preprocess") or {}))
        log.info("member %s", label)
        try:
            run_training(mreq, mstore.path, within=Within(run, span, label))
        except TrainingCancelled as e:
            mstore.write_status("cancelled", error=None, message=str(e), has_model=False)
            stopped = True
            notes.append(f"{name} was stopped before its first epoch finished.")
            continue
        except ScappError as e:
            mstore.write_status("failed", error=str(e), has_model=False)
            errors.append(e)
            notes.append(f"{name} failed: {e}")
            log.warning("member %s failed: %s", label, e)
            continue
        if runs.stop_requested(run):
            stopped = True
            notes.append(f"{name} was stopped; its best epoch so far is used.")
        finished.append(mstore)
    if not finished:
        if errors:
            raise errors[0]
        raise TrainingCancelled("Stopped before any member of the ensemble finished; nothing was saved but the "
                                "settings.")
    runs.write_status(run, "running", phase="combining the members", progress=0.96)
    request = {**asdict(req), "model_config": asdict(cfg)}
    result = build_ensemble(finished, run, model=req.model, adopt=False, config=request, notes=notes,
                            t_start=t_start)
    final = "cancelled" if stopped else "finished"
    msg = ("Stopped by user: the ensemble combines the members that had finished (" +
           ", ".join(f["model"] for f in result["members"]) + ")." if stopped else None)
    runs.write_status(run, final, phase="done", progress=1.0, finished=runs.now_iso(), message=msg,
                      has_model=True, eta_s=0)
    return result


def ensemble_runs(sources: list[str], run: Path, *, threshold: float | None = None) -> dict[str, Any]:
    """``scapp ensemble RUN RUN … --out RUN``: combine finished runs into a new ensemble run (status last)."""
    stores = [runs.RunStore.open(s) for s in sources]
    runs.write_status(run, "running", phase="combining runs", progress=0.0, started=runs.now_iso(), error=None)
    result = build_ensemble(stores, run, model="ensemble", adopt=True, threshold=threshold)
    runs.write_status(run, "finished", phase="done", progress=1.0, finished=runs.now_iso(), has_model=True,
                      eta_s=0)
    return result
