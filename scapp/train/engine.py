"""The training engine: data in, a finished run folder out.

``run_training`` is what ``python -m scapp train`` executes, in its own process
when started from the app. It reports progress to ``status.json`` and
``metrics.jsonl``, checks for the ``STOP`` file between batches, and writes
``status.json = finished`` only after every other file of the run is on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scapp import __version__, runs
from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.data.split import stratified_split
from scapp.data.validate import check_counts, check_empty_cells, check_genes, get_labels, get_matrix
from scapp.errors import InputError, TrainingCancelled
from scapp.evaluate.calibration import ece, fit_temperature, reliability, softmax
from scapp.evaluate.metrics import classification_metrics, confusion, per_class_table
from scapp.explain.markers import marker_table
from scapp.models import get_model_class
from scapp.models.base import FitData, Progress, config_from_dict

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5


@dataclass
class TrainRequest:
    """Everything a training run needs; saved as config.json so the run can be repeated."""

    data: str
    label: str
    model: str = "sims"
    layer: str | None = None
    epochs: int | None = None
    device: str = "auto"
    seed: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    valid_frac: float = 0.15
    test_frac: float = 0.15
    drop_empty_cells: bool = False
    orientation: str = "auto"
    threshold: float = DEFAULT_THRESHOLD
    protein_key: str | None = None
    """obsm key of raw protein (ADT) counts to use beside RNA (multimodal); None: RNA only."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRequest:
        return config_from_dict(cls, d)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file (or of the names and sizes in a folder), to tell datasets apart."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(p)}:{f.stat().st_size}\n".encode())
    else:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def environment(device_desc: str) -> dict[str, Any]:
    import torch

    vers = {"scapp": __version__, "python": platform.python_version(), "torch": torch.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("numpy", "scanpy", "anndata", "pytorch-tabnet", "scikit-learn", "captum"):
        try:
            vers[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - optional
            pass
    return {"versions": vers, "device": device_desc, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "cuda": torch.version.cuda}


class _Reporter:
    """Turns model events into metrics.jsonl lines and status.json progress."""

    def __init__(self, run: Path, max_epochs: int) -> None:
        self.run = run
        self.max_epochs = max_epochs
        self.last_write = 0.0

    def emit(self, event: dict[str, Any]) -> None:
        event = {"time": time.time(), **event}
        if "train_loss" in event or "valid_loss" in event:
            runs.append_jsonl(self.run / "metrics.jsonl", event)
        ep = event.get("epoch", 0) or 0
        # A multi-phase fit (Hydra) reports its own fraction done; otherwise epochs tell.
        done = event["progress"] if event.get("progress") is not None else ep / max(self.max_epochs, 1)
        frac = 0.05 + 0.8 * min(done, 1.0)
        runs.write_status(self.run, "running", phase="training", epoch=ep, max_epochs=self.max_epochs,
                          progress=frac, eta_s=event.get("eta_s"), message=event.get("phase"))
        if ep:
            log.info("epoch %s: %s", ep, {k: round(v, 4) if isinstance(v, float) else v
                                          for k, v in event.items() if k not in ("time",)})

    def should_stop(self) -> bool:
        return runs.stop_requested(self.run)


def _phase(run: Path, phase: str, progress: float) -> None:
    log.info("%s", phase)
    runs.write_status(run, "running", phase=phase, progress=progress)
    if runs.stop_requested(run):
        raise TrainingCancelled("Stopped by user before training started; nothing was trained.")


def run_training(req: TrainRequest, run: Path) -> dict[str, Any]:
    """Train, evaluate, explain and save a run; returns the final metrics dict.

    Raises ``ScappError`` subclasses for user mistakes and ``TrainingCancelled``
    when stopped before a model existed; the caller records those in status.json.
    """
    from scapp.data import load_dataset
    from scapp.train.device import describe_device, resolve_device

    import torch

    run = Path(run)
    t_start = time.monotonic()
    model_cls = get_model_class(req.model)
    cfg_dict = dict(req.model_config)
    known = model_cls.Config.__dataclass_fields__
    if req.epochs is not None and "max_epochs" in known:
        cfg_dict["max_epochs"] = req.epochs
    if "seed" in known:
        cfg_dict.setdefault("seed", req.seed)
    model_cfg = config_from_dict(model_cls.Config, cfg_dict)
    pp_cfg = PreprocessConfig.from_dict({**model_cls.preprocess_defaults, **req.preprocess})
    device = resolve_device(req.device)
    runs.write_json(run / "config.json", {"format_version": runs.FORMAT_VERSION, "created": runs.now_iso(),
                                          **asdict(req), "model_config": asdict(model_cfg),
                                          "preprocess": asdict(pp_cfg), "device_used": str(device)})
    runs.write_json(run / "env.json", environment(describe_device(device)))
    runs.write_status(run, "running", pid=os.getpid(), phase="loading data", progress=0.0,
                      started=runs.now_iso(), error=None)
    torch.manual_seed(req.seed)
    np.random.seed(req.seed)

    _phase(run, "loading data", 0.01)
    adata, qc = load_dataset(req.data, orientation=req.orientation)
    X = get_matrix(adata, req.layer)
    check_genes(adata.var_names, what="The training data")
    check_counts(X, what="The training data")
    codes, classes, labelled = get_labels(adata, req.label)
    keep = check_empty_cells(X, what="the training data", drop=req.drop_empty_cells) & labelled
    notes: list[str] = []
    if (~labelled).any():
        notes.append(f"{int((~labelled).sum()):,} cells without a label were left out of training.")
    if req.drop_empty_cells and (~keep & labelled).any():
        notes.append(f"{int((~keep & labelled).sum()):,} cells with zero counts were left out.")
    cells = np.flatnonzero(keep)
    X = X[cells]
    y = codes[cells]
    cell_ids = adata.obs_names[cells].astype(str)
    protein = None
    if req.protein_key:
        from scapp.data.modalities import get_protein

        protein, protein_names = get_protein(adata, req.protein_key)
        protein = protein[cells]
    present = np.unique(y)
    if present.size < 2:
        msg = "After removing unlabelled and empty cells only one class is left; a classifier needs at least two."
        raise InputError(msg)
    genes = adata.var_names.astype(str).tolist()
    class_counts = {classes[c]: int(n) for c, n in zip(*np.unique(y, return_counts=True))}
    runs.write_json(run / "data.json", {"path": str(Path(req.data).resolve()), "sha256": file_digest(req.data),
                                        "n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars),
                                        "n_cells_used": int(cells.size), "label": req.label, "layer": req.layer,
                                        "class_counts": class_counts, "input_kind": qc.input_kind,
                                        "read_info": qc.read_info, "notes": notes})
    del adata

    _phase(run, "splitting and preprocessing", 0.03)
    split = stratified_split(y, valid=req.valid_frac, test=req.test_frac, seed=req.seed, class_names=classes)
    notes += split.notes
    for n in split.notes:
        log.warning("%s", n)
    recipe = Recipe.fit(X, genes, pp_cfg, train_idx=split.train)
    Xp = recipe.transform(X[:, pd.Index(genes).get_indexer(recipe.genes)] if recipe.dropped_genes else X)
    runs.write_text(run / "genes.txt", "\n".join(recipe.genes) + "\n")
    runs.write_json(run / "labels.json", {"classes": classes, "label_column": req.label})
    runs.write_json(run / "preprocess.json", recipe.to_dict())
    features, extra = None, {}
    if protein is not None:  # protein columns go after the genes; their names are tagged
        from scapp.data.modalities import ProteinRecipe, stack

        prot = ProteinRecipe.fit(protein, protein_names, req.protein_key, train_idx=split.train)
        runs.write_json(run / "protein.json", prot.to_dict())
        extra = {"modalities": [("rna", Xp.shape[1]), ("protein", len(prot.names))]}
        Xp, features = stack(Xp, prot.transform(protein)), recipe.features + prot.features

    model = model_cls(model_cfg, n_features=Xp.shape[1], classes=classes, device=str(device))
    max_epochs = getattr(model_cfg, "max_epochs", 1)
    reporter = _Reporter(run, max_epochs)
    runs.write_status(run, "running", phase="training", progress=0.05, epoch=0, max_epochs=max_epochs)
    log.info("training %s on %s cells × %s features (%s), device %s", req.model, len(split.train), Xp.shape[1],
             ", ".join(f"{k}: {v}" for k, v in class_counts.items()), device)
    fit_t0 = time.monotonic()
    model.fit(FitData(Xp[split.train], y[split.train], extra), FitData(Xp[split.valid], y[split.valid], extra),
              Progress(reporter.emit, reporter.should_stop))
    fit_s = time.monotonic() - fit_t0
    if model.stopped_by_user and model.best_epoch is None:
        raise TrainingCancelled("Stopped by user before the first epoch finished; nothing was saved but the settings.")

    runs.write_status(run, "running", phase="evaluating", progress=0.88)
    log.info("evaluating")
    result = evaluate_and_save(model, Xp, y, split, cell_ids, recipe, run, threshold=req.threshold,
                               features=features)
    runs.write_status(run, "running", phase="reference markers", progress=0.95)
    try:
        ref = reference_marker_table(X, genes, recipe, y, split.train, classes, seed=req.seed)
        runs.write_table(run / "artifacts" / "reference_markers.csv", ref)
    except Exception:  # noqa: BLE001 - an optional comparison must not cost the user a trained model
        log.warning("reference markers (scanpy rank_genes_groups) failed; the run is kept without them",
                    exc_info=True)
    result.update({"fit_seconds": fit_s, "total_seconds": time.monotonic() - t_start, "notes": notes,
                   "best_epoch": model.best_epoch, "epochs_run": len(model.history),
                   "stopped_by_user": model.stopped_by_user,
                   "batch_size": getattr(model, "batch_size_used", None), "n_train": int(len(split.train)),
                   "fit_info": getattr(model, "fit_info", None),  # phase timings etc. of multi-phase models
                   "n_valid": int(len(split.valid)), "n_test": int(len(split.test))})
    runs.write_json(run / "metrics.json", result)
    final = "cancelled" if model.stopped_by_user else "finished"
    msg = (f"Stopped by user after epoch {len(model.history)}; the best model so far (epoch {model.best_epoch}) "
           "was evaluated and saved." if model.stopped_by_user else None)
    runs.write_status(run, final, phase="done", progress=1.0, finished=runs.now_iso(), message=msg,
                      has_model=True, eta_s=0)
    log.info("run %s: %s, test macro-F1 %.3f", run.name, final, result.get("test", {}).get("macro_f1", float("nan")))
    return result


def evaluate_and_save(model: Any, Xp: Any, y: np.ndarray, split: Any, cell_ids: pd.Index, recipe: Recipe,
                      run: Path, *, threshold: float,
                      features: list[str] | None = None) -> dict[str, Any]:
    """Calibrate on validation, score every split, explain, embed, and write the artifacts."""
    classes = model.classes
    C = len(classes)
    if hasattr(model, "infer"):
        logits, emb, expl = model.infer(Xp, by=y)
    else:
        logits, emb = model.predict_logits(Xp), model.embed(Xp)
        expl = model.explain(Xp, y)
    T = fit_temperature(logits[split.valid], y[split.valid])
    p_raw = softmax(logits)
    proba = softmax(logits / T)
    pred = proba.argmax(1)
    conf = proba.max(1)
    out: dict[str, Any] = {"classes": classes, "threshold": threshold}
    for name, idx in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        out[name] = classification_metrics(y[idx], pred[idx], classes)
    te = split.test
    out["calibration"] = {"temperature": T, "ece_before": ece(p_raw[te], y[te]), "ece_after": ece(proba[te], y[te]),
                          "ece_valid_before": ece(p_raw[split.valid], y[split.valid]),
                          "ece_valid_after": ece(proba[split.valid], y[split.valid])}
    out["test"]["unassigned_frac"] = float((conf[te] < threshold).mean()) if te.size else None
    art = run / "artifacts"
    cm = confusion(y[te], pred[te], C)
    runs.write_table(art / "confusion_test.csv", pd.DataFrame(cm, index=classes, columns=classes)
                     .rename_axis("true").reset_index())
    runs.write_table(art / "per_class_test.csv", per_class_table(y[te], pred[te], classes))
    runs.write_json(art / "reliability_test.json", {"before": reliability(p_raw[te], y[te]),
                                                    "after": reliability(proba[te], y[te])})
    runs.write_table(art / "history.csv", pd.DataFrame(model.history))
    pred_df = pd.DataFrame({"cell_id": np.asarray(cell_ids), "split": split.labels(len(y)),
                            "true": np.asarray(classes, dtype=object)[y], "pred": np.asarray(classes, dtype=object)[pred],
                            "confidence": conf})
    pred_df = pd.concat([pred_df, pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])], axis=1)
    runs.write_table(run / "predictions.parquet", pred_df)
    if emb is not None:
        runs.write_arrays(art / "embedding.safetensors", {"embedding": emb.astype(np.float32)})
    arrays = {"class_scores": expl.class_scores.astype(np.float32),
              "global_importance": expl.global_importance.astype(np.float32)}
    if expl.cell_masks is not None:
        arrays["cell_masks"] = expl.cell_masks.astype(np.float32)
        arrays["cell_index"] = expl.cell_index.astype(np.int64)
        arrays["cell_class"] = y[expl.cell_index].astype(np.int64)
    for k, v in expl.extra.items():
        arrays[k] = np.asarray(v, dtype=np.float32)
    runs.write_arrays(art / "explain.safetensors", arrays)
    names = features or recipe.features  # features: every input column's name when a protein matrix was added
    runs.write_table(art / "markers.csv", marker_table(expl.class_scores, classes, names))
    runs.write_table(art / "dotplot.csv", dotplot_table(Xp, y, classes, expl.class_scores, recipe))
    runs.write_table(art / "global_importance.csv",
                     pd.DataFrame({"gene": names, "importance": expl.global_importance})
                     .sort_values("importance", ascending=False))
    runs.write_json(art / "temperature.json", {"temperature": T})
    path = run / "model.safetensors"
    runs.write_atomic(path, model.save_weights)
    return out


def dotplot_table(Xp: Any, y: np.ndarray, classes: list[str], scores: np.ndarray, recipe: Recipe, *,
                  max_genes: int = 50) -> pd.DataFrame:
    """Per-class mean log-normalised expression and fraction of cells expressing, for each class's top genes.

    The data of the Explore page's dot plot: does a gene the model relies on for a class really mark it?
    Genes are the top ``max_genes // n_classes`` (3-8) of each class by ``scores`` (classes × features), in class
    order, at most ``max_genes``; values come from ``Xp`` (all cells of the run, grouped by their true class),
    with standardisation undone when the recipe scaled the genes.
    """
    from scapp.viz.explain import dotplot_data

    C = len(classes)
    k = int(np.clip(max_genes // max(C, 1), 3, 8))
    n_genes = min(len(recipe.features), np.shape(scores)[1], Xp.shape[1])  # gene columns come first
    picked: dict[int, str] = {}
    for c in range(C):
        for j in np.argsort(-np.asarray(scores[c][:n_genes], dtype=np.float64), kind="stable")[:k]:
            picked.setdefault(int(j), classes[c])
    cols = np.array(list(picked)[:max_genes], dtype=np.int64)
    names = [recipe.features[j] for j in cols]
    sub = Xp[:, cols]
    sub = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub, dtype=np.float64)
    if recipe.mean is not None:
        # mean/std are per model feature (Recipe.fit scales after any HVG selection)
        sub = np.maximum(sub * recipe.std[cols] + recipe.mean[cols], 0.0)
    mean, frac = dotplot_data(sub, np.asarray(classes, dtype=object)[y], names, names, classes=classes,
                              threshold=1e-6)
    long = mean.stack(future_stack=True).rename("mean_expression").to_frame()
    long["frac_expressing"] = frac.stack(future_stack=True)
    long = long.reset_index()
    long["top_for"] = long["gene"].map(dict(zip(names, picked.values())))
    return long


def reference_marker_table(X: Any, genes: list[str], recipe: Recipe, y: np.ndarray, train_idx: np.ndarray,
                           classes: list[str], *, seed: int, per_class: int = 1000) -> pd.DataFrame:
    """Wilcoxon one-vs-rest markers of (≤ ``per_class`` per class) training cells, for Explore's comparison.

    Computed on log-normalized counts of the model's features, not on the model
    input (scaling and clipping would distort the test), so the model's gene
    ranking can be set beside the statistical one a biologist already trusts.
    """
    from scapp.data.preprocess import normalize_log
    from scapp.explain.markers import reference_markers, stratified_cells

    cells = np.asarray(train_idx)[stratified_cells(y[train_idx], per_class, seed=seed)]
    Xc = X[cells]
    if recipe.dropped_genes:
        Xc = Xc[:, pd.Index(genes).get_indexer(recipe.genes)]
    Xl = normalize_log(Xc, target_sum=recipe.config.target_sum, log1p=recipe.config.log1p)
    if recipe.feature_idx is not None:
        Xl = Xl[:, recipe.feature_idx]
    return reference_markers(Xl, y[cells], classes, recipe.features, per_class=per_class, seed=seed)
