"""Queries that share few genes with a model (issue 10): the refusal says how to go on, ``scapp retrain`` trains
the same method and settings on the shared genes, and the new run annotates the query with all of its genes.

Built from the demo assets: a logreg_hvg run (one grid point, seconds) on 800 PBMC 3k cells, and PBMC 4k query
cells cut to some of the model's genes. The CLI runs in-process (``scapp.cli.main``), as a user would call it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scapp import cli, runs
from scapp.data.align import align_genes, shared_genes
from scapp.errors import InputError
from scapp.train.engine import TrainRequest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
N_CUT = 300  # genes of the model the cut query keeps: 15 % of 2,000, below the 50 % annotation needs


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, assets):
    d = tmp_path_factory.mktemp("retrain")
    rng = np.random.default_rng(0)
    ref = ad.read_h5ad(assets / "demo_pbmc3k.h5ad")
    ref = ref[np.sort(rng.choice(ref.n_obs, 800, replace=False))].copy()
    ref.write_h5ad(d / "ref.h5ad")
    q = ad.read_h5ad(assets / "demo_pbmc4k_query.h5ad")
    q = q[np.sort(rng.choice(q.n_obs, 400, replace=False))].copy()
    in_model = [g for g in q.var_names if g in set(ref.var_names)]
    cut = q[:, [in_model[i] for i in sorted(rng.choice(len(in_model), N_CUT, replace=False))]].copy()
    # a few names in another case: matched as annotation matches them, trained under the training file's name
    cut.var_names = [g.lower() if i % 50 == 0 else g for i, g in enumerate(cut.var_names)]
    cut.write_h5ad(d / "cut.h5ad")
    part = q[:, in_model[: int(0.7 * len(ref.var_names))]].copy()  # 1,400 of the 2,000: 70 %
    part.write_h5ad(d / "part.h5ad")
    (d / "cfg.json").write_text(json.dumps({"n_genes_grid": [500], "C_grid": [1.0]}))
    return d


def _train(files: Path, data: Path, out: Path) -> Path:
    rc = cli.main(["train", str(data), "--label", "cell_type", "--model", "logreg_hvg", "--config",
                   str(files / "cfg.json"), "--out", str(out), "--device", "cpu", "--seed", "3", "--threshold", "0.4",
                   "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def run(files):
    return _train(files, files / "ref.h5ad", files / "run")


@pytest.fixture(scope="module")
def retrained(files, run):
    out = files / "retrained"
    rc = cli.main(["retrain", str(run), "--genes-from", str(files / "cut.h5ad"), "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_predict_refuses_few_shared_genes_and_says_how_to_retrain(files, run, capsys):
    rc = cli.main(["predict", str(run), str(files / "cut.h5ad"), "--csv", str(files / "never.csv"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("scapp: error: ")
    assert f"Only {N_CUT} of the model's 2,000 genes (15%) are in the query" in err
    assert err.endswith(f"Retrain the same method and settings on the {N_CUT} shared genes: "
                        f"python -m scapp retrain {run.resolve()} --genes-from {(files / 'cut.h5ad').resolve()}")
    assert not (files / "never.csv").exists()


def test_retrain_trains_on_exactly_the_shared_genes_and_records_the_parent(files, run, retrained, capsys):
    store, parent = runs.RunStore(retrained), runs.RunStore(run)
    assert store.status()["state"] == "finished" and store.has_weights
    ref_genes = parent.genes()
    cut = ad.read_h5ad(files / "cut.h5ad")
    upper = {g.upper() for g in cut.var_names}
    expected = [g for g in ref_genes if g.upper() in upper]  # the training file's names and order
    assert len(expected) == N_CUT and store.genes() == expected
    info = store.data_info()
    assert info["parent_run"] == str(run.resolve()) and info["genes_restricted_to"] == N_CUT
    assert info["n_genes"] == 2000  # the training file is the same file
    assert any(f"Trained on the {N_CUT} genes shared with cut.h5ad (of 2,000 in the training file), retrained "
               f"from run {run.name}" in n for n in info["notes"])
    cfg, old = store.config(), parent.config()
    assert cfg["parent"] == str(run.resolve()) and cfg["genes"] == expected and cfg["genes_from"] == "cut.h5ad"
    for k in ("model", "model_config", "preprocess", "seed", "label", "layer", "valid_frac", "test_frac",
              "threshold", "data", "protein_key"):
        assert cfg[k] == old[k], k
    table = runs.list_runs(files).set_index("run_id")
    assert table.loc["retrained", "parent"] == "run" and table.loc["run", "parent"] is None


def test_the_retrained_run_annotates_the_query_with_every_gene(files, retrained, capsys):
    rc = cli.main(["predict", str(retrained), str(files / "cut.h5ad"), "--csv", str(files / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"{N_CUT} of the model's {N_CUT} genes found in the query (100.0%)" in err
    assert "filled with zeros" not in err
    df = pd.read_csv(files / "p.csv")
    assert len(df) == 400 and df["label"].notna().all()


def test_retrain_refuses_when_the_training_file_has_moved(files, capsys):
    data = files / "ref_moved.h5ad"
    shutil.copy(files / "ref.h5ad", data)
    run = _train(files, data, files / "run_moved")
    data.rename(files / "elsewhere.h5ad")
    capsys.readouterr()
    out = files / "never_retrained"
    rc = cli.main(["retrain", str(run), "--genes-from", str(files / "cut.h5ad"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"scapp: error: Retraining needs the run's training file, which was at {data.resolve()}")
    assert not out.exists()
    # and predict's refusal says so instead of offering a command that would fail
    rc = cli.main(["predict", str(run), str(files / "cut.h5ad"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Retraining needs the run's training file" in err and "scapp retrain" not in err


def test_retrain_refuses_a_query_with_too_few_genes_to_train_on(files, run, capsys):
    q = ad.read_h5ad(files / "cut.h5ad")[:, :30].copy()
    q.write_h5ad(files / "tiny.h5ad")
    rc = cli.main(["retrain", str(run), "--genes-from", str(files / "tiny.h5ad"), "--out", str(files / "no"),
                   "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "shares only 30" in err and "too few to train on" in err
    assert not (files / "no").exists()
    rc = cli.main(["predict", str(run), str(files / "tiny.h5ad"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "too few to train on" in err and "scapp retrain" not in err


def test_summary_says_how_many_genes_are_filled_with_zeros(files, run, capsys):
    rc = cli.main(["predict", str(run), str(files / "part.h5ad"), "--csv", str(files / "part.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "1,400 of the model's 2,000 genes found in the query (70.0%)" in err
    assert "the other 600 genes are filled with zeros" in err
    var = pd.DataFrame(index=[f"G{i}" for i in range(99)])
    _, rep = align_genes(np.zeros((0, 99)), var, [f"G{i}" for i in range(100)], min_shared=10)
    assert rep.summary().endswith("the other 1 gene is filled with zeros for every query cell")
    _, rep = align_genes(np.zeros((0, 99)), var, [f"G{i}" for i in range(99)], min_shared=10)
    assert "zeros" not in rep.summary()


def test_shared_genes_match_as_annotation_does_and_keep_the_model_spelling():
    var = pd.DataFrame({"gene_symbols": ["cd3e", "MS4A1", "X", "Y"]},
                       index=["ENSG00000198851.9", "ENSG00000156738.17", "ENSG1", "ENSG2"])
    assert shared_genes(var, ["ENSG00000198851", "ENSG00000156738", "ENSG00000000003"]) == \
        ["ENSG00000198851", "ENSG00000156738"]
    assert shared_genes(var, ["MS4A1", "CD3E", "LYZ"]) == ["MS4A1", "CD3E"]


def test_engine_refuses_a_gene_list_it_cannot_find(files, tmp_path):
    from scapp.train.engine import run_training

    req = TrainRequest(data=str(files / "ref.h5ad"), label="cell_type", model="logreg_hvg",
                       model_config={"n_genes_grid": [500], "C_grid": [1.0]}, genes=["LYZ", "NOT_A_GENE"])
    with pytest.raises(InputError, match="Only 1 of the 2 genes to train on is in the training file"):
        run_training(req, runs.create_run("logreg_hvg", out=tmp_path / "r"))


def test_a_run_from_before_retraining_existed_still_loads_and_annotates():
    """tests/fixtures/run_v1_logreg: its config has no genes, genes_from or parent."""
    from scapp.annotate import annotate, load_run
    from scapp.data import load_dataset
    from scapp.retrain import request_of, retrain_offer

    store = runs.RunStore(FIXTURES / "run_v1_logreg")
    cfg = store.config()
    assert not {"genes", "genes_from", "parent"} & set(cfg)
    req = request_of(cfg)
    assert req.genes is None and req.parent is None and req.model == "logreg" and req.label == "cell_type"
    adata, _ = load_dataset(FIXTURES / "pbmc_small.h5ad")
    res = annotate(load_run(store.path), adata, explain=False)
    assert len(res.cell_ids) == adata.n_obs and res.overlap.frac_shared == 1.0
    assert runs.list_runs(FIXTURES).set_index("run_id").loc["run_v1_logreg", "parent"] is None
    offer = retrain_offer(store.path, adata)
    if not Path(cfg["data"]).exists():  # written on another machine: its training file is not here
        assert not offer.available and "Retraining needs the run's training file" in offer.reason
