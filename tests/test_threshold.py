"""The unknown-cell threshold chosen before training is the default wherever the run is applied."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from scapp.annotate import annotate, load_run
from scapp.cli import main

SMALL = Path(__file__).resolve().parent / "fixtures" / "pbmc_small.h5ad"


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("thr") / "run"
    assert main(["train", str(SMALL), "--label", "cell_type", "--model", "logreg", "--threshold", "0.97",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_annotate_defaults_to_the_runs_threshold(strict_run):
    run = load_run(strict_run)
    assert run.threshold == pytest.approx(0.97)
    ann = annotate(run, ad.read_h5ad(SMALL), explain=False)
    assert ann.threshold == pytest.approx(0.97)
    assert (ann.unassigned() == (ann.confidence < 0.97)).all()
    assert annotate(run, ad.read_h5ad(SMALL), threshold=0.2, explain=False).threshold == 0.2


def test_cli_predict_defaults_to_the_runs_threshold(strict_run, tmp_path):
    csv = tmp_path / "p.csv"
    assert main(["predict", str(strict_run), str(SMALL), "--csv", str(csv), "--quiet"]) == 0
    df = pd.read_csv(csv)
    assert (df["unassigned"] == (df["confidence"] < 0.97)).all()
    assert df["unassigned"].any() and not (df["confidence"] < 0.5).all()  # 0.97 applied, not 0.5
    csv2 = tmp_path / "q.csv"
    assert main(["predict", str(strict_run), str(SMALL), "--csv", str(csv2), "--threshold", "0", "--quiet"]) == 0
    assert not pd.read_csv(csv2)["unassigned"].any()


def test_runs_without_a_recorded_threshold_use_the_default():
    run = load_run(Path(__file__).resolve().parent / "fixtures" / "run_v1_logreg")
    assert run.threshold == pytest.approx(run.config.get("threshold", 0.5))
