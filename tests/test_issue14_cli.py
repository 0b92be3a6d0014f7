"""Issue 14, CLI part: every bad request explained before a run folder exists, damaged runs named, the minimums,
one exit-code rule, ``scapp runs`` / ``runs --rm`` and ``scapp rerun``.

Built on the helpers and the 300 real PBMC cells of ``tests/test_bad_inputs.py`` (imported from there, not copied).
This machine's tests run as root, for whom ``chmod`` takes nothing away: "no permission" is injected (``mkdir`` or
the write raising ``PermissionError``, ``os.access`` saying no) and "not writable" is also made real with a path
that runs through a regular file, which stops root too.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import signal
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from scapp import runs
from scapp.cli import main
from test_bad_inputs import LOGREG, cli, error_line, pbmc, runs_in, sha256, small, write  # noqa: F401

# a network small enough to train a few epochs in seconds on a CPU (ssl: an MLP encoder and a linear head)
TINY_SSL = {"encoder_widths": [64, 32, 16], "batch_size": 64}


def _train(capsys, data: Path, *args: str) -> Path:
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--quiet", *args)
    assert rc == 0, err
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(small: ad.AnnData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two finished logreg runs: on the 300 cells (9 classes), and on a 2-class relabelling of them (other
    weights, to be copied into the first as a damaged run)."""
    import contextlib
    import io

    d = tmp_path_factory.mktemp("i14trained")
    data = write(small, d / "train.h5ad")
    two = small.copy()
    two.obs["cell_type"] = np.where(two.obs["cell_type"].str.contains("T"), "T cell", "other")
    data2 = write(two, d / "two_classes.h5ad")
    out = {}
    for name, path in (("run", data), ("other", data2)):
        o, e = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            mp.setenv("SCAPP_RUNS_DIR", str(d / "runs"))
            rc = main(["train", str(path), "--label", "cell_type", *LOGREG, "--quiet"])
        assert rc == 0, e.getvalue()
        out[name] = Path(o.getvalue().strip().splitlines()[-1])
    out["data"] = data
    return out


def _tree(path: Path) -> dict[str, str]:
    """Every file of a folder and its checksum (to show a run is untouched)."""
    return {str(p.relative_to(path)): sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the run folder cannot be made


@pytest.mark.parametrize("where", ["out", "runs-root"])
def test_run_folder_under_a_file_is_refused(where, small, tmp_path, runs_dir, capsys, monkeypatch):
    """--out or $SCAPP_RUNS_DIR running through a regular file (unwritable for root too): one error line."""
    data = write(small, tmp_path / "cells.h5ad")
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    if where == "out":
        rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--out", blocker / "run", *LOGREG)
        error_line(rc, err, "cannot create the run folder", "afile is a file", "--out")
    else:
        monkeypatch.setenv("SCAPP_RUNS_DIR", str(blocker / "runs"))
        rc, out, err = cli(capsys, "train", data, "--label", "cell_type", *LOGREG)
        error_line(rc, err, "cannot create the run folder", "afile is a file", "SCAPP_RUNS_DIR")
    assert out == "" and blocker.read_text() == "not a folder"


@pytest.mark.parametrize("where", ["out", "runs-root"])
def test_run_folder_without_permission_is_refused(where, small, tmp_path, capsys, monkeypatch):
    """A folder this user may not write in: mkdir raises PermissionError (injected: root ignores chmod)."""
    data = write(small, tmp_path / "cells.h5ad")
    locked = tmp_path / "locked"
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(locked)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    if where == "out":
        rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--out", locked / "run", *LOGREG)
        error_line(rc, err, "cannot create the run folder", "permission denied", "--out")
    else:
        monkeypatch.setenv("SCAPP_RUNS_DIR", str(locked))
        rc, out, err = cli(capsys, "train", data, "--label", "cell_type", *LOGREG)
        error_line(rc, err, "cannot create the run folder", "permission denied", "SCAPP_RUNS_DIR")
    assert out == "" and not locked.exists()


def test_config_pointing_at_a_folder(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    (tmp_path / "opts").mkdir()
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--config", tmp_path / "opts", *LOGREG)
    error_line(rc, err, "config file", "opts", "is a folder", "JSON file")
    assert out == "" and runs_in(runs_dir) == []


# --------------------------------------------------------------------------- predict --csv where it cannot go


def _no_access(monkeypatch, folder: Path) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real(p, mode, **kw))


def _write_fails(monkeypatch, code: int) -> None:
    def fail(path, df):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(runs, "write_table", fail)


CSV_CASES = {  # id -> (where the CSV goes, how the folder is made unwritable, key words)
    "missing-folder": (lambda t: t / "no_such_folder" / "p.csv", None, ["--csv", "no_such_folder", "does not exist"]),
    "under-a-file": (lambda t: t / "afile" / "p.csv", None, ["--csv", "afile is a file", "not a folder"]),
    "existing-folder": (lambda t: t / "results", None, ["results", "is a folder", "file name"]),
    "no-permission-seen-first": (lambda t: t / "locked" / "p.csv", "access", ["--csv", "permission denied",
                                                                               "folder you can write to"]),
    "no-permission-on-write": (lambda t: t / "locked" / "p.csv", "eacces", ["--csv", "permission denied",
                                                                             "nothing was written"]),
    "disk-full-on-write": (lambda t: t / "locked" / "p.csv", "enospc", ["--csv", "disk is full", "free space"]),
}


@pytest.mark.parametrize("case", list(CSV_CASES), ids=list(CSV_CASES))
def test_predict_csv_that_cannot_be_written(case, trained, tmp_path, runs_dir, capsys, monkeypatch):
    where, how, words = CSV_CASES[case]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "results").mkdir()
    (tmp_path / "locked").mkdir()
    csv = where(tmp_path)
    if how == "access":
        _no_access(monkeypatch, tmp_path / "locked")
    elif how:
        _write_fails(monkeypatch, errno.EACCES if how == "eacces" else errno.ENOSPC)
    before = {p.name for p in tmp_path.rglob("*")}
    rc, out, err = cli(capsys, "predict", trained["run"], trained["data"], "--csv", csv)
    error_line(rc, err, *words)
    assert out == ""
    assert {p.name for p in tmp_path.rglob("*")} == before  # nothing written, no folder made


# --------------------------------------------------------------------------- damaged runs given to predict


def _truncate(run: Path, other: Path) -> None:
    w = run / runs.LAYOUT["weights"]
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _swap(run: Path, other: Path) -> None:
    shutil.copyfile(other / runs.LAYOUT["weights"], run / runs.LAYOUT["weights"])


DAMAGE = {  # id -> (damage, key words: the file that is wrong and what to do)
    "truncated-weights": (_truncate, [Path(runs.LAYOUT["weights"]).name, "truncated", "train the run again"]),
    "no-genes": (lambda r, o: (r / runs.LAYOUT["genes"]).unlink(), [runs.LAYOUT["genes"], "incomplete",
                                                                     "train the run again"]),
    "no-temperature": (lambda r, o: (r / runs.LAYOUT["temperature"]).unlink(), [runs.LAYOUT["temperature"],
                                                                                 "train the run again"]),
    "weights-of-another-run": (_swap, [runs.LAYOUT["weights"], "not the file this run saved",
                                       "train the run again"]),
}


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_predict_with_a_damaged_run(case, trained, tmp_path, runs_dir, capsys):
    damage, words = DAMAGE[case]
    run = tmp_path / "copy_of_run"
    shutil.copytree(trained["run"], run)
    damage(run, trained["other"])
    csv = tmp_path / "p.csv"
    rc, out, err = cli(capsys, "predict", run, trained["data"], "--csv", csv)
    line = error_line(rc, err, "copy_of_run", *words)
    assert "internal error" not in line.lower()
    assert out == "" and not csv.exists()
    # the undamaged run still annotates
    rc, out, err = cli(capsys, "predict", trained["run"], trained["data"], "--csv", csv, "--quiet")
    assert rc == 0, err
    assert csv.exists()


def test_predict_with_a_folder_that_is_not_a_run(trained, tmp_path, runs_dir, capsys):
    """Was: "Run in has no trained model (state: unknown)" for any folder, e.g. the data folder ``in``."""
    folder = tmp_path / "in"
    folder.mkdir()
    rc, out, err = cli(capsys, "predict", folder, trained["data"], "--csv", tmp_path / "p.csv")
    error_line(rc, err, str(folder), "is not a scapp run folder", "scapp train")
    assert out == ""


# --------------------------------------------------------------------------- minimums, checked before the run


def _cells(small: ad.AnnData, counts: dict[str, int]) -> ad.AnnData:
    """``counts[class]`` real cells of each class (of the 300)."""
    ct = small.obs["cell_type"].to_numpy()
    idx = np.concatenate([np.flatnonzero(ct == c)[:n] for c, n in counts.items()])
    return small[np.sort(idx)].copy()


MINIMUMS = {  # id -> (cells per class, key words)
    "two-cells": ({"B": 1, "NK": 1}, ["only 2 labelled cells", "at least 20", "more cells"]),
    "one-class-big-enough": ({"B": 30, "NK": 2, "DC": 1},
                             ["only 1 of the 3 classes", "3 cells", "DC (1)", "NK (2)", "merge"]),
}


@pytest.mark.parametrize("case", list(MINIMUMS), ids=list(MINIMUMS))
def test_too_few_cells_refused_before_a_run_folder(case, small, tmp_path, runs_dir, capsys):
    """Two cells once "finished" with no validation or test cell and macro-F1 NaN; now refused, by the CLI and by
    the Train page's check (the same function, the same words), and no run folder is made."""
    from scapp.errors import ScappError
    from scapp.train.engine import TrainRequest
    from scapp.train.job import check_request

    counts, words = MINIMUMS[case]
    a = _cells(small, counts)
    data = write(a, tmp_path / "few.h5ad")
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", *LOGREG)
    line = error_line(rc, err, *words)
    assert out == "" and runs_in(runs_dir) == []
    with pytest.raises(ScappError) as e:  # the app's Train page
        check_request(TrainRequest(data=str(data), label="cell_type", model="logreg"), a)
    assert line == f"scapp: error: {e.value}"


def test_label_column_typo_leaves_no_run_folder(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    before = sha256(data)
    rc, out, err = cli(capsys, "train", data, "--label", "cell-type", *LOGREG)
    error_line(rc, err, "'cell-type'", "not in", "cell_type")
    assert out == "" and runs_in(runs_dir) == []
    assert sha256(data) == before


def test_min_cells_per_class_leaves_small_classes_out(small, tmp_path, runs_dir, capsys):
    """DC (6 cells) and Platelet (1) under --min-cells-per-class 10: left out with a note, the others trained."""
    data = write(small, tmp_path / "cells.h5ad")
    run = _train(capsys, data, *LOGREG, "--min-cells-per-class", "10")
    store = runs.RunStore(run)
    assert runs.read_status(run)["state"] == "finished"
    assert "DC" not in store.classes() and "Platelet" not in store.classes() and len(store.classes()) == 7
    note = next(n for n in store.data_info()["notes"] if "fewer than 10" in n)
    assert "DC (6)" in note and "Platelet (1)" in note and "7 cells" in note
    assert store.data_info()["n_cells_used"] == 300 - 7
    assert not store.predictions()["true"].isin(["DC", "Platelet"]).any()
    # every class left can be scored: no NaN in the test scores
    assert store.metrics()["test"]["macro_f1"] == store.metrics()["test"]["macro_f1"]


# --------------------------------------------------------------------------- exit codes: one rule


def test_help_documents_exit_codes(capsys):
    for args in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
        text = " ".join(capsys.readouterr().out.split())
        assert "exit codes: 0" in text and "3 a run was cancelled (STOP file, the app's Stop, SIGTERM)" in text


@pytest.mark.parametrize("how", ["stop-file", "sigterm"])
def test_a_cancelled_run_exits_3_however_it_was_cancelled(how, small, tmp_path, runs_dir, capsys, monkeypatch):
    """Was: a STOP-file cancel exited 0 and a SIGTERM cancel 3. Now both 3; a STOP keeps the best epoch."""
    from scapp.train import engine

    data = write(small, tmp_path / "cells.h5ad")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_SSL))
    emit = engine._Reporter.emit

    def emit_then_cancel(self, event):
        emit(self, event)
        if (event.get("epoch") or 0) >= 1 and "epoch_s" in event:
            if how == "stop-file":
                runs.request_stop(self.run)
            else:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(engine._Reporter, "emit", emit_then_cancel)
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--model", "ssl", "--config", cfg,
                           "--epochs", "30", "--device", "cpu", "--quiet")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert rc == 3, err
    run = Path(out.strip().splitlines()[-1])
    st = runs.read_status(run)
    assert st["state"] == "cancelled"
    assert bool(st["has_model"]) is (how == "stop-file")


# --------------------------------------------------------------------------- scapp runs, runs --rm


def test_runs_lists_and_removes(trained, tmp_path, capsys, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(root))
    done = root / trained["run"].name
    shutil.copytree(trained["run"], done)
    failed = runs.create_run("sims")
    runs.RunStore(failed).write_config({"model": "sims", "data": "/data/atlas.h5ad", "created": "2026-01-01"})
    runs.write_status(failed, "failed", error="Label column 'x' is not in the file's obs.", has_model=False)
    live = runs.create_run("logreg")
    runs.write_status(live, "running", pid=os.getpid(), phase="training")
    runs.RunStore(live).beat()

    rc, out, err = cli(capsys, "runs")
    assert rc == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["id", "state", "model"] and "data" in header and "created" in header
    assert "test macro-F1" in lines[0]
    row = next(ln for ln in lines if done.name in ln)
    f1 = runs.RunStore(done).metrics()["test"]["macro_f1"]
    assert "finished" in row and "logreg" in row and "train.h5ad" in row and f"{f1:.3f}" in row
    assert "failed" in next(ln for ln in lines if failed.name in ln)
    assert "running" in next(ln for ln in lines if live.name in ln)
    assert f"{failed.name} failed: Label column 'x'" in err

    rc, out, err = cli(capsys, "runs", "--json")
    recs = {r["run_id"]: r for r in json.loads(out)}
    assert set(recs) == {done.name, failed.name, live.name}
    assert recs[done.name]["state"] == "finished" and recs[done.name]["macro_f1"] == pytest.approx(f1)
    assert recs[failed.name]["error"].startswith("Label column 'x'") and recs[live.name]["state"] == "running"
    assert recs[done.name]["created"] and recs[done.name]["dataset"] == "train.h5ad"

    rc, out, err = cli(capsys, "runs", "--rm", live.name, failed.name)  # one still running: nothing removed
    error_line(rc, err, live.name, "still running", "nothing was removed")
    assert live.exists() and failed.exists()
    rc, out, err = cli(capsys, "runs", "--rm", failed.name, str(done))
    assert rc == 0, err
    assert out.splitlines() == [f"removed {failed}", f"removed {done}"]
    assert not failed.exists() and not done.exists() and live.exists()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cells.h5ad").write_text("precious")
    rc, out, err = cli(capsys, "runs", "--rm", tmp_path / "data")  # any other folder is never removed
    error_line(rc, err, "not a scapp run folder")
    assert (tmp_path / "data" / "cells.h5ad").read_text() == "precious"


# --------------------------------------------------------------------------- reproducibility, scapp rerun


def test_rerun_logreg_reproduces_its_metrics(trained, tmp_path, runs_dir, capsys):
    rc, out, err = cli(capsys, "rerun", trained["run"], "--json", "--quiet")
    assert rc == 0, err
    lines = out.strip().splitlines()
    new = Path(lines[-1])
    cmp = json.loads("\n".join(lines[:-1]))
    assert cmp["identical"] and cmp["same_predictions"]
    assert {r["metric"] for r in cmp["metrics"]} >= {"valid macro_f1", "test macro_f1", "test accuracy"}
    assert all(r["difference"] == 0 for r in cmp["metrics"])
    assert new.parent == runs_dir and runs.read_status(new)["state"] == "finished"
    a, b = runs.RunStore(trained["run"]).config(), runs.RunStore(new).config()
    for k in ("data", "label", "model", "seed", "model_config", "preprocess", "valid_frac", "test_frac"):
        assert a[k] == b[k], k


def test_same_seed_same_metrics_ssl(small, tmp_path, runs_dir, capsys):
    """A network trained twice on the CPU with the same seed: the same split, the same numbers (the table
    ``scapp rerun`` prints); another seed gives another split."""
    data = write(small, tmp_path / "cells.h5ad")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_SSL))
    first = _train(capsys, data, "--model", "ssl", "--config", cfg, "--epochs", "2", "--device", "cpu")
    rc, out, err = cli(capsys, "rerun", first, "--quiet")
    assert rc == 0, err
    assert "identical metrics" in out and "predictions of every cell: the same" in out
    again = Path(out.strip().splitlines()[-1])
    m1, m2 = runs.RunStore(first).metrics(), runs.RunStore(again).metrics()
    for part in ("train", "valid", "test"):
        assert m1[part]["macro_f1"] == m2[part]["macro_f1"] and m1[part]["accuracy"] == m2[part]["accuracy"]
    p1, p2 = runs.RunStore(first).predictions(), runs.RunStore(again).predictions()
    assert (p1["split"] == p2["split"]).all()
    np.testing.assert_array_equal(p1.filter(like="p_").to_numpy(), p2.filter(like="p_").to_numpy())


def test_rerun_of_a_run_whose_file_is_gone(trained, tmp_path, runs_dir, capsys):
    run = tmp_path / "moved"
    shutil.copytree(trained["run"], run)
    cfg = runs.RunStore(run).config()
    runs.RunStore(run).write_config({**cfg, "data": str(tmp_path / "gone.h5ad")})
    rc, out, err = cli(capsys, "rerun", run)
    error_line(rc, err, "gone.h5ad", "no longer there", "put the file back")
    assert out == "" and runs_in(runs_dir) == []
