"""Pretraining from the app (issue 13): pretrain, then fine-tune, and the same network from scratch to compare.

The Model page lets a method that declares ``pretrains`` learn from unlabelled cells first (files picked from the
session's training file, its query and uploaded files) or start from a finished pretraining run. The Train page
then queues up to three jobs through the ordinary job queue (``scapp.train.job``), which runs jobs one at a
time in the order they were queued, so no job waits on another by name:

1. a **pretraining run** of its own (``scapp pretrain``'s work, listed on the Runs page);
2. the same method **from scratch**, with the same settings, seed and split fractions (optional), so Explore can
   show what pretraining changed;
3. the **fine-tune** started from the pretraining run (``--from``): it records the pretraining run as its parent.

The fine-tune comes last so that the whole job is done when the run the Train page follows has finished.
Each queued run's request keeps the job's links (``job`` in request.json: the other runs of the chain), which is
how the Train page shows every step and Explore finds the comparison run; a job whose pretraining failed fails
with that run's reason (``load_pretraining``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from scapp import runs
from scapp.errors import ConfigError, RunError
from scapp.models.registry import get_spec
from scapp.train.engine import TrainRequest
from scapp.train.job import JOB_KEY, start_job
from scapp.train.pretrain import PretrainRequest

ROLES = ("pretraining", "scratch", "finetune")
ROLE_TITLES = {"pretraining": "Pretraining on unlabelled cells", "scratch": "From scratch, for comparison",
               "finetune": "Fine-tuning from the pretrained encoder"}
DATA_SUFFIXES = (".h5ad", ".h5", ".loom", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz", ".zip",
                 ".tar.gz", ".tgz")


@dataclass
class PretrainPlan:
    """What the Model page chose: pretrain on ``files`` first, or start from ``from_run``; and the comparison."""

    files: list[str] = field(default_factory=list)
    """Files whose cells are pretrained on (labels ignored); empty when starting from an existing run."""
    from_run: str | None = None
    """Folder of a finished pretraining run to start from instead."""
    method: str = "mae"
    epochs: int | None = None
    """Pretraining epochs (None: the method's options, e.g. the preset's max_epochs)."""
    scratch: bool = True
    """Also train the same network from scratch on the same split, for Explore's comparison."""

    def __post_init__(self) -> None:
        if bool(self.files) == bool(self.from_run):
            raise ConfigError("Pretrain on some files, or start from one pretraining run (not both, not neither).")


@dataclass
class StartedJobs:
    """The run folders one Start created: the fine-tune is the run to follow."""

    finetune: Path
    pretraining: Path | None = None
    scratch: Path | None = None


# -- what the Model page offers ------------------------------------------------------------------------------------
def pretraining_file_options(data: str | None, *, query: str | None = None,
                             uploads: Path | None = None) -> dict[str, str]:
    """Files the cells can be pretrained on, ``{path: what it is}``: the training file, its query (the query
    loaded on Annotate, or the demo's query when the training file is the demo) and files uploaded to the app.

    Order: the query first (pretraining on other cells is what can help; the training file's own cells gave no
    gain in the published study), then the training file, then uploads.
    """
    from scapp.data.demo import demo_path, demo_query_path

    out: dict[str, str] = {}

    def add(p: str | Path | None, what: str) -> None:
        if p and Path(p).exists():
            key = str(Path(p).resolve())
            out.setdefault(key, f"{Path(p).name} ({what})")

    if query:
        add(query, "the query")
    if data and Path(data).resolve() == demo_path().resolve():
        add(demo_query_path(), "the demo's query: PBMC 4k, another donor")
    if data:
        add(data, "the labelled training file itself")
    if uploads is not None and uploads.is_dir():
        for p in sorted(uploads.iterdir()):
            if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES):
                add(p, "uploaded")
    return out


def pretrain_methods(model: str) -> tuple[str, ...]:
    """The pretraining objectives whose encoder ``model`` can start from: those whose shared architecture options
    are options of ``model`` (an MLP encoder for ``ssl``; TabNet's for SIMS)."""
    from scapp.train.pretrain import pretraining_spec

    cls = pretraining_spec().load()
    own = {f.name for f in fields(get_spec(model).load().Config)}
    out = []
    for m in getattr(cls, "pretrain_methods", ()):
        try:
            arch = cls.pretrain_architecture(m, cls.pretrain_config(m, {}))
        except ConfigError:
            continue
        if set(arch) <= own:
            out.append(m)
    return tuple(out)


def fitting_pretraining_runs(model: str, genes: Sequence[str] | pd.DataFrame, root: Path, *,
                             min_frac: float = 0.5) -> pd.DataFrame:
    """Finished pretraining runs ``model`` can start from on a file with ``genes`` (its var_names, or its var
    table): the run's objective suits ``model`` and at least ``min_frac`` of the run's genes are in the file.

    Columns: run_id, method, cells, genes, shared (fraction of the run's genes in the file), valid_loss, path.
    """
    from scapp.data.align import match_genes

    var = genes if isinstance(genes, pd.DataFrame) else pd.DataFrame(index=pd.Index(list(map(str, genes))))
    methods = set(pretrain_methods(model))
    rows = []
    table = runs.list_runs(root)
    for r in table.itertuples() if len(table) else ():
        if r.state not in ("finished", "cancelled") or not r.has_model:
            continue
        store = runs.RunStore(r.path)
        try:
            cfg = store.config() or {}
            if cfg.get("kind") != "pretraining" or cfg.get("method") not in methods:
                continue
            run_genes = store.genes()
            met = store.metrics(missing_ok=True) or {}
        except (RunError, OSError):
            continue
        idx, _, _ = match_genes(var, run_genes)
        frac = float((idx >= 0).mean()) if len(run_genes) else 0.0
        if frac < min_frac:
            continue
        rows.append({"run_id": r.run_id, "method": cfg.get("method"),
                     "cells": int((met.get("n_train") or 0) + (met.get("n_valid") or 0)), "genes": len(run_genes),
                     "shared": frac, "valid_loss": met.get("valid_loss"), "path": str(r.path)})
    cols = ["run_id", "method", "cells", "genes", "shared", "valid_loss", "path"]
    return pd.DataFrame(rows, columns=cols).sort_values("run_id", ascending=False, ignore_index=True)


METHOD_NAMES = {"mae": "masked autoencoder", "vicreg": "contrastive, VICReg", "simclr": "contrastive, SimCLR",
                "tabnet": "TabNet pretraining"}


def plan_line(plan: PretrainPlan) -> str:
    """The plan in one line ("pretraining (…) on A, B, then fine-tuning from it; …"), for the Model and Train
    pages."""
    if plan.from_run:
        head = f"fine-tuning from pretraining run {Path(plan.from_run).name}"
    else:
        names = ", ".join(Path(p).name for p in plan.files)
        ep = f", up to {plan.epochs} epochs" if plan.epochs else ""
        head = (f"pretraining ({METHOD_NAMES.get(plan.method, plan.method)}{ep}) on {names}, then fine-tuning from "
                "it")
    return head + ("; and the same network from scratch on the same split, for comparison" if plan.scratch else "")


def cells_in_file(path: str | Path) -> int | None:
    """Cells in ``path`` without reading its matrix: an ``.h5ad``'s obs index length; None for other formats (they
    are only counted when read) and for a file that cannot be opened (the run itself will say why)."""
    if not str(path).lower().endswith(".h5ad"):
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            obs = f["obs"]
            if isinstance(obs, h5py.Dataset):  # an old h5ad: obs as one table
                return int(obs.shape[0])
            return int(obs[obs.attrs.get("_index", "_index")].shape[0])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def pretraining_time(plan: PretrainPlan, model: str, options: dict[str, Any], n_genes: int, *,
                     known_cells: dict[str, int] | None = None, gpu: bool = False,
                     root: Path | None = None) -> str | None:
    """How long the plan's pretraining takes, in words ("at most about 3 min: 50 epochs over 4,138 cells, …"),
    for the Model page; None when starting from a finished run. ``known_cells``: cell counts already known (the
    loaded files), others are counted from the file (``cells_in_file``) or said to be unknown."""
    from scapp.train import timing
    from scapp.train.pretrain import pretraining_spec

    if plan.from_run or not plan.files:
        return None
    cls = pretraining_spec().load()
    try:
        cfg = cls.pretrain_config(plan.method, _shared_options(options))
    except ConfigError:
        return None
    epochs = int(plan.epochs or cfg.max_epochs)
    counts = {p: (known_cells or {}).get(p) or cells_in_file(p) for p in plan.files}
    n = sum(c for c in counts.values() if c)
    unknown = [Path(p).name for p, c in counts.items() if not c]
    if not n:
        return f"pretraining time not estimated ({', '.join(unknown)}: cells are counted once the file is read)"
    n_train = n - PretrainRequest(data=list(plan.files)).held_out(n)
    est = timing.pretraining_estimate(plan.method, n_train, n_genes, epochs,
                                      architecture=cls.pretrain_architecture(plan.method, cfg), gpu=gpu, root=root)
    text = (f"pretraining at most {timing.about(est.seconds)} ({epochs} epochs over {n:,} cells; {est.source}; "
            "early stopping may end it sooner)")
    return text + (f"; not counted: {', '.join(unknown)}" if unknown else "")


# -- queueing the chain ----------------------------------------------------------------------------------------------
def check_plan(req: TrainRequest, plan: PretrainPlan) -> None:
    """Refuse, before any job is queued, a plan the jobs would fail on: a method that does not pretrain, no label
    to fine-tune on, an objective the method cannot start from, a missing file, an unusable pretraining run.

    Raises a ``ScappError`` subclass whose message says what to change.
    """
    from scapp.errors import InputError, LabelError
    from scapp.train.pretrain import load_pretraining

    spec = get_spec(req.model)
    if not spec.capabilities.pretrains:
        raise ConfigError(f"{spec.title} does not pretrain an encoder; train it without pretraining.")
    if not req.label:
        raise LabelError("Fine-tuning learns cell types: choose a label column on the Data page (without one, "
                         "training this method is itself a pretraining run).")
    if plan.from_run:
        pre = load_pretraining(plan.from_run)
        if pre.method not in pretrain_methods(req.model):
            raise ConfigError(f"Pretraining run {pre.id} ({pre.method}) made an encoder {spec.title} cannot start "
                              "from; choose another run.")
        return
    if plan.method not in pretrain_methods(req.model):
        raise ConfigError(f"{spec.title} cannot start from a {plan.method!r} pretraining; choose one of "
                          f"{', '.join(pretrain_methods(req.model))}.")
    for p in plan.files:
        if not Path(p).exists():
            raise InputError(f"The file to pretrain on is gone: {p}")
    if plan.epochs is not None and plan.epochs < 1:
        raise ConfigError(f"Pretraining needs at least 1 epoch, not {plan.epochs}.")


def pretrain_request(req: TrainRequest, plan: PretrainPlan) -> PretrainRequest:
    """The pretraining run for a fine-tune ``req``: its cells, the training file's genes, and the model options
    the pretraining network shares with the fine-tune (layer widths) so the fine-tune can load its encoder."""
    from scapp.train.pretrain import pretraining_spec

    return PretrainRequest(data=list(plan.files), method=plan.method, genes_of=req.data, layer=req.layer,
                           epochs=plan.epochs, device=req.device, seed=req.seed,
                           model_config=_shared_options(req.model_config), orientation=req.orientation)


def _shared_options(options: dict[str, Any]) -> dict[str, Any]:
    """The model options a pretraining run takes from the fine-tune's (its layer widths, schedule…): those the
    pretraining method has, except the objective and the fine-tune's own pretraining epochs."""
    from scapp.train.pretrain import pretraining_spec

    known = {f.name for f in fields(pretraining_spec().load().Config)}
    return {k: v for k, v in options.items() if k in known and k not in ("method", "pretrain_epochs")}


def start_pretrain_jobs(req: TrainRequest, plan: PretrainPlan, *, root: Path) -> StartedJobs:
    """Queue the pretraining run (unless starting from one), the from-scratch run (if asked) and the fine-tune,
    in that order; returns their folders. ``req`` is the fine-tune as the Train page would start it."""
    now = time.time()
    pre = Path(plan.from_run).resolve() if plan.from_run else runs.RunStore.create("pretrain", root=root).path
    scratch = runs.RunStore.create(req.model, root=root).path if plan.scratch else None
    ft = runs.RunStore.create(req.model, root=root).path
    chain = {"pretraining": str(pre), "scratch": str(scratch) if scratch else None, "finetune": str(ft)}
    if not plan.from_run:
        start_job(pretrain_request(req, plan), run=pre, queued_at=now, job={"kind": "pretrain", "role":
                                                                              "pretraining", "chain": chain})
    if scratch is not None:
        start_job(replace(req, from_run=None, like_run=str(pre), parent=None), run=scratch, queued_at=now + 0.001,
                  job={"kind": "train", "role": "scratch", "chain": chain})
    start_job(replace(req, from_run=str(pre), parent=str(pre)), run=ft, queued_at=now + 0.002,
              job={"kind": "train", "role": "finetune", "chain": chain})
    return StartedJobs(finetune=ft, pretraining=None if plan.from_run else pre, scratch=scratch)


# -- reading a chain back -------------------------------------------------------------------------------------------
def job_of(run: str | Path) -> dict[str, Any]:
    """The job a run was queued as (``{"kind", "role", "chain"}``); ``{}`` for a run started otherwise."""
    try:
        req = runs.RunStore(run).request()
    except RunError:
        return {}
    job = (req or {}).get(JOB_KEY)
    return dict(job) if isinstance(job, dict) else {}


@dataclass
class Step:
    """One run of a chain, as the Train page lists it."""

    role: str
    path: Path
    state: str
    status: dict[str, Any]
    queued_here: bool
    """False for a pretraining run the user picked (it was not trained by this job)."""

    @property
    def title(self) -> str:
        return ROLE_TITLES.get(self.role, self.role)


def job_steps(run: str | Path) -> list[Step]:
    """The runs of ``run``'s chain in the order they run (pretraining, scratch, fine-tune); ``[]`` when ``run``
    was not queued as part of one."""
    job = job_of(run)
    chain = job.get("chain") or {}
    if not chain:
        return []
    steps = []
    for role in ROLES:
        p = chain.get(role)
        if not p or not Path(p).is_dir():
            continue
        st = runs.read_status(p) or {}
        steps.append(Step(role=role, path=Path(p), state=str(st.get("state") or "?"), status=st,
                          queued_here=bool(job_of(p))))
    return steps


def current_step(steps: Sequence[Step]) -> Step | None:
    """The step running now, else the first still queued, else the last one."""
    for want in ("running", "queued"):
        for s in steps:
            if s.state == want:
                return s
    return steps[-1] if steps else None


# -- the comparison run ------------------------------------------------------------------------------------------
def scratch_candidates(run: str | Path, root: Path) -> pd.DataFrame:
    """Runs to compare a fine-tuned ``run`` with: its chain's from-scratch run first, then other finished runs of
    the same method on the same file and labels that were not started from a pretraining run.

    Columns: run_id, state, seed, queued_with (True for the chain's own), macro_f1, path.
    """
    store = runs.RunStore(run)
    cfg = store.config(missing_ok=True) or {}
    try:
        sha = store.data_info().get("sha256")
    except RunError:
        sha = None
    own = (job_of(run).get("chain") or {}).get("scratch")
    rows = []
    table = runs.list_runs(root)
    for r in table.itertuples() if len(table) else ():
        if Path(r.path).resolve() == store.path.resolve():
            continue
        mine = own is not None and Path(r.path).resolve() == Path(own).resolve()
        other = runs.RunStore(r.path)
        try:
            ocfg = other.config(missing_ok=True) or {}
            if not mine and not _same_task_from_scratch(other, ocfg, r.state, cfg, sha):
                continue
        except RunError:
            continue
        rows.append({"run_id": r.run_id, "state": r.state, "seed": ocfg.get("seed"), "queued_with": mine,
                     "macro_f1": r.macro_f1, "path": str(r.path)})
    cols = ["run_id", "state", "seed", "queued_with", "macro_f1", "path"]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    return df.sort_values(["queued_with", "run_id"], ascending=False, ignore_index=True)


def _same_task_from_scratch(other: runs.RunStore, ocfg: dict[str, Any], state: str, cfg: dict[str, Any],
                            sha: str | None) -> bool:
    """A finished run of the same method, file and labels that did not start from a pretraining run."""
    return (state == "finished" and ocfg.get("model") == cfg.get("model") and not ocfg.get("from_run")
            and ocfg.get("kind") != "pretraining" and bool(ocfg.get("label")) and ocfg.get("label") == cfg.get("label")
            and other.data_info().get("sha256") == sha)


def pretraining_summary(pre: str | Path) -> dict[str, Any]:
    """What a fine-tune's pretraining run learned from, for Explore: files, cells, method, epochs, held-out loss."""
    store = runs.RunStore(pre)
    cfg = store.config(missing_ok=True) or {}
    met = store.metrics(missing_ok=True) or {}
    files = [Path(f.get("path", "?")).name for f in (met.get("files") or [])] or \
        [Path(p).name for p in cfg.get("data_files") or []]
    return {"run_id": store.id, "method": cfg.get("method"), "files": files,
            "cells": int((met.get("n_train") or 0) + (met.get("n_valid") or 0)), "genes": met.get("n_genes"),
            "epochs": met.get("epochs_run"), "best_epoch": met.get("best_epoch"), "valid_loss": met.get("valid_loss")}
