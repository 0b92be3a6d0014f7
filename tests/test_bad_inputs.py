"""Bad inputs through the CLI: one clear ``scapp: error:`` line, a non-zero exit, no traceback,
the input file untouched, and (for train) no run folder left behind: the request is checked first (issue 14).

Everything is built from 300 real cells of the demo asset ``assets/demo_pbmc3k.h5ad`` (PBMC 3k, raw
integer counts, 2,000 genes, label ``cell_type``). Most cases call ``scapp.cli.main`` in-process; two run a real
``python -m scapp`` subprocess to prove that no traceback reaches a user's terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scapp import runs
from scapp.cli import main

REPO = Path(__file__).resolve().parent.parent
N_CELLS = 300
SLASH = "CD4 T/naive"  # a label containing "/" (renamed from "CD4 T naive")
LOGREG = ["--model", "logreg", "--epochs", "1"]


# --------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write(a: ad.AnnData, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a.write_h5ad(path)
    return path


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    rc = main([str(x) for x in args])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(rc: int, err: str, *words: str) -> str:
    """Assert a user error: exit code 2, exactly one 'scapp: error:' line holding ``words``, no traceback."""
    assert rc == 2, f"exit code {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("scapp: error:")]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    line = lines[0]
    assert len(line) > len("scapp: error: ") + 10, line
    # the message is a single line: nothing of it spills onto the following stderr lines
    after = err.splitlines()[err.splitlines().index(line) + 1:]
    assert not any(ln.startswith((" ", "\t")) for ln in after), err
    for w in words:
        assert w.lower() in line.lower(), f"{w!r} not in: {line}"
    return line


def failed_run(out: str, runs_dir: Path, line: str) -> None:
    """A bad input is refused before a run folder is made (issue 14): nothing printed on stdout, and every folder
    in the runs folder is a finished run made before (the name is kept from when such runs were left behind,
    marked failed)."""
    assert out.strip() == "", f"a run folder was printed: {out}"
    left = [r for r in runs_in(runs_dir) if (runs.read_status(r) or {}).get("state") != "finished"]
    assert left == [], left


def runs_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    """All 2,638 pbmc3k cells with counts in .X and a small obs."""
    a = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")
    a.obs = a.obs[["cell_type", "cell_type_coarse", "nCount_RNA"]].copy()
    a.obs["cell_type"] = a.obs["cell_type"].astype(str)
    a.uns = {}
    return a


@pytest.fixture(scope="module")
def small(pbmc: ad.AnnData) -> ad.AnnData:
    """300 real cells spread over the file (all 9 cell types)."""
    idx = np.linspace(0, pbmc.n_obs - 1, N_CELLS).astype(int)
    a = pbmc[idx].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


@pytest.fixture(scope="module")
def query(pbmc: ad.AnnData) -> ad.AnnData:
    """300 other real cells (none used in training) to annotate."""
    train_idx = np.linspace(0, pbmc.n_obs - 1, N_CELLS).astype(int)
    rest = np.setdiff1d(np.arange(pbmc.n_obs), train_idx)
    a = pbmc[rest[np.linspace(0, rest.size - 1, N_CELLS).astype(int)]].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


def lognorm(a: ad.AnnData) -> ad.AnnData:
    import scanpy as sc

    b = a.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    b.uns = {}
    return b


def with_slash(a: ad.AnnData) -> ad.AnnData:
    b = a.copy()
    b.obs["cell_type"] = b.obs["cell_type"].astype(str).replace({"CD4 T naive": SLASH})
    return b


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def trained(small: ad.AnnData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The module's one model: logreg on the 300 cells with the '/' label, trained through the CLI."""
    d = tmp_path_factory.mktemp("trained")
    data = write(with_slash(small), d / "train.h5ad")
    before = sha256(data)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("SCAPP_RUNS_DIR", str(d / "runs"))
        rc = main(["train", str(data), "--label", "cell_type", *LOGREG, "--quiet"])
    assert rc == 0, err.getvalue()
    assert sha256(data) == before
    run = Path(out.getvalue().strip().splitlines()[-1])
    return {"run": run, "data": data, "err": err.getvalue()}


# --------------------------------------------------------------------------- train: unreadable files

def _empty(good: Path, bad: Path) -> None:
    bad.write_bytes(b"")


def _random(good: Path, bad: Path) -> None:
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 64_000, dtype=np.uint8).tobytes())


def _xlsx(good: Path, bad: Path) -> None:
    bad.write_bytes(good.read_bytes()[:4096])


def _truncated(good: Path, bad: Path) -> None:
    b = good.read_bytes()
    bad.write_bytes(b[: len(b) // 2])


# id -> (file name, how to make it from a good h5ad, key words)
UNREADABLE = {
    "truncated-h5ad": ("cells.h5ad", _truncated, ["cells.h5ad", "truncated or corrupt"]),
    "empty-file": ("cells.h5ad", _empty, ["cells.h5ad", "empty", "0 bytes"]),
    "random-bytes": ("cells.h5ad", _random, ["cells.h5ad", "not a valid h5ad"]),
    "xlsx-extension": ("cells.xlsx", _xlsx, ["cells.xlsx", "unsupported file type", ".h5ad"]),
}


@pytest.mark.parametrize("case", list(UNREADABLE), ids=list(UNREADABLE))
def test_train_unreadable_file(case, small, tmp_path, runs_dir, capsys):
    name, make, words = UNREADABLE[case]
    good = write(small, tmp_path / "good.h5ad")
    bad = tmp_path / "in" / name
    bad.parent.mkdir()
    make(good, bad)
    before = sha256(bad)
    rc, out, err = cli(capsys, "train", bad, "--label", "cell_type", *LOGREG)
    line = error_line(rc, err, *words)
    failed_run(out, runs_dir, line)
    assert sha256(bad) == before


def test_train_missing_file(tmp_path, runs_dir, capsys):
    rc, out, err = cli(capsys, "train", tmp_path / "nope.h5ad", "--label", "cell_type", *LOGREG)
    error_line(rc, err, "no such file", "nope.h5ad")
    assert out == ""
    assert runs_in(runs_dir) == []  # nothing to clean up after a typo


def test_train_truncated_h5ad_subprocess(small, tmp_path):
    """A real user's terminal: corrupt file → one error line, exit 2, no traceback, failed run."""
    good = write(small, tmp_path / "good.h5ad")
    bad = tmp_path / "half.h5ad"
    _truncated(good, bad)
    before = sha256(bad)
    runs_dir = tmp_path / "runs"
    env = {**os.environ, "SCAPP_RUNS_DIR": str(runs_dir), "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "scapp", "train", str(bad), "--label", "cell_type", *LOGREG],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    line = error_line(p.returncode, p.stderr, "half.h5ad", "not a valid h5ad", "truncated or corrupt")
    failed_run(p.stdout, runs_dir, line)
    assert sha256(bad) == before


# --------------------------------------------------------------------------- train: bad contents


def _nan(a: ad.AnnData) -> ad.AnnData:
    a.X.data[::97] = np.nan
    return a


def _inf(a: ad.AnnData) -> ad.AnnData:
    a.X.data[::97] = np.inf
    return a


def _negative(a: ad.AnnData) -> ad.AnnData:
    a.X.data[::5] *= -1
    return a


def _one_class(a: ad.AnnData) -> ad.AnnData:
    a.obs["cell_type"] = "B"
    return a


def _empty_cells(a: ad.AnnData) -> ad.AnnData:
    X = a.X.tolil()
    big = np.flatnonzero(a.obs["cell_type"].to_numpy() == "CD4 T naive")[:5]
    X[big] = 0
    a.X = sp.csr_matrix(X, dtype=np.float32)
    a.X.eliminate_zeros()
    return a


def _dup_genes(a: ad.AnnData) -> ad.AnnData:
    names = a.var_names.to_numpy().copy()
    names[10] = names[0]
    names[11] = names[1]
    a.var_names = pd.Index(names)
    return a


# id -> (transform, extra args, key words)
BAD_CONTENT: dict[str, tuple[Callable, list[str], list[str]]] = {
    "label-column-missing": (lambda a: a, ["--label", "celltype"],
                             ["'celltype'", "not in", "cell_type", "cell_type_coarse"]),
    "one-class": (_one_class, [], ["single class", "'B'", "at least two"]),
    "nan-in-X": (_nan, [], ["NaN", "finite"]),
    "inf-in-X": (_inf, [], ["infinite", "finite"]),
    "negative-values": (_negative, [], ["negative", "raw count"]),
    "log-normalized-X": (lognorm, [], ["not look like raw counts", "log", "--layer"]),
    "all-zero-cells": (_empty_cells, [], ["5 cells", "zero counts", "--drop-empty-cells"]),
    "duplicate-genes": (_dup_genes, [], ["2 duplicated gene names", "var_names_make_unique"]),
}


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("case", list(BAD_CONTENT), ids=list(BAD_CONTENT))
def test_train_bad_content(case, small, tmp_path, runs_dir, capsys):
    make, extra, words = BAD_CONTENT[case]
    data = write(make(small.copy()), tmp_path / "bad.h5ad")
    before = sha256(data)
    args = ["--label", "cell_type", *extra] if "--label" not in extra else extra
    rc, out, err = cli(capsys, "train", data, *args, *LOGREG, "--quiet")
    line = error_line(rc, err, *words)
    failed_run(out, runs_dir, line)
    assert sha256(data) == before


def test_train_lognorm_x_with_counts_layer_works(small, tmp_path, runs_dir, capsys):
    """The usual scanpy file (.X log-normalized, counts kept in a layer) trains with --layer."""
    a = lognorm(small)
    a.layers["counts"] = small.X.copy()
    data = write(a, tmp_path / "lognorm_with_counts.h5ad")
    before = sha256(data)
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--layer", "counts", *LOGREG, "--quiet")
    assert rc == 0, err
    assert "scapp: error" not in err
    run = Path(out.strip().splitlines()[-1])
    assert runs.read_status(run)["state"] == "finished"
    assert runs.RunStore(run).data_info()["layer"] == "counts"
    assert sha256(data) == before

    # a layer that does not exist is named, with the ones that do
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--layer", "raw_counts", *LOGREG, "--quiet")
    line = error_line(rc, err, "'raw_counts'", "not in this file", "counts")
    failed_run(out, runs_dir, line)


def test_train_drop_empty_cells_works(small, tmp_path, runs_dir, capsys):
    data = write(_empty_cells(small.copy()), tmp_path / "empty_cells.h5ad")
    before = sha256(data)
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--drop-empty-cells", *LOGREG, "--quiet")
    assert rc == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert runs.read_status(run)["state"] == "finished"
    info = runs.RunStore(run).data_info()
    assert info["n_cells_used"] == N_CELLS - 5
    assert any("zero counts" in n for n in info["notes"]), info["notes"]
    assert sha256(data) == before


# --------------------------------------------------------------------------- train: bad options


def test_train_model_not_available(small, tmp_path, runs_dir, capsys, monkeypatch):
    from scapp.models.registry import REGISTRY, Capabilities, ModelSpec

    # a method announced but not built yet, registered for this test only
    monkeypatch.setitem(REGISTRY, "future", ModelSpec(name="future", cls_path=None, title="A future method",
                                                      paper="Nobody, Not yet, 2099", about="Announced.",
                                                      capabilities=Capabilities()))
    data = write(small, tmp_path / "cells.h5ad")
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--model", "future", "--epochs", "1")
    error_line(rc, err, "'future'", "not available", "logreg")
    assert out == ""
    assert runs_in(runs_dir) == []


def test_train_cuda_without_gpu(small, tmp_path, runs_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    data = write(small, tmp_path / "cells.h5ad")
    before = sha256(data)
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--device", "cuda", *LOGREG)
    line = error_line(rc, err, "no cuda gpu", "--device cpu")
    failed_run(out, runs_dir, line)
    assert sha256(data) == before


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], ["--epochs", "at least 1"]),
    (["--valid-frac", "1.5"], ["--valid-frac", "sum below 1"]),
    (["--valid-frac", "0.6", "--test-frac", "0.5"], ["--test-frac", "sum below 1"]),
], ids=["epochs-0", "valid-frac-1.5", "fractions-sum-over-1"])
def test_train_bad_numbers(args, words, small, tmp_path, runs_dir, capsys):
    """Refused before any work (0 epochs would save an untrained model as 'finished')."""
    data = write(small, tmp_path / "cells.h5ad")
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--model", "logreg", *args)
    error_line(rc, err, *words)
    assert out == ""
    assert runs_in(runs_dir) == []


def test_train_out_is_the_input_file(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    before = sha256(data)
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--out", data, *LOGREG)
    error_line(rc, err, "cells.h5ad", "already exists", "--out")
    assert out == ""
    assert sha256(data) == before


def test_train_config_invalid_json(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    cfg = tmp_path / "opts.json"
    cfg.write_text('{"C": 1.0,')
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--config", cfg, *LOGREG)
    error_line(rc, err, "opts.json", "not valid JSON")
    assert out == ""
    assert runs_in(runs_dir) == []


def test_train_config_not_an_object(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    cfg = tmp_path / "opts.json"
    cfg.write_text("[1, 2]")
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--config", cfg, *LOGREG)
    error_line(rc, err, "opts.json", "JSON object")


def test_train_config_unknown_option(small, tmp_path, runs_dir, capsys):
    data = write(small, tmp_path / "cells.h5ad")
    before = sha256(data)
    cfg = tmp_path / "opts.json"
    cfg.write_text(json.dumps({"C": 0.5, "learning_rate_typo": 0.1}))
    rc, out, err = cli(capsys, "train", data, "--label", "cell_type", "--config", cfg, *LOGREG)
    line = error_line(rc, err, "unknown option", "learning_rate_typo", "max_iter")
    failed_run(out, runs_dir, line)
    assert sha256(data) == before


# --------------------------------------------------------------------------- labels with "/"


def test_slash_in_label_round_trips(trained, query, tmp_path, runs_dir, capsys):
    """'CD4 T/naive' is a value, never a path: train, predict --csv/--out and markers keep it whole."""
    run = trained["run"]
    assert SLASH in runs.RunStore(run).classes()
    assert runs.read_status(run)["state"] == "finished"
    assert sorted(p.name for p in run.rglob("*") if "naive" in p.name) == []  # no file named after a class

    q = write(with_slash(query), tmp_path / "query.h5ad")
    before = sha256(q)
    csv, out_h5 = tmp_path / "pred.csv", tmp_path / "annotated.h5ad"
    rc, out, err = cli(capsys, "predict", run, q, "--csv", csv, "--out", out_h5, "--quiet")
    assert rc == 0, err
    assert "Traceback" not in err and "scapp: error" not in err
    assert out.strip().splitlines() == [str(csv.resolve()), str(out_h5.resolve())]
    assert sha256(q) == before

    df = pd.read_csv(csv)
    assert list(df.columns[:4]) == ["cell_id", "label", "confidence", "unassigned"]
    assert f"p_{SLASH}" in df.columns
    assert len(df) == N_CELLS
    assert (df["label"] == SLASH).sum() > 0
    assert not df["label"].isin(["CD4 T", "naive"]).any()
    np.testing.assert_allclose(df.filter(like="p_").sum(1), 1.0, atol=1e-4)

    ann = ad.read_h5ad(out_h5)
    assert list(ann.obs_names) == list(query.obs_names)
    assert SLASH in set(ann.obs["scapp_label"].astype(str))
    assert SLASH in list(ann.uns["scapp"]["classes"])
    assert (ann.obs["scapp_label"].astype(str).to_numpy() == df["label"].to_numpy()).all()
    assert (ann.obs["cell_type"] == SLASH).sum() == (with_slash(query).obs["cell_type"] == SLASH).sum()

    rc, out, err = cli(capsys, "markers", run, "--top", "3")
    assert rc == 0, err
    m = pd.read_csv(io.StringIO(out))
    assert (m["class"] == SLASH).sum() == 3


# --------------------------------------------------------------------------- predict


def test_predict_low_gene_overlap_subprocess(trained, query, tmp_path):
    """Most genes renamed (e.g. another species' naming): refused with the overlap, in a real process."""
    a = query.copy()
    names = a.var_names.to_numpy().copy()
    names[200:] = [f"NOTAGENE{i}" for i in range(names.size - 200)]
    a.var_names = pd.Index(names)
    q = write(a, tmp_path / "renamed.h5ad")
    before = sha256(q)
    env = {**os.environ, "SCAPP_RUNS_DIR": str(tmp_path / "runs"), "PYTHONWARNINGS": "ignore"}
    csv = tmp_path / "pred.csv"
    p = subprocess.run([sys.executable, "-m", "scapp", "predict", str(trained["run"]), str(q), "--csv", str(csv)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    error_line(p.returncode, p.stderr, "only 200 of the model's 2,000 genes", "query", "at least 250",
               "gene identifiers")
    assert p.stdout == ""
    assert not csv.exists()
    assert sha256(q) == before


def test_predict_lognorm_query(trained, query, tmp_path, runs_dir, capsys):
    q = write(lognorm(query), tmp_path / "lognorm.h5ad")
    before = sha256(q)
    csv = tmp_path / "pred.csv"
    rc, out, err = cli(capsys, "predict", trained["run"], q, "--csv", csv)
    error_line(rc, err, "query", "not look like raw counts", "log")
    assert out == "" and not csv.exists()
    assert sha256(q) == before


@pytest.mark.parametrize("flag", ["--out", "--csv"])
def test_predict_refuses_to_overwrite_query(flag, trained, query, tmp_path, runs_dir, capsys):
    q = write(query, tmp_path / "query.h5ad")
    before, mtime = sha256(q), q.stat().st_mtime_ns
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / ".." / "query.h5ad"  # the same file, spelled differently
    rc, out, err = cli(capsys, "predict", trained["run"], q, flag, same)
    error_line(rc, err, "output path", "query", "never overwrites")
    assert out == ""
    assert sha256(q) == before and q.stat().st_mtime_ns == mtime
    assert {p.name for p in tmp_path.iterdir()} - {"runs"} == {"query.h5ad", "sub"}


def test_predict_output_is_a_folder(trained, query, tmp_path, runs_dir, capsys):
    q = write(query, tmp_path / "query.h5ad")
    (tmp_path / "results").mkdir()
    rc, out, err = cli(capsys, "predict", trained["run"], q, "--csv", tmp_path / "results")
    error_line(rc, err, "results", "is a folder")
    assert out == "" and list((tmp_path / "results").iterdir()) == []


def test_predict_cuda_without_gpu(trained, query, tmp_path, runs_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    q = write(query, tmp_path / "query.h5ad")
    rc, out, err = cli(capsys, "predict", trained["run"], q, "--device", "cuda", "--csv", tmp_path / "p.csv")
    error_line(rc, err, "no cuda gpu", "--device cpu")
    assert not (tmp_path / "p.csv").exists()


def test_predict_run_folder_missing(query, tmp_path, runs_dir, capsys):
    q = write(query, tmp_path / "query.h5ad")
    rc, out, err = cli(capsys, "predict", tmp_path / "no_such_run", q, "--csv", tmp_path / "p.csv")
    error_line(rc, err, "no run folder", "no_such_run")
    rc, out, err = cli(capsys, "predict", "../etc", q, "--csv", tmp_path / "p.csv")
    error_line(rc, err, "no run folder")
    assert not (tmp_path / "p.csv").exists()


def test_predict_run_without_model(query, tmp_path, runs_dir, capsys):
    """A failed run (e.g. from the bad-input cases above) cannot be used to annotate."""
    from scapp import runs

    run = runs.create_run("logreg")
    runs.write_status(run, "failed", error="something went wrong", has_model=False)
    q = write(query, tmp_path / "query.h5ad")
    rc, out, err = cli(capsys, "predict", run.name, q, "--csv", tmp_path / "p.csv")
    error_line(rc, err, run.name, "no trained model", "failed")
