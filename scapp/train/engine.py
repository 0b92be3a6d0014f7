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
from scapp.data.split import Split, stratified_split
from scapp.data.validate import (check_counts, check_empty_cells, check_genes, check_training_cells, empty_cells,
                                 get_labels, get_matrix)
from scapp.errors import InputError, TrainingCancelled
from scapp.evaluate.calibration import DEFAULT_THRESHOLD, ece, fit_temperature, reliability, softmax
from scapp.evaluate.metrics import classification_metrics, confusion, per_class_table
from scapp.explain.markers import marker_table
from scapp.models.registry import Capabilities, FitData, config_from_dict, get_spec
from scapp.train import timing

log = logging.getLogger(__name__)


@dataclass
class TrainRequest:
    """Everything a training run needs; saved as config.json so the run can be repeated."""

    data: str
    label: str | None
    """obs column of cell types; may be None for a method that does not need labels."""
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
    min_cells_per_class: int = 0
    """Leave out classes with fewer labelled cells than this (0: keep every class; classes under 3 cells are then
    trained on but not scored). See ``scapp.data.validate.check_training_cells`` for the minimums."""
    protein_key: str | None = None
    """obsm key of raw protein (ADT) counts to use beside RNA (multimodal); None: RNA only."""
    genes: list[str] | None = None
    """Train on only these genes of the training file (its gene names, matched exactly and kept in the file's
    order); None: all its genes. Set by a retrain on the genes a query shares with a run (``scapp.retrain``)."""
    genes_from: str | None = None
    """What ``genes`` were taken from (the query's file name), for the run's notes."""
    parent: str | None = None
    """Folder (absolute path) of the run this one was retrained or fine-tuned from; None for a run trained from
    scratch."""
    from_run: str | None = None
    """Folder (absolute path) of a pretraining run whose encoder this run starts from (``--from``): the run is
    trained on that run's genes and preprocessing, with its layer widths (``scapp.train.pretrain``)."""
    like_run: str | None = None
    """Folder of a pretraining run whose genes, preprocessing and layer widths this run takes **without** its
    weights: the from-scratch control of a fine-tune, so the two differ only in the starting encoder."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRequest:
        return config_from_dict(cls, d)


def restrict_genes(genes: list[str], wanted: list[str], data: str) -> np.ndarray:
    """Columns of the training file's ``genes`` that are in ``wanted`` (exact names), in the file's order.

    Raises ``InputError`` when fewer than 2 are found (the file changed since the gene list was made).
    """
    cols = np.flatnonzero(pd.Index(genes).isin(set(map(str, wanted))))
    if cols.size < 2:
        msg = (f"Only {cols.size} of the {len(set(wanted)):,} genes to train on {'is' if cols.size == 1 else 'are'} "
               f"in the training file {data}; at least 2 are needed. Was the file changed?")
        raise InputError(msg)
    return cols


def restriction_note(req: TrainRequest, n: int, n_file: int) -> str:
    """The run's note on a gene restriction: how many genes, shared with what, retrained from which run."""
    what = f"the {n:,} genes shared with {req.genes_from}" if req.genes_from else f"{n:,} chosen genes"
    note = f"Trained on {what} (of {n_file:,} in the training file)"
    if req.parent:
        note += f", retrained from run {Path(req.parent).name}"
    missing = len(set(map(str, req.genes or []))) - n
    if missing > 0:
        note += f"; {missing:,} of the requested genes are no longer in the training file"
    return note + "."


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


@dataclass
class Within:
    """A run trained as a member of another run (the auto ensemble): its progress also moves the parent's bar
    (``span`` of it, under ``label``), and a Stop asked of the parent stops it too."""

    parent: Path
    span: tuple[float, float]
    label: str

    def report(self, frac: float, *, member_s: float | None = None, **fields: Any) -> None:
        """Move the parent's bar; ``member_s``: this member's estimated seconds, from which the members after it
        are guessed (in proportion to their share of the bar) and added to the time left."""
        a, b = self.span
        phase = fields.pop("phase", None) or "training"
        if member_s and fields.get("eta_s") is not None and b > a:
            later = member_s * max(0.95 - b, 0.0) / (b - a)
            fields["eta_s"] = fields["eta_s"] + 0.8 * later
            fields["eta_max_s"] = (fields.get("eta_max_s") or fields["eta_s"]) + 1.25 * later
        runs.write_status(self.parent, "running", **{**fields, "progress": a + (b - a) * min(max(frac, 0.0), 1.0),
                                                     "phase": f"{self.label}: {phase}"})

    def stop_requested(self) -> bool:
        return runs.stop_requested(self.parent)


class _Reporter:
    """Turns Trainer events into metrics.jsonl lines and status.json progress.

    The status says what a person needs on the Train page, for any method: ``phase`` (what is happening),
    ``phase_step`` / ``phase_steps`` / ``phase_unit`` while the phase counts something, and ``eta_s`` /
    ``eta_max_s``, the seconds left in the whole run at best / at worst (``timing.remaining``). It also times
    each phase (``clock``) for the run's timing record.
    """

    def __init__(self, run: Path, max_epochs: int, within: Within | None = None,
                 clock: timing.PhaseClock | None = None) -> None:
        self.run = run
        self.store = runs.RunStore(run)
        self.max_epochs = max_epochs
        self.within = within
        self.clock = clock or timing.PhaseClock()
        self.estimate: timing.Estimate | None = None
        self.key: str | None = self.clock.current
        self.label = "training"
        self.main_epoch_s: list[float] = []

    def set_estimate(self, est: timing.Estimate) -> None:
        self.estimate = est
        runs.write_status(self.run, "running", estimate_s=round(est.seconds, 1), estimate_source=est.source)

    def speed(self) -> float:
        """How much slower (> 1) or faster this run's main epochs go than the estimate's; 1 when unknown."""
        if not self.main_epoch_s or self.estimate is None or not self.estimate.epoch_s:
            return 1.0
        import statistics

        # wide bounds: on a shared 2-core machine torch's threads ran 3-30x slower than on an idle one (issue 11)
        return min(max(statistics.median(self.main_epoch_s) / self.estimate.epoch_s, 0.5), 20.0)

    def emit(self, event: dict[str, Any]) -> None:
        event = {"time": time.time(), **event}
        if "train_loss" in event or "valid_loss" in event:
            self.store.append_epoch(event)
        if event.get("phase_key"):
            self.key = event["phase_key"]
            self.clock.enter(self.key)
        if self.key == "main" and event.get("epoch_s"):
            self.main_epoch_s.append(float(event["epoch_s"]))
        ep = event.get("epoch", 0) or 0
        # Phases report their own fraction of the whole fit; otherwise epochs tell.
        done = event["progress"] if event.get("progress") is not None else ep / max(self.max_epochs, 1)
        frac = 0.05 + 0.8 * min(done, 1.0)
        self._write(frac, event.get("phase") or self.label, event, epoch=ep, max_epochs=self.max_epochs)
        if ep and "epoch_s" in event:
            log.info("epoch %s: %s", ep, {k: round(v, 4) if isinstance(v, float) else v
                                          for k, v in event.items() if k not in ("time",)})

    def enter(self, key: str, label: str, progress: float) -> None:
        """An engine phase (``load``, ``evaluate``): its own status line and time."""
        self.key = key
        self.clock.enter(key)
        self._write(progress, label, {})

    def _write(self, frac: float, label: str, event: dict[str, Any], **extra: Any) -> None:
        self.label = label
        left = timing.remaining(self.estimate, self.key, phase_low=event.get("eta_s"),
                                phase_high=event.get("eta_max_s"), in_phase_s=self.clock.in_phase(),
                                speed=self.speed())
        counted = event.get("phase_steps") is not None
        fields = dict(phase=label, phase_key=self.key, phase_step=event.get("phase_step") if counted else None,
                      phase_steps=event.get("phase_steps"), phase_unit=event.get("phase_unit") if counted else None,
                      eta_s=round(left[0], 1) if left else None, eta_max_s=round(left[1], 1) if left else None,
                      message=None, **extra)
        runs.write_status(self.run, "running", progress=frac, **fields)
        if self.within is not None:
            member_s = self.estimate.seconds - self.estimate.startup_s if self.estimate is not None else None
            self.within.report(frac, member_s=member_s, **fields)

    def should_stop(self) -> bool:
        return self.store.stop_requested() or (self.within is not None and self.within.stop_requested())


def _phase(run: Path, phase: str, progress: float, within: Within | None = None) -> None:
    log.info("%s", phase)
    runs.write_status(run, "running", phase=phase, progress=progress)
    if within is not None:
        within.report(progress, phase=phase)
    if runs.stop_requested(run) or (within is not None and within.stop_requested()):
        raise TrainingCancelled("Stopped by user before training started; nothing was trained.")


def _split_labelled(y: np.ndarray, req: TrainRequest, classes: list[str]) -> Split:
    """Stratified split of the labelled cells (``y >= 0``); unlabelled cells (pretraining) all go to training."""
    lab = np.flatnonzero(y >= 0)
    if lab.size == 0:  # no labels at all (an autoencoder trained without --label): hold out random cells
        return stratified_split(np.zeros(len(y), np.int64), valid=req.valid_frac, test=req.test_frac, seed=req.seed)
    s = stratified_split(y[lab], valid=req.valid_frac, test=req.test_frac, seed=req.seed, class_names=classes)
    unl = np.flatnonzero(y < 0)
    return Split(train=np.sort(np.concatenate([lab[s.train], unl])), valid=lab[s.valid], test=lab[s.test],
                 notes=s.notes)


@dataclass
class Setup:
    """A request resolved: its method, options, preprocessing and device (and the pretraining run it starts from).
    Made by :func:`setup`, which checks them all before anything is written."""

    spec: Any
    caps: Capabilities
    model_cls: Any
    model_cfg: Any
    pp_cfg: PreprocessConfig
    pre: Any = None
    pre_notes: list[str] = field(default_factory=list)
    device: Any = "cpu"


def setup(req: TrainRequest) -> Setup:
    """Resolve and check a request's method, options and device; raises a ``ScappError`` for an unknown method or
    option, a missing label column name, a protein matrix the method cannot read, an unusable pretraining run or a
    device that is not there."""
    from scapp.train.device import resolve_device

    spec = get_spec(req.model)
    caps = spec.capabilities.for_run(req.label)  # a label-optional classifier (ZiPo) classifies only with a label
    model_cls = spec.load()
    cfg_dict = dict(req.model_config)
    known = model_cls.Config.__dataclass_fields__
    pre = None
    pre_notes: list[str] = []
    if req.from_run or req.like_run:  # fine-tune from (or like) a pretraining run: its genes, recipe, widths
        from scapp.train.pretrain import load_pretraining

        if req.genes is not None:
            raise InputError("A run started from a pretraining run uses that run's genes; it cannot also be "
                             "restricted to a query's genes.")
        pre = load_pretraining(req.from_run or req.like_run)
        for k, v in pre.architecture.items():
            if k in known:
                if k in cfg_dict and cfg_dict[k] != v:
                    pre_notes.append(f"{k} set to the pretraining run's {v} (asked: {cfg_dict[k]}).")
                cfg_dict[k] = v
    if req.epochs is not None and "max_epochs" in known:
        cfg_dict["max_epochs"] = req.epochs
    if "seed" in known:
        cfg_dict.setdefault("seed", req.seed)
    model_cfg = config_from_dict(model_cls.Config, cfg_dict)
    pp = {**model_cls.preprocess_defaults, **req.preprocess}
    if caps.needs_raw_counts:
        pp["output"] = "counts"
    pp_cfg = PreprocessConfig.from_dict(pp) if pre is None else pre.recipe.config
    if caps.needs_labels and not req.label:
        raise InputError(f"{spec.title} needs a label column (cell types); name one with --label.")
    if req.protein_key and "protein" not in caps.modalities:
        raise InputError(f"{spec.title} reads RNA only; leave out the protein matrix ({req.protein_key}).")
    if req.min_cells_per_class < 0:
        raise InputError(f"The minimum number of cells per class cannot be negative ({req.min_cells_per_class}).")
    return Setup(spec=spec, caps=caps, model_cls=model_cls, model_cfg=model_cfg, pp_cfg=pp_cfg, pre=pre,
                 pre_notes=pre_notes, device=resolve_device(req.device))


@dataclass
class Selection:
    """Which cells of a file a run trains on, with their class codes (-1: unlabelled), and why others are not."""

    cells: np.ndarray
    y: np.ndarray
    classes: list[str]
    notes: list[str]
    cols: np.ndarray | None = None
    """Columns of the file's genes to keep (a retrain on a query's genes); None: all."""


def select_cells(req: TrainRequest, s: Setup, adata: Any, X: Any) -> Selection:
    """The cells to train on and their labels, checked: labels usable, no all-zero cells (unless dropped), a gene
    restriction that leaves genes, at least two classes for a classifier, and the minimums of
    ``scapp.data.validate.check_training_cells``. ``X`` is the matrix as the run reads it (aligned to a
    pretraining run's genes, if any); it is not copied. The Train page (``scapp.train.job.check_request``) and the
    engine run this same function, so the app refuses what a job would fail on."""
    caps, pre = s.caps, s.pre
    if req.label:
        codes, classes, labelled = get_labels(adata, req.label)
    else:  # a method that learns without labels, and none given
        codes, classes, labelled = np.full(adata.n_obs, -1), [], np.zeros(adata.n_obs, bool)
    use = labelled | (not caps.needs_labels)
    keep = check_empty_cells(X, what="the training data", drop=req.drop_empty_cells or pre is not None) & use
    notes: list[str] = []
    if pre is not None and (~keep & use).any():
        notes.append(f"{int((~keep & use).sum()):,} cells with no counts in the pretraining run's genes were left "
                     "out.")
    if (~labelled).any():
        notes.append(f"{int((~labelled).sum()):,} cells without a label were left out of training."
                     if caps.needs_labels else
                     f"{int((~labelled).sum()):,} cells without a label are used for training but never scored.")
    if req.drop_empty_cells and (~keep & use).any():
        notes.append(f"{int((~keep & use).sum()):,} cells with zero counts were left out.")
    cols = None
    if req.genes is not None:  # a retrain on the genes a query shares with the parent run
        genes = adata.var_names.astype(str).tolist() if pre is None else list(pre.genes)
        cols = restrict_genes(genes, req.genes, req.data)
        notes.append(restriction_note(req, int(cols.size), adata.n_vars))
        silent = keep & empty_cells(X[:, cols])
        if silent.any():
            keep &= ~silent
            notes.append(f"{int(silent.sum()):,} cells with no counts in those {cols.size:,} genes were left out.")
    cells = np.flatnonzero(keep)
    y = np.where(labelled[cells], codes[cells], -1).astype(np.int64)
    present = np.unique(y[y >= 0])
    if caps.classifies and present.size < 2:
        msg = "After removing unlabelled and empty cells only one class is left; a classifier needs at least two."
        raise InputError(msg)
    chk = check_training_cells(y, classes, valid_frac=req.valid_frac, test_frac=req.test_frac,
                               min_cells_per_class=req.min_cells_per_class, classifies=caps.classifies,
                               needs_labels=caps.needs_labels)
    if chk.dropped is not None:  # classes below --min-cells-per-class: their cells leave (or lose their label)
        cells, y = cells[chk.keep], chk.codes[chk.keep]
        classes = chk.classes
    notes += chk.notes
    return Selection(cells=cells, y=y, classes=classes, notes=notes, cols=cols)


@dataclass
class TrainingData:
    """The cells a run trains on, read and checked (:func:`load_training_data`), and what ``data.json`` records."""

    X: Any
    genes: list[str]
    y: np.ndarray
    classes: list[str]
    cell_ids: pd.Index
    notes: list[str]
    info: dict[str, Any]
    protein: Any = None
    protein_names: list[str] | None = None


def load_training_data(req: TrainRequest, s: Setup) -> TrainingData:
    """Read the training file and select its cells (:func:`select_cells`); every ``ScappError`` a bad file or
    label column gives is raised here, before a run folder is needed."""
    from scapp.data import load_dataset

    adata, qc = load_dataset(req.data, orientation=req.orientation)
    X = get_matrix(adata, req.layer)
    check_genes(adata.var_names, what="The training data")
    check_counts(X, what="The training data")
    notes = list(s.pre_notes)
    pre = s.pre
    if pre is not None:  # the pretraining run's genes, in its order; genes it does not know are left out
        from scapp.data.align import align_genes

        X, overlap = align_genes(X, adata.var, pre.genes)
        notes.insert(0, f"{'Started from' if req.from_run else 'Genes and network of'} pretraining run "
                        f"{pre.id} ({pre.method or 'ssl'}{'' if req.from_run else ', its weights not used'}): "
                        "this file has "
                        f"{overlap.n_shared:,} of its {overlap.n_model_genes:,} genes ({overlap.frac_shared:.0%});"
                        " the others are zero here.")
    sel = select_cells(req, s, adata, X)
    notes += sel.notes
    genes = adata.var_names.astype(str).tolist() if pre is None else list(pre.genes)
    n_restricted = None
    if sel.cols is not None:
        X, genes, n_restricted = X[:, sel.cols], [genes[j] for j in sel.cols], int(sel.cols.size)
    cells, y, classes = sel.cells, sel.y, sel.classes
    X = X[cells]
    cell_ids = adata.obs_names[cells].astype(str)
    protein = protein_names = None
    if req.protein_key:
        from scapp.data.modalities import get_protein

        protein, protein_names = get_protein(adata, req.protein_key)
        protein = protein[cells]
    class_counts = {classes[c]: int(n) for c, n in zip(*np.unique(y[y >= 0], return_counts=True))}
    info = {"path": str(Path(req.data).resolve()), "sha256": file_digest(req.data),
            "n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars),
            "n_cells_used": int(cells.size), "n_unlabelled_used": int((y < 0).sum()),
            "label": req.label, "layer": req.layer,
            "class_counts": class_counts, "input_kind": qc.input_kind,
            "read_info": qc.read_info, "notes": notes,
            "genes_restricted_to": n_restricted, "parent_run": req.parent}
    return TrainingData(X=X, genes=genes, y=y, classes=classes, cell_ids=cell_ids, notes=notes, info=info,
                        protein=protein, protein_names=protein_names)


@dataclass
class Prepared:
    """A request checked and its data read, before a run folder exists (:func:`prepare_training`)."""

    setup: Setup
    data: TrainingData | None
    """None for a method that trains other runs (an ensemble): its members read the file themselves."""


def prepare_training(req: TrainRequest) -> Prepared:
    """Everything that can be wrong with a request, found before a run folder is made: the method and its options,
    the device, the file (readable, raw counts, unique genes), the label column, the classes and the minimums.
    ``scapp train`` calls this first, so a typo leaves no failed run behind; the data read is then trained on
    (``run_training(..., prepared=)``) without reading the file again."""
    s = setup(req)
    data = load_training_data(req, s)
    return Prepared(setup=s, data=None if s.caps.combines else data)


def run_training(req: TrainRequest, run: Path, *, within: Within | None = None,
                 prepared: Prepared | None = None) -> dict[str, Any]:
    """Train, evaluate, explain and save a run; returns the final metrics dict.

    What the model receives follows its registry capabilities: log1p-normalized input or raw
    counts (``needs_raw_counts``), and, for methods that do not need labels, the unlabelled cells
    too (their class code is -1; they train but are never scored). Raises ``ScappError``
    subclasses for user mistakes and ``TrainingCancelled`` when stopped before a model existed;
    the caller records those in status.json. ``prepared``: the request already checked and its data read
    (:func:`prepare_training`); otherwise both happen here.
    """
    from scapp.train.device import describe_device
    from scapp.train.trainer import Trainer

    import torch

    run = Path(run)
    store = runs.RunStore(run)
    t_start = time.monotonic()
    clock = timing.PhaseClock()
    clock.enter("load")
    s = prepared.setup if prepared is not None else setup(req)
    caps, model_cls, model_cfg, pp_cfg, pre, device = s.caps, s.model_cls, s.model_cfg, s.pp_cfg, s.pre, s.device
    store.write_config({"format_version": runs.FORMAT_VERSION, "created": runs.now_iso(),
                        **asdict(req), "model_config": asdict(model_cfg),
                        "preprocess": asdict(pp_cfg), "device_used": str(device)})
    store.write_env(environment(describe_device(device)))
    runs.write_status(run, "running", pid=os.getpid(), phase="loading data", progress=0.0,
                      started=runs.now_iso(), error=None)
    torch.manual_seed(req.seed)
    np.random.seed(req.seed)

    if caps.combines:  # an ensemble: its members are trained, then combined
        from scapp.train.ensemble import run_auto

        result = run_auto(req, run)
        if (runs.read_status(run) or {}).get("state") == "finished":
            _record_timing(run, req.model, asdict(model_cfg), n_cells=int(result.get("n_train", 0))
                           + int(result.get("n_valid", 0)) + int(result.get("n_test", 0)),
                           n_genes=next((int(t["n_genes"]) for t in (m.timing() for m in store.members()) if t),
                                        int(store.data_info().get("n_genes") or 0)), device=str(device),
                           phases={"ensemble": time.monotonic() - t_start}, epoch_s=None, epochs_run=None,
                           total_s=time.monotonic() - t_start)
        return result
    _phase(run, "loading data", 0.01, within)
    data = prepared.data if prepared is not None and prepared.data is not None else load_training_data(req, s)
    X, genes, y, classes, cell_ids, notes = data.X, data.genes, data.y, data.classes, data.cell_ids, data.notes
    protein, protein_names = data.protein, data.protein_names
    class_counts = data.info["class_counts"]
    cells = np.arange(len(y))  # the selected cells, in the order of X
    store.write_data_info(data.info)
    del data

    _phase(run, "splitting and preprocessing", 0.03, within)
    split = _split_labelled(y, req, classes)
    notes += split.notes
    for n in split.notes:
        log.warning("%s", n)
    recipe = Recipe.fit(X, genes, pp_cfg, train_idx=split.train) if pre is None else pre.recipe
    Xp = recipe.transform(X[:, pd.Index(genes).get_indexer(recipe.genes)] if recipe.dropped_genes else X)
    store.write_genes(recipe.genes)
    store.write_labels(classes, req.label)
    store.write_recipe(recipe.to_dict())
    features, extra = None, {}
    if protein is not None:  # protein columns go after the genes; their names are tagged
        from scapp.data.modalities import ProteinRecipe, stack

        prot = ProteinRecipe.fit(protein, protein_names, req.protein_key, train_idx=split.train)
        store.write_protein(prot.to_dict())
        extra = {"modalities": [("rna", Xp.shape[1]), ("protein", len(prot.names))]}
        Xp, features = stack(Xp, prot.transform(protein)), recipe.features + prot.features

    model = model_cls(model_cfg, n_features=Xp.shape[1], classes=classes, device=str(device))
    if pre is not None and req.from_run:
        model.fit_info["warm_start"] = {"run": pre.id, "method": pre.method, **model.warm_start(pre.state)}
    max_epochs = getattr(model_cfg, "max_epochs", 1)
    reporter = _Reporter(run, max_epochs, within, clock)
    n_detected = timing.effective_genes(X)  # what the run's cost scales with (and the Model page estimates with)
    try:  # the estimate only informs the progress line: never let it cost a run
        reporter.set_estimate(timing.estimate(req.model, n_cells=int(cells.size), n_genes=n_detected,
                                              options=_options(model_cfg), gpu=str(device).startswith("cuda"),
                                              root=_timing_root(run, within)))
    except Exception:  # noqa: BLE001
        log.warning("no time estimate for this run", exc_info=True)
    trainer = Trainer(reporter.emit, reporter.should_stop)
    clock.enter("main")
    runs.write_status(run, "running", phase="training", progress=0.05, epoch=0, max_epochs=max_epochs)
    log.info("training %s on %s cells × %s features (%s), device %s", req.model, len(split.train), Xp.shape[1],
             ", ".join(f"{k}: {v}" for k, v in class_counts.items()), device)
    fit_t0 = time.monotonic()
    model.fit(FitData(Xp[split.train], y[split.train], extra), FitData(Xp[split.valid], y[split.valid], extra),
              trainer)
    fit_s = time.monotonic() - fit_t0
    if trainer.stopped and trainer.best_epoch is None:
        raise TrainingCancelled("Stopped by user before the first epoch finished; nothing was saved but the settings.")

    reporter.enter("evaluate", "evaluating", 0.88)  # also after a Stop: the best epoch is kept
    log.info("evaluating")
    result = evaluate_and_save(model, caps, Xp, y, split, cell_ids, recipe, run, history=trainer.history,
                               threshold=req.threshold, features=features)
    if caps.explain_kind is not None and caps.classifies:
        reporter.enter("evaluate", "reference markers (Wilcoxon, for comparison)", 0.95)
        try:
            lab = split.train[y[split.train] >= 0]
            ref = reference_marker_table(X, genes, recipe, y, lab, classes, seed=req.seed)
            store.write_reference_markers(ref)
        except Exception:  # noqa: BLE001 - an optional comparison must not cost the user a trained model
            log.warning("reference markers (scanpy rank_genes_groups) failed; the run is kept without them",
                        exc_info=True)
    result.update({"fit_seconds": fit_s, "total_seconds": time.monotonic() - t_start, "notes": notes,
                   "best_epoch": trainer.best_epoch, "epochs_run": len(trainer.history),
                   "stopped_by_user": trainer.stopped, "batch_size": model.fit_info.get("batch_size"),
                   "n_train": int(len(split.train)),
                   "fit_info": model.fit_info,  # phase timings etc. of multi-phase models
                   "phases": [e for e in trainer.phase_history if "epoch_s" not in e],
                   "n_valid": int(len(split.valid)), "n_test": int(len(split.test))})
    phases = clock.stop()
    result["phase_seconds"] = phases
    store.write_metrics(result)
    if not trainer.stopped:  # a stopped run did not do all its work: its times would teach the estimates wrong
        ep_s = [e["epoch_s"] for e in trainer.history if e.get("epoch_s")]
        _record_timing(run, req.model, asdict(model_cfg), n_cells=int(cells.size), n_genes=n_detected,
                       device=str(device), phases=phases, epoch_s=float(np.median(ep_s)) if ep_s else None,
                       epochs_run=len(trainer.history), total_s=time.monotonic() - t_start)
    final = "cancelled" if trainer.stopped else "finished"
    msg = (f"Stopped by user after epoch {len(trainer.history)}; the best model so far (epoch {trainer.best_epoch}) "
           "was evaluated and saved." if trainer.stopped else None)
    runs.write_status(run, final, phase="done", progress=1.0, finished=runs.now_iso(), message=msg,
                      has_model=True, eta_s=0)
    log.info("run %s: %s, test macro-F1 %.3f", run.name, final, (result.get("test") or {}).get("macro_f1", float("nan")))
    return result


def _timing_root(run: Path, within: Within | None) -> Path:
    """The runs root whose past runs this run's estimate learns from (an ensemble member: its parent's)."""
    return (within.parent if within is not None else run).parent


def _options(model_cfg: Any) -> dict[str, Any]:
    """The options to match past runs on: every resolved option (the model config as trained)."""
    return {k: v for k, v in asdict(model_cfg).items() if k != "seed"}


def _record_timing(run: Path, model: str, options: dict[str, Any], **fields: Any) -> None:
    try:
        runs.RunStore(run).write_timing(timing.timing_record(model, options, **fields))
    except Exception:  # noqa: BLE001 - a timing log that cannot be written must not fail a finished run
        log.warning("could not record this run's timing", exc_info=True)


def evaluate_and_save(model: Any, caps: Capabilities, Xp: Any, y: np.ndarray, split: Split, cell_ids: pd.Index,
                      recipe: Recipe, run: Path, *, history: list[dict[str, Any]], threshold: float,
                      features: list[str] | None = None) -> dict[str, Any]:
    """Score, calibrate, explain and embed as the model's capabilities allow; write the artifacts and weights.

    Classifiers: temperature on the validation cells, metrics of every split, confusion matrix,
    per-class table, reliability, predictions with probabilities. Every model with a latent space:
    the embedding. Methods with an explanation: the explain arrays, marker table, dot plot and
    global importance. Unlabelled cells (``y < 0``) are never scored.
    """
    store = runs.RunStore(run)
    classes = model.classes
    by = np.where(y >= 0, y, 0) if caps.explain_kind else None
    expl = None
    if caps.classifies:
        logits, emb, expl = model.infer(Xp, by=by)
    else:
        emb = model.embed(Xp) if caps.embeds else None
        if caps.explain_kind:
            expl = model.explain(Xp, by)
    store.write_history(pd.DataFrame(history))
    if caps.classifies:
        out, T = score_and_save(store, logits, y, split, cell_ids, classes, threshold=threshold)
    else:
        out, T = {"classes": classes, "threshold": threshold}, 1.0
        store.write_predictions(_prediction_frame(y, split, cell_ids, classes))
    if emb is not None:
        store.write_embedding(emb)
    if caps.denoises:  # per-cell / per-gene denoising summaries and gene programs (scapp.denoise)
        from scapp.denoise import write_run_artifacts

        out["denoise"] = write_run_artifacts(store, model, Xp, genes=features or recipe.features,
                                             groups=split.labels(len(y)), cell_ids=cell_ids)
    if expl is not None:
        arrays = {"class_scores": expl.class_scores.astype(np.float32),
                  "global_importance": expl.global_importance.astype(np.float32)}
        if expl.cell_masks is not None:
            arrays["cell_masks"] = expl.cell_masks.astype(np.float32)
            arrays["cell_index"] = expl.cell_index.astype(np.int64)
            arrays["cell_class"] = y[expl.cell_index].astype(np.int64)
        for k, v in expl.extra.items():
            arrays[k] = np.asarray(v, dtype=np.float32)
        store.write_explain(arrays)
        names = features or recipe.features  # features: every input column's name when a protein matrix was added
        store.write_markers(marker_table(expl.class_scores, classes, names))
        lab = np.flatnonzero(y >= 0)
        store.write_dotplot(dotplot_table(Xp[lab], y[lab], classes, expl.class_scores, recipe))
        store.write_global_importance(pd.DataFrame({"gene": names, "importance": expl.global_importance})
                                      .sort_values("importance", ascending=False))
    store.write_temperature(T)
    store.write_weights(model.save_weights)
    return out


def _prediction_frame(y: np.ndarray, split: Split, cell_ids: Any, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"cell_id": np.asarray(cell_ids), "split": split.labels(len(y)),
                         "true": np.where(y >= 0, np.asarray(classes + [""], dtype=object)[y], None)})


def score_and_save(store: runs.RunStore, logits: np.ndarray, y: np.ndarray, split: Split, cell_ids: Any,
                   classes: list[str], *, threshold: float) -> tuple[dict[str, Any], float]:
    """A classifier's results from its logits: temperature on the validation cells, metrics of every split,
    calibration, confusion matrix, per-class table, reliability and the predictions table (every cell, with its
    calibrated ``p_<class>``). Shared by every trained model and by ensembles. Returns (metrics, temperature).
    """
    C = len(classes)
    out: dict[str, Any] = {"classes": classes, "threshold": threshold}
    scored = lambda idx: idx[y[idx] >= 0]  # noqa: E731 - unlabelled cells are never scored
    va, te = scored(split.valid), scored(split.test)
    T = fit_temperature(logits[va], y[va])
    p_raw = softmax(logits)
    proba = softmax(logits / T)
    pred = proba.argmax(1)
    conf = proba.max(1)
    for name, idx in (("train", scored(split.train)), ("valid", va), ("test", te)):
        out[name] = classification_metrics(y[idx], pred[idx], classes)
    out["calibration"] = {"temperature": T, "ece_before": ece(p_raw[te], y[te]),
                          "ece_after": ece(proba[te], y[te]), "ece_valid_before": ece(p_raw[va], y[va]),
                          "ece_valid_after": ece(proba[va], y[va])}
    out["test"]["unassigned_frac"] = float((conf[te] < threshold).mean()) if te.size else None
    store.write_confusion(pd.DataFrame(confusion(y[te], pred[te], C), index=classes, columns=classes))
    store.write_per_class(per_class_table(y[te], pred[te], classes))
    store.write_reliability({"before": reliability(p_raw[te], y[te]), "after": reliability(proba[te], y[te])})
    pred_df = _prediction_frame(y, split, cell_ids, classes)
    pred_df["pred"] = np.asarray(classes, dtype=object)[pred]
    pred_df["confidence"] = conf
    pred_df = pd.concat([pred_df, pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])], axis=1)
    store.write_predictions(pred_df)
    return out, T


def dotplot_table(Xp: Any, y: np.ndarray, classes: list[str], scores: np.ndarray, recipe: Recipe, *,
                  max_genes: int = 50) -> pd.DataFrame:
    """Per-class mean log-normalised expression and fraction of cells expressing, for each class's top genes.

    The data of the Explore page's dot plot: does a gene the model relies on for a class really mark it?
    Genes are the top ``max_genes // n_classes`` (3-8) of each class by ``scores`` (classes × features), in class
    order, at most ``max_genes``; values come from ``Xp`` (all cells of the run, grouped by their true class),
    with standardisation undone when the recipe scaled the genes.
    """
    from scapp.explain.markers import dotplot_data

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
