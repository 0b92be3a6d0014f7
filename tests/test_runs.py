"""Run folders on disk (scapp.runs): atomic writes, status, stop, delete, resolve, list, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scapp import runs
from scapp.errors import RunError, RunNotFoundError


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(d))
    return d


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- atomic writes


def test_write_json_atomic_under_concurrent_reads(tmp_path):
    """A reader polling while the file is rewritten 200 times only ever sees one whole version."""
    path = tmp_path / "status.json"
    big = ["x" * 50] * 4000  # ~200 kB, so a non-atomic write would be caught half-done
    runs.write_json(path, {"i": -1, "pad": big})
    n_writes = 200
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(n_writes):
                runs.write_json(path, {"i": i, "pad": big})
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = []
    while not done.is_set() or not seen:
        d = runs.read_json(path)  # raises on partial / empty JSON
        assert d["pad"] == big
        seen.append(d["i"])
    t.join()
    assert not errors, errors
    assert runs.read_json(path)["i"] == n_writes - 1
    assert seen == sorted(seen)  # versions only move forward
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    runs.write_json(path, {"ok": 1})

    def boom(tmp: str) -> None:
        Path(tmp).write_text('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runs.write_atomic(path, boom)
    assert runs.read_json(path) == {"ok": 1}
    assert temp_files(tmp_path) == []
    with pytest.raises(TypeError):  # not serialisable: refused before the file is touched
        runs.write_json(path, {"obj": object()})
    assert runs.read_json(path) == {"ok": 1}
    assert temp_files(tmp_path) == []


def test_write_json_is_strict_json(tmp_path):
    path = tmp_path / "m.json"
    runs.write_json(path, {"nan": float("nan"), "inf": np.float32("inf"), "n": np.int64(3),
                           "arr": np.arange(3), "p": Path("/a/b"), "nested": [float("-inf"), 1.5]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "n": 3, "arr": [0, 1, 2], "p": "/a/b",
                                "nested": [None, 1.5]}


def test_read_json_corrupt_is_run_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": "si')
    with pytest.raises(RunError, match="damaged"):
        runs.read_json(path)
    with pytest.raises(FileNotFoundError):
        runs.read_json(tmp_path / "missing.json")


def test_jsonl_skips_a_line_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    runs.append_jsonl(path, {"epoch": 1, "loss": float("nan")})
    runs.append_jsonl(path, {"epoch": 2, "loss": 0.5})
    with open(path, "a") as f:
        f.write('{"epoch": 3, "lo')
    assert runs.read_jsonl(path) == [{"epoch": 1, "loss": None}, {"epoch": 2, "loss": 0.5}]
    assert runs.read_jsonl(tmp_path / "none.jsonl") == []


# --------------------------------------------------------------------------- status


def test_write_status_keeps_earlier_fields(root):
    run = runs.create_run("sims")
    runs.write_status(run, "running", pid=1234, phase="loading data", started="t0")
    st = runs.write_status(run, "running", phase="training", progress=0.5)
    assert st["pid"] == 1234 and st["started"] == "t0"
    assert st["phase"] == "training" and st["progress"] == 0.5
    st = runs.write_status(run, "finished", has_model=True)
    on_disk = runs.read_status(run, check_alive=False)
    assert on_disk == st
    assert on_disk["state"] == "finished" and on_disk["pid"] == 1234 and on_disk["phase"] == "training"
    assert on_disk["format_version"] == runs.FORMAT_VERSION
    assert "updated" in on_disk and isinstance(on_disk["heartbeat"], float)
    with pytest.raises(ValueError):
        runs.write_status(run, "done")
    assert runs.read_status(run)["state"] == "finished"


def test_read_status_none_without_file(root):
    assert runs.read_status(runs.create_run("sims")) is None


def test_running_with_dead_pid_reads_as_failed(root):
    run = runs.create_run("sims")
    pid = dead_pid()
    runs.write_status(run, "running", pid=pid, phase="training")
    st = runs.read_status(run)
    assert st["state"] == "failed"
    assert "ended without finishing" in st["error"]
    assert st["pid"] == pid and st["phase"] == "training"
    # only reported, not written: the file still says running
    assert runs.read_status(run, check_alive=False)["state"] == "running"
    assert json.loads((run / "status.json").read_text())["state"] == "running"


def test_running_with_live_pid_stays_running(root):
    run = runs.create_run("sims")
    runs.write_status(run, "running", pid=os.getpid())
    assert runs.read_status(run)["state"] == "running"
    runs.write_status(run, "queued", pid=dead_pid())
    assert runs.read_status(run)["state"] == "failed"


def test_newer_format_version_is_refused(root):
    run = runs.create_run("sims")
    runs.write_json(run / "status.json", {"state": "finished", "format_version": runs.FORMAT_VERSION + 1})
    with pytest.raises(RunError, match="newer scapp"):
        runs.read_status(run)


# --------------------------------------------------------------------------- stop and delete


def test_request_stop(root):
    run = runs.create_run("sims")
    assert not runs.stop_requested(run)
    runs.request_stop(run)
    assert runs.stop_requested(run)
    assert (run / "STOP").read_text().strip()
    assert temp_files(run) == []


def test_delete_run(root):
    running = runs.create_run("sims")
    runs.write_status(running, "running", pid=os.getpid())
    with pytest.raises(RunError, match="still running"):
        runs.delete_run(running)
    assert (running / "status.json").exists()

    queued = runs.create_run("sims")
    runs.write_status(queued, "queued", pid=os.getpid())
    with pytest.raises(RunError, match="still queued"):
        runs.delete_run(queued)

    finished = runs.create_run("sims")
    runs.write_status(finished, "finished", has_model=True)
    (finished / "artifacts" / "markers.csv").write_text("class,rank,gene,score\n")
    runs.delete_run(finished)
    assert not finished.exists()

    crashed = runs.create_run("sims")  # 'running' but its process is gone: may be deleted
    runs.write_status(crashed, "running", pid=dead_pid())
    runs.delete_run(crashed)
    assert not crashed.exists()
    assert running.exists() and queued.exists()


# --------------------------------------------------------------------------- create and resolve


def test_create_run_under_root(root):
    run = runs.create_run("logreg")
    assert run.parent == root.resolve() and (run / "artifacts").is_dir()
    assert "-logreg-" in run.name and runs.is_safe_id(run.name)
    assert runs.create_run("logreg") != run


def test_create_run_out(tmp_path, root):
    out = tmp_path / "my_run"
    assert runs.create_run("sims", out=out) == out.resolve()
    assert (out / "artifacts").is_dir()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert runs.create_run("sims", out=empty) == empty.resolve()

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("precious")
    with pytest.raises(RunError, match="already exists"):
        runs.create_run("sims", out=full)
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]

    a_file = tmp_path / "data.h5ad"
    a_file.write_bytes(b"counts")
    with pytest.raises(RunError, match="already exists"):
        runs.create_run("sims", out=a_file)
    assert a_file.read_bytes() == b"counts"


def test_resolve_run(tmp_path, root, monkeypatch):
    run = runs.create_run("sims")
    assert runs.resolve_run(run.name) == run  # id under $SCAPP_RUNS_DIR
    assert runs.resolve_run(str(run)) == run  # path as text
    assert runs.resolve_run(run) == run  # Path

    elsewhere = tmp_path / "elsewhere" / "run1"
    elsewhere.mkdir(parents=True)
    assert runs.resolve_run(str(elsewhere)) == elsewhere.resolve()

    with pytest.raises(RunNotFoundError, match="No run folder"):
        runs.resolve_run("20990101-000000-sims-000000")
    with pytest.raises(RunNotFoundError):
        runs.resolve_run(tmp_path / "nope")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(RunNotFoundError):
        runs.resolve_run(str(tmp_path / "a_file"))

    # an id may not climb out of the runs root, even where the target exists
    (tmp_path / "secret").mkdir()
    work = tmp_path / "w1" / "w2"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # so '../secret' is not a path that exists from here
    for bad in ("../secret", "../runs/" + run.name, "a/../../secret", "./../secret"):
        with pytest.raises(RunNotFoundError):
            runs.resolve_run(bad)


@pytest.mark.parametrize("rid, ok", [
    ("20250101-120000-sims-a1b2c3", True), ("my_run.v2", True),
    ("../x", False), ("..", False), ("a..b", False), ("a/b", False), (".hidden", False), ("", False),
    ("x" * 129, False), ("run\n", False), ("C:\\x", False),
])
def test_is_safe_id(rid, ok):
    assert runs.is_safe_id(rid) is ok


def test_runs_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(tmp_path / "a"))
    assert runs.runs_root() == (tmp_path / "a").resolve()
    monkeypatch.delenv("SCAPP_RUNS_DIR")
    monkeypatch.chdir(tmp_path)
    assert runs.runs_root() == (tmp_path / "runs").resolve()


# --------------------------------------------------------------------------- list and export


def test_list_runs(root):
    assert runs.list_runs().empty
    assert runs.list_runs(root / "missing").empty

    done = runs.create_run("sims")
    runs.write_json(done / "config.json", {"model": "sims", "data": "/data/pbmc3k.h5ad", "label": "cell_type",
                                           "created": "2025-01-01T00:00:00+00:00"})
    runs.write_json(done / "metrics.json", {"test": {"macro_f1": 0.9, "accuracy": 0.95}})
    runs.write_status(done, "finished", has_model=True)

    crashed = runs.create_run("logreg")
    runs.write_json(crashed / "config.json", {"model": "logreg", "data": "/x/q.h5ad", "label": "ct"})
    runs.write_status(crashed, "running", pid=dead_pid())

    (root / "not_a_run").mkdir()  # no status.json: ignored
    (root / "stray.txt").write_text("x")

    df = runs.list_runs()
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    rows = {r["run_id"]: r for r in df.to_dict("records")}
    r = rows[done.name]
    assert (r["state"], r["model"], r["dataset"], r["label"], r["macro_f1"], r["accuracy"]) == \
        ("finished", "sims", "pbmc3k.h5ad", "cell_type", 0.9, 0.95)
    assert r["path"] == str(done)
    r = rows[crashed.name]
    assert (r["state"], r["model"], r["dataset"]) == ("failed", "logreg", "q.h5ad")
    assert pd.isna(r["macro_f1"])
    assert runs.list_runs(root).shape == df.shape


def test_list_runs_skips_unreadable_and_newer_runs(root):
    good = runs.create_run("sims")
    runs.write_status(good, "finished")
    newer = runs.create_run("sims")
    runs.write_json(newer / "status.json", {"state": "finished", "format_version": runs.FORMAT_VERSION + 1})
    broken = runs.create_run("sims")
    (broken / "status.json").write_text('{"state": "runn')
    assert runs.list_runs()["run_id"].tolist() == [good.name]


def test_export_zip(tmp_path, root):
    run = runs.create_run("sims")
    runs.write_status(run, "finished", has_model=True)
    runs.write_json(run / "config.json", {"model": "sims"})
    runs.write_table(run / "artifacts" / "markers.csv",
                     pd.DataFrame({"class": ["CD4 T/naive"], "rank": [1], "gene": ["IL7R"], "score": [1.0]}))
    runs.write_arrays(run / "model.safetensors", {"w": np.ones((2, 3), np.float32)})

    dest = tmp_path / "share" / "my_run.zip"
    dest.parent.mkdir()
    z = runs.export_zip(run, dest)
    assert z == dest and z.is_file()
    with zipfile.ZipFile(z) as zf:
        assert zf.testzip() is None
        names = {n.rstrip("/") for n in zf.namelist()}
        for f in ("status.json", "config.json", "artifacts/markers.csv", "model.safetensors"):
            assert f"{run.name}/{f}" in names
            assert zf.read(f"{run.name}/{f}") == (run / f).read_bytes()
    assert run.is_dir()  # exporting does not move or delete the run


def test_write_table_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"cell_id": ["a", "b"], "label": ["CD4 T/naive", "B"], "p": [0.9, 0.1]})
    runs.write_table(tmp_path / "t.csv", df)
    runs.write_table(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------- RunStore: one typed pair per file

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V1_RUN = FIXTURES / "run_v1_logreg"  # a finished logreg run written by format version 1 (scapp train, 291 cells)
V1_DATA = FIXTURES / "pbmc_small.h5ad"  # the cells it was trained on: 291 PBMC 3k cells × 400 genes, raw counts


def test_every_file_round_trips_through_the_store(tmp_path):
    s = runs.RunStore.create("logreg", out=tmp_path / "r")
    assert s.path == (tmp_path / "r").resolve() and s.id == "r" and Path(s) == s.path
    assert runs.RunStore.open(str(s.path)) == s
    s.write_request({"data": "/x.h5ad", "label": "ct"})
    s.write_config({"model": "logreg", "model_config": {"C": 1.0}})
    s.write_data_info({"sha256": "ab", "n_cells": 3})
    s.write_env({"versions": {"numpy": "2"}})
    s.write_genes(["CD3E", "MS4A1", "1-Mar"])
    s.write_labels(["B", "CD4 T/naive"], "cell_type")
    s.write_recipe({"n_genes": 3, "config": {}})
    s.write_metrics({"test": {"macro_f1": float("nan")}})
    s.write_temperature(np.float32(1.5))
    s.write_reliability({"before": {"count": [1]}, "after": {"count": [1]}})
    pred = pd.DataFrame({"cell_id": ["a", "b"], "split": ["train", "test"], "true": ["B", "B"],
                         "pred": ["B", "CD4 T/naive"], "confidence": [0.9, 0.6], "p_B": [0.9, 0.4],
                         "p_CD4 T/naive": [0.1, 0.6]})
    s.write_predictions(pred)
    cm = pd.DataFrame([[1, 0], [0, 2]], index=["B", "CD4 T/naive"], columns=["B", "CD4 T/naive"])
    s.write_confusion(cm)
    s.write_per_class(pd.DataFrame({"class": ["B"], "f1": [1.0]}))
    s.write_history(pd.DataFrame())  # a model without epochs
    s.write_embedding(np.ones((2, 3)))
    s.write_explain({"class_scores": np.zeros((2, 3), np.float32)})
    markers = pd.DataFrame({"class": ["B"], "rank": [1], "gene": ["1-Mar"], "score": [0.5]})
    s.write_markers(markers)
    s.write_global_importance(pd.DataFrame({"gene": ["MS4A1"], "importance": [1.0]}))
    s.write_weights(lambda t: Path(t).write_bytes(b"weights"))
    s.append_epoch({"epoch": 1, "valid_loss": 0.5})

    assert s.request() == {"data": "/x.h5ad", "label": "ct"}
    assert s.config() == {"format_version": runs.FORMAT_VERSION, "model": "logreg", "model_config": {"C": 1.0}}
    assert s.data_info()["n_cells"] == 3 and s.env()["versions"] == {"numpy": "2"}
    assert s.genes() == ["CD3E", "MS4A1", "1-Mar"]
    assert s.labels() == {"classes": ["B", "CD4 T/naive"], "label_column": "cell_type"}
    assert s.classes() == ["B", "CD4 T/naive"] and s.recipe()["n_genes"] == 3
    assert s.metrics() == {"test": {"macro_f1": None}} and s.temperature() == 1.5
    assert s.reliability()["after"] == {"count": [1]}
    pd.testing.assert_frame_equal(s.predictions(), pred)
    assert s.predictions(columns=["cell_id"]).columns.tolist() == ["cell_id"] and s.has_predictions
    pd.testing.assert_frame_equal(s.confusion(), cm.rename_axis("true"))
    assert s.per_class()["class"].tolist() == ["B"] and s.history().empty
    assert s.embedding().dtype == np.float32 and s.embedding().shape == (2, 3) and s.has_embedding
    assert s.explain()["class_scores"].shape == (2, 3)
    pd.testing.assert_frame_equal(s.markers(), markers)  # gene names stay text
    assert s.global_importance()["gene"].tolist() == ["MS4A1"]
    assert s.has_weights and s.weights_path.read_bytes() == b"weights"
    assert s.epochs() == [{"epoch": 1, "valid_loss": 0.5}]
    # optional files: None when absent
    assert s.protein() is None and s.dotplot() is None and s.reference_markers() is None
    assert temp_files(s.path) == []


def test_a_missing_or_damaged_file_is_a_run_error_naming_file_and_run(root):
    s = runs.RunStore.create("sims")
    s.write_status("finished", has_model=True)
    with pytest.raises(RunError, match=rf"Run {s.id} has no metrics\.json \(state: finished\)") as e:
        s.metrics()
    assert "\n" not in str(e.value)
    assert s.metrics(missing_ok=True) is None
    for write, read, name in [
        (lambda p: p.write_text('{"test": '), s.metrics, "metrics.json"),
        (lambda p: p.write_text("[1, 2]"), s.config, "config.json"),
        (lambda p: p.write_bytes(b"PAR1 not parquet"), s.predictions, "predictions.parquet"),
        (lambda p: p.write_bytes(b"\x00\x01"), s.explain, "explain.safetensors"),
        (lambda p: p.write_bytes(b"\x00\x01"), s.embedding, "embedding.safetensors"),
        (lambda p: p.write_text('{"temp": 1}'), s.temperature, "temperature.json"),
        (lambda p: p.write_text('{"classes": "B"}'), s.labels, "labels.json"),
    ]:
        path = s.path / next(v for v in runs.LAYOUT.values() if Path(v).name == name)
        write(path)
        with pytest.raises(RunError, match="damaged") as e:
            read()
        assert name in str(e.value) and s.id in str(e.value) and "\n" not in str(e.value)
        path.unlink()
    (s.path / "status.json").write_text("{")
    with pytest.raises(RunError, match="status.json"):
        s.status()


def test_a_config_of_a_newer_format_is_refused(tmp_path):
    s = runs.RunStore(tmp_path)
    runs.write_json(tmp_path / "config.json", {"format_version": runs.FORMAT_VERSION + 1, "model": "sims"})
    with pytest.raises(RunError, match="newer scapp"):
        s.config()


def test_open_a_missing_run(tmp_path, root):
    with pytest.raises(RunNotFoundError):
        runs.RunStore.open(tmp_path / "nope")
    assert runs.RunStore.open(runs.RunStore.create("sims").id).path.parent == root


def test_stop_is_asked_once_and_dated(root):
    s = runs.RunStore.create("sims")
    assert not s.stop_requested() and s.stop_requested_at() is None
    s.request_stop()
    assert s.stop_requested() and abs(s.stop_requested_at() - time.time()) < 60
    assert runs.stop_requested(s.path)


def test_cell_map_state_and_job(tmp_path):
    s = runs.RunStore(tmp_path / "run")
    s.write_predictions(pd.DataFrame({"true": ["a", "b"], "p_a": [0.1, 0.9], "p_b": [0.9, 0.1]}))
    assert s.cell_map_path(15).name == "umap_proba_15.safetensors"  # no latent space: map of the probabilities
    assert s.cell_map_state(15) == ("missing", None)
    s.mark_cell_map_running(15, os.getpid())
    assert s.cell_map_state(15) == ("running", None)
    s.mark_cell_map_running(15, dead_pid())  # a job that died
    assert s.cell_map_state(15) == ("missing", None)
    with pytest.raises(ValueError, match="boom"), s.cell_map_job(15):
        assert s.cell_map_state(15) == ("running", None)
        raise ValueError("boom")
    state, msg = s.cell_map_state(15)
    assert state == "failed" and "could not be computed (ValueError: boom)" in msg
    s.clear_cell_map_error(15)
    with s.cell_map_job(15):
        s.write_cell_map(15, {"index": np.arange(2), "umap": np.zeros((2, 2), np.float32)})
    assert s.cell_map_state(15) == ("ready", None) and s.cell_map(15)["umap"].shape == (2, 2)
    s.write_embedding(np.zeros((2, 3)))
    assert s.cell_map_path(15).name == "umap_15.safetensors"
    with pytest.raises(RunError, match="no cell map"):
        s.cell_map(15)
    s.delete_cell_maps()
    assert not list((s.path / "artifacts").glob("umap*"))


def test_results_of_an_unfinished_run(root):
    s = runs.RunStore.create("sims")
    s.write_config({"model": "sims"})
    with pytest.raises(RunError, match="only finished"):
        s.results()


# --------------------------------------------------------------------------- a version-1 run still opens


def test_the_layout_has_not_moved_under_format_version_1():
    """Every file of the checked-in version-1 run is where ``LAYOUT`` looks for it; a layout change bumps
    FORMAT_VERSION and keeps reading version-1 folders (this fixture)."""
    on_disk = {p.relative_to(V1_RUN).as_posix() for p in V1_RUN.rglob("*") if p.is_file()}
    assert on_disk <= set(runs.LAYOUT.values()), on_disk - set(runs.LAYOUT.values())
    assert runs.read_status(V1_RUN)["format_version"] == 1 <= runs.FORMAT_VERSION


def test_a_version_1_run_reads_through_the_store():
    s = runs.RunStore.open(V1_RUN)
    assert s.status()["state"] == "finished" and s.status()["has_model"] and s.has_weights
    assert s.config()["model"] == "logreg" and s.config()["format_version"] == 1
    classes = s.classes()
    assert len(classes) == 9 and s.labels()["label_column"] == "cell_type"
    assert len(s.genes()) == 400 and s.recipe()["n_genes"] == 400
    m = s.metrics()
    assert m["classes"] == classes and 0.5 < m["test"]["macro_f1"] <= 1
    pred = s.predictions()
    assert len(pred) == s.data_info()["n_cells_used"] == 291
    assert [c for c in pred.columns if c.startswith("p_")] == [f"p_{c}" for c in classes]
    markers = s.markers()
    assert set(markers["class"]) == set(classes) and (markers.groupby("class")["rank"].min() == 1).all()
    assert s.explain()["class_scores"].shape == (9, 400)
    assert s.confusion().shape == (9, 9) and list(s.confusion().index) == classes
    assert len(s.per_class()) == 9 and s.temperature() > 0 and set(s.reliability()) == {"before", "after"}
    assert len(s.history()) == 1 and len(s.epochs()) == 1
    assert s.global_importance()["gene"].nunique() == 400
    assert set(s.reference_markers()["class"]) <= set(classes) and len(s.dotplot())
    assert s.embedding() is None and s.protein() is None  # logistic regression: no latent space, RNA only
    assert s.env()["versions"]["scapp"]
    assert s.results()["predictions"].columns.tolist() == ["cell_id", "split", "true", "pred", "confidence"]
    assert runs.list_runs(FIXTURES)["run_id"].tolist() == ["run_v1_logreg"]


def test_a_version_1_run_annotates_a_query():
    """Loaded through ``load_run`` and applied to the cells it was trained on, it gives back its own predictions."""
    import anndata as ad

    from scapp.annotate import annotate, load_run

    loaded = load_run(V1_RUN)
    s = runs.RunStore(V1_RUN)
    assert loaded.classes == s.classes() and loaded.recipe.genes == s.genes()
    assert loaded.temperature == pytest.approx(s.temperature()) and len(loaded.important_genes) == 50
    q = ad.read_h5ad(V1_DATA)
    ann = annotate(loaded, q)
    assert ann.overlap.n_shared == 400 and not ann.overlap.missing_important
    pred = s.predictions().set_index("cell_id").loc[q.obs_names]
    np.testing.assert_allclose(ann.proba.to_numpy(), pred[[f"p_{c}" for c in s.classes()]].to_numpy(), atol=1e-4)
    assert (ann.predicted.to_numpy() == pred["pred"].to_numpy()).all()
    truth = q.obs["cell_type"].astype(str).to_numpy()
    assert (ann.predicted.to_numpy() == truth).mean() > 0.8
