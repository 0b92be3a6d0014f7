"""Training jobs started from the app: a separate process per run, one at a time, in order.

The app never trains in its own process (CUDA and forking don't mix, and a
crash must not take the UI down). ``start_job`` writes the request and a
``queued`` status into a new run folder and starts ``python -m scapp run-job``.
That process waits its turn (earlier queued or running jobs first), so the queue
needs no daemon and survives an app restart: it lives entirely in run folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scapp import runs
from scapp.models.registry import get_spec
from scapp.train.engine import TrainRequest

POLL_S = 1.0


def check_request(req: TrainRequest, adata: Any) -> None:
    """Refuse, before any process starts, a request the job would fail on: a method not built yet, options the
    method does not have, a device that is not there, a label column that is missing, continuous or has one class,
    a matrix that is not raw counts, duplicated genes, all-zero cells, or too few cells or classes to train and
    score (``scapp.data.validate.check_training_cells``).

    The engine's own checks (:func:`scapp.train.engine.setup`, :func:`~scapp.train.engine.select_cells`) on the
    data the page has loaded, so the Train page and ``scapp train`` refuse the same things with the same words.
    Raises a ``ScappError`` subclass whose message says what to change.
    """
    from scapp.data.validate import check_counts, check_genes, get_matrix
    from scapp.errors import LabelError
    from scapp.train.engine import select_cells, setup

    spec = get_spec(req.model)
    if spec.capabilities.needs_labels and not req.label:
        raise LabelError(f"{spec.title} learns cell types from labels: choose the label column on the Data page.")
    s = setup(req)  # unknown options name themselves
    X = get_matrix(adata, req.layer)
    check_genes(adata.var_names, what="The training data")
    check_counts(X, what="The training data", layer_hint=False)
    if s.pre is not None:
        from scapp.data.align import align_genes

        X, _ = align_genes(X, adata.var, s.pre.genes)
    select_cells(req, s, adata, X)


JOB_KEY = "job"
"""The key of request.json holding the job a run belongs to: ``{"kind": "train" | "pretrain", "role", "chain"}``
(``scapp.train.pretrain_jobs``); absent for a plain training run."""


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen:
    """Start a scapp child process (a job, a cell map): the one place tests replace to run jobs in-process
    (replacing ``subprocess.Popen`` itself would also replace the children other modules start)."""
    return subprocess.Popen(cmd, **kw)


def start_job(req: TrainRequest | Any, *, root: Path | None = None, run: Path | None = None,
              queued_at: float | None = None, job: dict[str, Any] | None = None) -> Path:
    """Create the run folder (or use ``run``, an empty one), queue the job and start its process; returns the
    run folder. ``req``: a ``TrainRequest``, or a ``PretrainRequest`` with ``job={"kind": "pretrain", ...}``;
    ``queued_at``: its place in the queue (default now)."""
    store = runs.RunStore(run) if run is not None else runs.RunStore.create(req.model, root=root)
    run = store.path
    store.write_request({**asdict(req), **({JOB_KEY: job} if job else {})})
    store.write_status("queued", queued_at=time.time() if queued_at is None else queued_at, progress=0.0,
                       phase="waiting in the queue")
    env = {**os.environ, "SCAPP_RUNS_DIR": str(run.parent)}
    with open(store.log_path, "ab") as log:
        proc = spawn([sys.executable, "-m", "scapp", "run-job", str(run)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    store.write_status("queued", pid=proc.pid)
    return run


def queued_work(run: Path) -> tuple[Any, Any]:
    """``(request, work)`` of a queued run: a ``TrainRequest`` and ``run_training``, or a ``PretrainRequest`` and
    ``run_pretraining`` (what ``python -m scapp run-job`` executes)."""
    d = dict(runs.RunStore(run).request())
    job = d.pop(JOB_KEY, None) or {}
    if job.get("kind") == "pretrain":
        from scapp.train.pretrain import PretrainRequest, run_pretraining

        return PretrainRequest.from_dict(d), run_pretraining
    from scapp.train.engine import run_training

    return TrainRequest.from_dict(d), run_training


def _ahead(run: Path) -> list[Path]:
    """Runs in the same root that must finish before ``run`` starts."""
    me = runs.read_status(run) or {}
    mine = me.get("queued_at", 0)
    ahead = []
    for other in run.parent.iterdir():
        if other == run or not runs.RunStore(other).has_status:
            continue
        try:
            st = runs.read_status(other) or {}
        except runs.RunError:
            continue
        if st.get("state") == "running" or (st.get("state") == "queued" and st.get("queued_at", 0) < mine):
            ahead.append(other)
    return ahead


def wait_for_turn(run: Path, *, poll_s: float = POLL_S) -> bool:
    """Block until no earlier job is queued or running; False if the user cancelled meanwhile."""
    while True:
        if runs.stop_requested(run):
            return False
        waiting = _ahead(run)
        if not waiting:
            return True
        runs.write_status(run, "queued", phase=f"waiting for {len(waiting)} job(s) to finish")
        time.sleep(poll_s)


def stop_job(run: Path) -> str:
    """Ask a queued or running job to stop; a second call on a stopped run is harmless."""
    st = runs.read_status(run) or {}
    if st.get("state") not in ("queued", "running"):
        return f"Run {run.name} is already {st.get('state', 'gone')}; nothing to stop."
    if runs.stop_requested(run):
        return ("Already stopping: the job ends after the current batch (and is ended by force if it has not "
                "stopped a minute after the first Stop).")
    runs.request_stop(run)
    return "Stopping: training ends after the current batch and the best epoch so far is kept."


def escalate_stop(run: Path, *, grace_s: float = 60.0) -> bool:
    """If a stop was asked more than ``grace_s`` ago and the process still runs, send SIGTERM."""
    store = runs.RunStore(run)
    asked = store.stop_requested_at()
    st = store.status() or {}
    if asked is None or st.get("state") not in ("queued", "running") or not st.get("pid"):
        return False
    if time.time() - asked < grace_s:
        return False
    try:
        os.kill(int(st["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def start_cell_map(run: Path, n_cells: int) -> int:
    """Compute a run's display UMAP (``python -m scapp map``) in its own process; returns its pid.

    A separate process keeps the app responsive while umap-learn compiles and fits (a minute or
    more on a CPU), and uses a second core. Its state is read with :meth:`scapp.runs.RunStore.cell_map_state`.
    """
    store = runs.RunStore(run)
    store.clear_cell_map_error(n_cells)
    with open(store.cell_map_log_path, "ab") as log:
        proc = spawn([sys.executable, "-m", "scapp", "map", str(run), "--cells", str(int(n_cells))],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    store.mark_cell_map_running(n_cells, proc.pid)  # before the child does, so a rerun meanwhile starts no second one
    return proc.pid
