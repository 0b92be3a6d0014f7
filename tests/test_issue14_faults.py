"""Issue 14, faults mid-run: a trainer killed with SIGKILL, a full disk while the weights are saved, the GPU out of
memory. Each ends as a ``failed`` run with a reason a person can act on, within seconds; finished runs stay as they
were and still annotate.

The killed trainer is a real ``python -m scapp train`` process that the test does not reap: a zombie keeps its
process id "alive" to ``kill(pid, 0)``, which is how a reused id fooled the old check. The heartbeat tells.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scapp import runs
from scapp.cli import main
from test_bad_inputs import LOGREG, cli, error_line, pbmc, sha256, small, write  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
TINY_SSL = {"encoder_widths": [64, 32, 16], "batch_size": 64}


def _tree(path: Path) -> dict[str, str]:
    """Every file of a folder and its checksum (to show a run is untouched)."""
    return {str(p.relative_to(path)): sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(small, tmp_path, runs_dir, capsys) -> dict:
    """A finished logreg run in the runs folder, and the checksums of all its files."""
    data = write(small, tmp_path / "cells.h5ad")
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", *LOGREG, "--quiet")
    assert rc == 0, err
    run = Path(out.strip().splitlines()[-1])
    return {"run": run, "data": data, "tree": _tree(run)}


def _still_fine(finished: dict, tmp_path: Path, capsys) -> None:
    """The finished run is byte for byte as it was, and annotates."""
    assert _tree(finished["run"]) == finished["tree"]
    assert runs.read_status(finished["run"])["state"] == "finished"
    csv = tmp_path / "after.csv"
    rc, out, err = cli(capsys, "predict", finished["run"], finished["data"], "--csv", csv, "--quiet")
    assert rc == 0, err
    assert len(csv.read_text().splitlines()) == 301


# --------------------------------------------------------------------------- kill -9 of the trainer


def test_killed_trainer_reads_as_failed_within_seconds(small, tmp_path, runs_dir, monkeypatch, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_SSL))
    out = runs_dir / "killed"
    env = {**os.environ, "SCAPP_RUNS_DIR": str(runs_dir), "SCAPP_HEARTBEAT_S": "0.3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "scapp", "train", str(data), "--label", "cell_type", "--model",
                             "ssl", "--config", str(cfg), "--epochs", "400", "--device", "cpu", "--out", str(out),
                             "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            st = runs.read_status(out) if out.is_dir() else None
            if st and st.get("state") == "running" and st.get("epoch", 0) >= 1:
                break
            assert proc.poll() is None, "the trainer ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("training did not start within 300 s")
        os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.5)  # not reaped: a zombie, so its pid still answers kill(pid, 0)
        monkeypatch.setenv("SCAPP_HEARTBEAT_STALE_S", "2")
        t0 = time.time()
        while time.time() - t0 < 15:
            st = runs.read_status(out)
            if st["state"] != "running":
                break
            time.sleep(0.2)
        waited = time.time() - t0
        assert st["state"] == "failed", st
        # by its dead process id or by its stale heartbeat, whichever is seen first
        assert "without finishing (killed" in st["error"], st["error"]
        assert waited < 10
        # the CLI's list says the same, with the reason
        rc, text, _ = cli(capsys, "runs", "--json")
        assert rc == 0
        rec = next(r for r in json.loads(text) if r["run_id"] == "killed")
        assert rec["state"] == "failed" and "without finishing (killed" in rec["error"]
        # only reported: the file still says what the process last wrote, and a new run may start
        assert runs.read_status(out, check_alive=False)["state"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_heartbeat_beats_through_a_long_step_and_goes_stale_without_it(tmp_path, monkeypatch):
    """A process that is alive (this one, so its pid is live) but does not beat any more reads as failed: a pid
    can be reused, a heartbeat cannot. While the block runs, the background thread keeps beating."""
    monkeypatch.setenv("SCAPP_HEARTBEAT_STALE_S", "0.6")
    store = runs.RunStore.create("logreg", root=tmp_path)
    store.write_status("running", pid=os.getpid(), phase="explaining")
    with store.heartbeat(interval_s=0.1):
        time.sleep(1.0)  # a long step that reports nothing (Integrated Gradients, say)
        assert time.time() - store.last_heartbeat() < 0.5
        assert store.status()["state"] == "running"
    time.sleep(0.8)
    st = store.status()
    assert st["state"] == "failed" and "stopped without finishing (killed or crashed)" in st["error"]
    # a run from before heartbeats (no heartbeat file) is judged by its pid, as before
    old = runs.RunStore.create("logreg", root=tmp_path)
    old.write_status("running", pid=os.getpid())
    assert old.status()["state"] == "running"


# --------------------------------------------------------------------------- disk full while saving the weights


def _queued(req_args: dict, root: Path) -> Path:
    """A run queued as the app queues it (request and status in the folder), to be run with ``run-job``."""
    from dataclasses import asdict

    from scapp.train.engine import TrainRequest

    store = runs.RunStore.create(req_args["model"], root=root)
    store.write_request(asdict(TrainRequest(**req_args)))
    store.write_status("queued", queued_at=time.time(), progress=0.0)
    return store.path


def _train_logreg(via: str, finished: dict, runs_dir: Path, capsys) -> tuple[int, str, Path]:
    """Train logreg on the finished run's data through the CLI or as a queued app job: exit code, stderr, run."""
    if via == "cli":
        rc, out, err = cli(capsys, "train", finished["data"], "--label", "cell_type", *LOGREG, "--quiet")
        return rc, err, Path(out.strip().splitlines()[-1])
    run = _queued({"data": str(finished["data"]), "label": "cell_type", "model": "logreg", "epochs": 1}, runs_dir)
    rc = main(["run-job", str(run)])
    return rc, capsys.readouterr().err, run


@pytest.mark.parametrize("via", ["cli", "app-job"])
def test_disk_full_while_saving_weights(via, finished, tmp_path, runs_dir, capsys, monkeypatch):
    from scapp.models import get_spec

    cls = get_spec("logreg").load()
    real_save = cls.save_weights

    def save_half_then_full(self, path):
        real_save(self, path)
        with open(path, "r+b") as f:
            f.truncate(100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cls, "save_weights", save_half_then_full)
    rc, err, run = _train_logreg(via, finished, runs_dir, capsys)
    line = error_line(rc, err, f"disk full: free space in {runs_dir} and train again")
    st = runs.read_status(run)
    assert st["state"] == "failed" and st["error"] in line and not st.get("has_model")
    store = runs.RunStore(run)
    assert not store.has_weights
    assert [p.name for p in run.rglob("*.tmp")] == []  # the half-written file is gone
    _still_fine(finished, tmp_path, capsys)


# --------------------------------------------------------------------------- CUDA out of memory


@pytest.mark.parametrize("via", ["cli", "app-job"])
def test_cuda_out_of_memory_mid_training(via, finished, tmp_path, runs_dir, capsys, monkeypatch):
    """Injected on the CPU: the model's fit raises torch's CUDA OOM part-way through."""
    import torch

    from scapp.models import get_spec

    cls = get_spec("logreg").load()

    def fit_oom(self, train, valid, trainer):
        trainer.event("fitting logistic regression", 0.0, max_epochs=1)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cls, "fit", fit_oom)
    rc, err, run = _train_logreg(via, finished, runs_dir, capsys)
    line = error_line(rc, err, "out of GPU memory: try a smaller batch size", "or the CPU")
    st = runs.read_status(run)
    assert st["state"] == "failed" and st["error"] in line and not st.get("has_model")
    assert "Traceback" in (run / runs.LAYOUT["log"]).read_text()  # the details are kept for whoever asks
    _still_fine(finished, tmp_path, capsys)
    np.testing.assert_equal(runs.list_runs(runs_dir).set_index("run_id").loc[finished["run"].name, "state"],
                            "finished")
