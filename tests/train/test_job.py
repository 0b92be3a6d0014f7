"""Jobs started as separate processes, queued one at a time, stoppable while queued or running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scapp import runs
from scapp.train.engine import TrainRequest
from scapp.train.job import escalate_stop, start_job, stop_job


def _wait(run: Path, states: tuple[str, ...], timeout: float = 240) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = runs.read_status(run) or {}
        if st.get("state") in states:
            return st
        time.sleep(0.3)
    raise AssertionError(f"{run.name} never reached {states}: {runs.read_status(run)}")


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, assets):
    """500 real pbmc3k cells from the demo asset (raw counts, label cell_type)."""
    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(assets / "demo_pbmc3k.h5ad")
    a = a[np.sort(np.random.default_rng(0).choice(a.n_obs, 500, replace=False))].copy()
    p = tmp_path_factory.mktemp("job") / "small.h5ad"
    a.write_h5ad(p)
    return p


def test_jobs_run_in_order_and_stop_while_queued(small_file, runs_dir):
    first = start_job(TrainRequest(data=str(small_file), label="cell_type", model="sims", epochs=300, device="cpu"),
                      root=runs_dir)
    second = start_job(TrainRequest(data=str(small_file), label="cell_type", model="logreg", device="cpu"),
                       root=runs_dir)
    third = start_job(TrainRequest(data=str(small_file), label="cell_type", model="logreg", device="cpu"),
                      root=runs_dir)
    _wait(first, ("running",))
    st2 = runs.read_status(second)
    assert st2["state"] == "queued"
    assert "Stopping" in stop_job(third)
    _wait(third, ("cancelled",))
    # the running SIMS job stops at the next batch and keeps its best epoch
    while (runs.read_status(first) or {}).get("epoch", 0) < 1:
        time.sleep(0.3)
    stop_job(first)
    st1 = _wait(first, ("cancelled", "finished"))
    assert st1["state"] == "cancelled" and st1["has_model"]
    assert "already" in stop_job(first)  # stopping twice is harmless
    assert not escalate_stop(first, grace_s=0)
    st2 = _wait(second, ("finished", "failed"))
    assert st2["state"] == "finished", st2
    assert runs.RunStore(second).has_weights
    assert not runs.RunStore(third).has_weights
