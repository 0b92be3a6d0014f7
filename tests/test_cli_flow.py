"""The whole headless flow through real subprocesses: train, stop, predict, markers.

Built from the demo assets shipped with the repository: 600 PBMC 3k cells to train on
(``assets/demo_pbmc3k.h5ad``) and 300 PBMC 4k cells from another donor and lab to annotate
(``assets/demo_pbmc4k_query.h5ad``, 3,000 genes holding 1,957 of the model's 2,000).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scapp import cli, runs

REPO = Path(__file__).resolve().parents[1]


def _scapp(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scapp", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def files(tmp_path_factory, assets):
    d = tmp_path_factory.mktemp("flow")
    ref = ad.read_h5ad(assets / "demo_pbmc3k.h5ad")
    rng = np.random.default_rng(1)
    ref = ref[np.sort(rng.choice(ref.n_obs, 600, replace=False))].copy()
    ref.write_h5ad(d / "ref.h5ad")
    q = ad.read_h5ad(assets / "demo_pbmc4k_query.h5ad")
    q = q[np.sort(rng.choice(q.n_obs, 300, replace=False))].copy()
    q.write_h5ad(d / "query.h5ad")
    return d


@pytest.fixture(scope="module")
def trained_run(files):
    out = files / "run_sims"
    r = _scapp("train", str(files / "ref.h5ad"), "--label", "cell_type_coarse", "--model", "sims", "--epochs", "3",
               "--out", str(out), "--device", "cpu", env={"SCAPP_RUNS_DIR": str(files / "runs")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out)
    return out


def test_train_writes_a_complete_run_folder(trained_run):
    s = runs.RunStore(trained_run)
    st = s.status()
    assert st["state"] == "finished" and st["has_model"] and st["progress"] == 1.0
    assert s.config()["model"] == "sims" and s.data_info()["n_cells_used"] == 600 and s.env()["versions"]
    # SIMS drops genes seen in fewer than 3 training cells (of the 420 training cells here, a few hundred are)
    G = len(s.genes())
    assert 1000 < G < 2000 and s.recipe()["n_genes"] == G and s.has_weights and s.log_path.is_file()
    assert any("genes detected in ≥3 training cells" in n for n in s.recipe()["notes"])
    m = s.metrics()
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "median_f1", "weighted_f1", "smallest_classes"):
        assert k in m["test"]
    assert m["calibration"]["temperature"] > 0 and "ece_after" in m["calibration"]
    assert s.temperature() == pytest.approx(m["calibration"]["temperature"])
    epochs = s.epochs()
    assert len(epochs) == 3 and "valid_loss" in epochs[0]
    pred = s.predictions()
    assert set(pred["split"]) == {"train", "valid", "test"} and len(pred) == 600
    classes = s.classes()
    assert [c for c in pred.columns if c.startswith("p_")] == [f"p_{c}" for c in classes]
    assert s.confusion().shape == (len(classes), len(classes)) and len(s.per_class()) == len(classes)
    assert set(s.reliability()) == {"before", "after"} and len(s.history()) == 3
    assert s.embedding().shape == (600, 32) and len(s.markers()) and len(s.global_importance()) == G
    assert len(s.dotplot()) and s.protein() is None
    ref = s.reference_markers()
    assert set(ref["class"]) <= set(classes) and len(set(ref["class"])) >= 2
    assert (ref.groupby("class")["rank"].min() == 1).all()
    ex = s.explain()
    assert ex["class_scores"].shape == (len(classes), G)
    assert ex["cell_masks"].shape[0] <= 50 * len(classes)


def test_predict_writes_csv_and_annotated_h5ad_without_touching_input(trained_run, files):
    q = files / "query.h5ad"
    before = hashlib.sha256(q.read_bytes()).hexdigest()
    r = _scapp("predict", str(trained_run), str(q), "--csv", str(files / "p.csv"), "--out", str(files / "a.h5ad"),
               "--threshold", "0.6")
    assert r.returncode == 0, r.stderr
    assert "genes found in the query" in r.stderr
    assert hashlib.sha256(q.read_bytes()).hexdigest() == before
    df = pd.read_csv(files / "p.csv")
    classes = runs.RunStore(trained_run).classes()
    assert list(df.columns) == ["cell_id", "label", "confidence", "unassigned"] + [f"p_{c}" for c in classes]
    assert np.allclose(df[[f"p_{c}" for c in classes]].sum(1), 1, atol=1e-4)
    assert ((df["confidence"] < 0.6) == df["unassigned"]).all()
    assert (df.loc[df["unassigned"], "label"] == "Unassigned").all()
    a = ad.read_h5ad(files / "a.h5ad")
    orig = ad.read_h5ad(q)
    for col in orig.obs.columns:
        assert a.obs[col].equals(orig.obs[col])
    assert {"scapp_label", "scapp_confidence", "scapp_unassigned"} <= set(a.obs.columns)
    assert a.obsm["X_scapp_sims"].shape == (300, 32)  # n_d
    assert a.uns["scapp"]["run_id"] == trained_run.name and a.uns["scapp"]["threshold"] == 0.6
    # annotating an annotated file adds new columns instead of overwriting
    r = _scapp("predict", str(trained_run), str(files / "a.h5ad"), "--out", str(files / "b.h5ad"))
    assert r.returncode == 0, r.stderr
    b = ad.read_h5ad(files / "b.h5ad")
    assert "scapp_label_2" in b.obs.columns and b.obs["scapp_label"].equals(a.obs["scapp_label"])


def test_markers_command(trained_run, files):
    r = _scapp("markers", str(trained_run), "--top", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "class,rank,gene,score"
    classes = runs.RunStore(trained_run).classes()
    assert len(lines) == 1 + 5 * len(classes)


def test_stop_file_cancels_a_running_job_and_keeps_the_best_model(files):
    out = files / "run_stop"
    proc = subprocess.Popen([sys.executable, "-m", "scapp", "train", str(files / "ref.h5ad"), "--label", "cell_type",
                             "--epochs", "400", "--out", str(out), "--device", "cpu", "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        st = runs.read_status(out) if out.is_dir() else None
        if st and st.get("epoch", 0) >= 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)
    runs.request_stop(out)
    proc.communicate(timeout=300)
    assert proc.returncode == 3  # cancelled, however it was asked (issue 14); the best epoch is kept
    st = runs.read_status(out)
    assert st["state"] == "cancelled" and st["has_model"] and "Stopped by user" in st["message"]
    store = runs.RunStore(out)
    assert store.has_weights and store.metrics()["stopped_by_user"]
    assert len(store.epochs()) < 400


@pytest.mark.parametrize("exc,expect,code", [
    (lambda: RuntimeError("boom"), "Internal error (RuntimeError: boom)", 1),
    (lambda: __import__("torch").cuda.OutOfMemoryError("CUDA out of memory"), "out of GPU memory", 2),
], ids=["crash", "cuda-oom"])
def test_crash_or_oom_ends_as_failed_status_with_reason(files, monkeypatch, capsys, exc, expect, code):
    from scapp.train import engine

    def crash(req, run, **kw):  # kw: the request checked before the run folder was made (prepared=)
        runs.write_status(run, "running", pid=os.getpid())
        raise exc()

    monkeypatch.setattr(engine, "run_training", crash)
    out = files / f"run_crash_{code}"
    rc = cli.main(["train", str(files / "ref.h5ad"), "--label", "cell_type", "--out", str(out), "--quiet"])
    assert rc == code
    st = runs.read_status(out)
    assert st["state"] == "failed" and expect in st["error"]
    assert expect in capsys.readouterr().err
