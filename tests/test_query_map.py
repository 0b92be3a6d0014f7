"""The Annotate page's map runs in its own process and is kept by content; a failure is reported, not hidden."""

from __future__ import annotations

import time

import numpy as np
import pytest

from scapp.query_map import map_job, run_map


def _wait(job, timeout: float = 120.0) -> str:
    t0 = time.time()
    while job.state()[0] == "running" and time.time() - t0 < timeout:
        time.sleep(0.2)
    return job.state()[0]


def test_a_map_job_runs_in_the_background_and_is_kept(tmp_path):
    X = np.random.default_rng(0).normal(size=(15, 4)).astype(np.float32)  # < 20 cells: the PCA fallback, fast
    job = map_job(X, folder=tmp_path)
    assert job.state() == ("missing", None) and job.input_path.exists()
    job.start()
    assert job.state()[0] in ("running", "ready")
    assert _wait(job) == "ready", job.state()
    assert job.coords().shape == (15, 2)
    again = map_job(X.copy(), folder=tmp_path)  # the same latent: the same job, already done
    assert again.key == job.key and again.state()[0] == "ready"
    assert map_job(X + 1, folder=tmp_path).key != job.key


def test_a_failed_map_says_why(tmp_path):
    job = map_job(np.zeros((30, 3), np.float32), folder=tmp_path)
    job.input_path.write_text("not an array")
    with pytest.raises(ValueError):
        run_map(job.input_path, job.coords_path)
    state, msg = job.state()
    assert state == "failed" and "could not be computed" in msg
