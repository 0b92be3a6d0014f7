"""Training jobs started from the app: a separate process per run, one at a time, in order.

The app never trains in its own process (CUDA and forking don't mix, and a
crash must not take the UI down). ``start_job`` writes ``request.json`` and a
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
from scapp.train.engine import TrainRequest

POLL_S = 1.0


def check_request(req: TrainRequest, adata: Any) -> None:
    """Refuse, before any process starts, a request the job would fail on: a method not built yet, options the
    method does not have, a label column that is missing, continuous or has one class, or a matrix that is not raw
    counts.

    Raises a ``ScappError`` subclass whose message says what to change.
    """
    from scapp.data.validate import check_counts, get_labels, get_matrix
    from scapp.models import get_model_class
    from scapp.models.base import config_from_dict

    config_from_dict(get_model_class(req.model).Config, dict(req.model_config))  # unknown options name themselves
    get_labels(adata, req.label)
    check_counts(get_matrix(adata, req.layer), what="The training data", layer_hint=False)


def start_job(req: TrainRequest, *, root: Path | None = None) -> Path:
    """Create the run folder, queue the job and start its process; returns the run folder."""
    run = runs.create_run(req.model, root=root)
    runs.write_json(run / "request.json", asdict(req))
    runs.write_status(run, "queued", queued_at=time.time(), progress=0.0, phase="waiting in the queue")
    env = {**os.environ, "SCAPP_RUNS_DIR": str(run.parent)}
    with open(run / "train.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scapp", "run-job", str(run)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    runs.write_status(run, "queued", pid=proc.pid)
    return run


def _ahead(run: Path) -> list[Path]:
    """Runs in the same root that must finish before ``run`` starts."""
    me = runs.read_status(run) or {}
    mine = me.get("queued_at", 0)
    ahead = []
    for other in run.parent.iterdir():
        if other == run or not (other / "status.json").exists():
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
        runs.write_status(run, "queued", phase=f"waiting for {len(waiting)} job(s) to finish",
                          queue_position=len(waiting))
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
    stop = run / "STOP"
    st = runs.read_status(run) or {}
    if not stop.exists() or st.get("state") not in ("queued", "running") or not st.get("pid"):
        return False
    if time.time() - stop.stat().st_mtime < grace_s:
        return False
    try:
        os.kill(int(st["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def start_cell_map(run: Path, n_cells: int) -> int:
    """Compute a run's display UMAP (``python -m scapp map``) in its own process; returns its pid.

    A separate process keeps the app responsive while umap-learn compiles and fits (a minute or
    more on a CPU), and uses a second core. Its state is read with :func:`scapp.runs.cell_map_state`.
    """
    run = Path(run)
    lock = runs.cell_map_path(run, n_cells).with_suffix(".running")
    lock.with_suffix(".error").unlink(missing_ok=True)
    with open(run / "artifacts" / "map.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scapp", "map", str(run), "--cells", str(int(n_cells))],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    lock.write_text(str(proc.pid))  # before the child writes it, so a rerun meanwhile does not start a second one
    return proc.pid
