"""``scapp predict RUN QUERY --out F --denoised`` (issue 12): the annotated h5ad with the denoised layers of a run
whose method denoises, equal to ``scapp denoise --genes query``; clear refusals otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = FIXTURES / "pbmc_small.h5ad"
TINY = {"encoder_widths": [32, 16], "latent": 8, "max_epochs": 3, "early_stopping_patience": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from scapp.cli import main

    root = tmp_path_factory.mktemp("predict-denoised")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "likelihood": "zinb"}))
    for name, label in (("lab", ["--label", "cell_type"]), ("unlab", [])):
        assert main(["train", str(DATA), "--model", "zipo", *label, "--config", str(cfg), "--out",
                     str(root / name), "--device", "cpu", "--quiet"]) == 0
    q = ad.read_h5ad(DATA)[:, ::-1][:, :300].copy()  # a query with 300 of the 400 genes, in another order
    q.write_h5ad(root / "query.h5ad")
    return root


def test_predict_denoised_writes_both_layers_equal_to_scapp_denoise(runs, tmp_path, capsys):
    from scapp.cli import main

    q = runs / "query.h5ad"
    out, ref = tmp_path / "annotated.h5ad", tmp_path / "denoised.h5ad"
    assert main(["predict", str(runs / "lab"), str(q), "--out", str(out), "--denoised",
                 "--quiet"]) == 0
    assert main(["denoise", str(runs / "lab"), str(q), "--out", str(ref), "--genes", "query"]) == 0
    got, want, query = ad.read_h5ad(out), ad.read_h5ad(ref), ad.read_h5ad(q)
    assert got.shape == query.shape == (291, 300)
    assert "scapp_label" in got.obs and "scapp_library_predicted" in got.obs
    for layer in ("scapp_denoised", "scapp_denoised_nonzero"):  # ZINB: zero-inflated too
        assert got.layers[layer].shape == (291, 300)
        np.testing.assert_array_equal(got.layers[layer], want.layers[layer])
    assert np.isnan(got.layers["scapp_denoised"]).sum() == 0  # every query gene is one of the run's
    assert list(got.obsm) == ["X_scapp_zipo"]  # the latent once, not twice
    plain = tmp_path / "plain.h5ad"
    assert main(["predict", str(runs / "lab"), str(q), "--out", str(plain), "--quiet"]) == 0
    assert not ad.read_h5ad(plain).layers  # without the flag: as before


def test_predict_denoised_refusals(runs, tmp_path, capsys):
    from scapp.cli import main

    q = str(runs / "query.h5ad")
    assert main(["predict", str(runs / "lab"), q, "--denoised", "--quiet"]) != 0
    assert "--out" in capsys.readouterr().err
    logreg = tmp_path / "logreg"
    shutil.copytree(FIXTURES / "run_v1_logreg", logreg)
    assert main(["predict", str(logreg), str(DATA), "--out", str(tmp_path / "x.h5ad"), "--denoised"]) != 0
    err = capsys.readouterr().err
    assert "does not denoise" in err and "zipo" in err
    assert main(["predict", str(runs / "unlab"), q, "--out", str(tmp_path / "y.h5ad")]) != 0
    err = capsys.readouterr().err
    assert "trained without labels" in err and "scapp denoise" in err  # what it can do instead
    assert not (tmp_path / "x.h5ad").exists() and not (tmp_path / "y.h5ad").exists()
