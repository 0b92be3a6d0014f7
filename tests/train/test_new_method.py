"""A new method is one file plus one registry entry, and the engine hands it what it declares it needs.

``tests/models/toy_count_ae.py`` is a tiny Poisson autoencoder standing in for ZiPo/SSL: it asks for raw
counts and learns from unlabelled cells. Registered here (the "one registry entry"), it trains through
``scapp train``, gets a run folder like every method, and ``scapp denoise`` applies it — with no other
file of scapp touched.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from scapp import runs
from scapp.cli import main
from scapp.models import registry
from scapp.models.registry import Capabilities, ModelSpec

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.fixture
def toy_registered():
    spec = ModelSpec(name="toy_ae", cls_path="toy_count_ae:ToyCountAE", title="Toy count autoencoder",
                     paper="test only", about="Tests the data path of methods that need no labels.",
                     capabilities=Capabilities(classifies=False, embeds=True, denoises=True, needs_raw_counts=True,
                                               needs_labels=False))
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    registry.register(spec)
    yield spec
    registry.REGISTRY.pop("toy_ae", None)
    sys.path.remove(str(Path(__file__).resolve().parents[1] / "models"))


@pytest.fixture
def half_labelled(tmp_path):
    a = ad.read_h5ad(ASSETS / "demo_pbmc3k.h5ad")
    a = a[np.random.default_rng(0).choice(a.n_obs, 500, replace=False)].copy()
    lab = a.obs["cell_type"].astype(object).to_numpy()
    lab[::2] = None  # half the cells have no label
    a.obs["cell_type"] = lab
    path = tmp_path / "half.h5ad"
    a.write_h5ad(path)
    return path, a


def test_toy_method_trains_on_raw_counts_and_unlabelled_cells(toy_registered, half_labelled, tmp_path, capsys):
    from toy_count_ae import ToyCountAE

    path, a = half_labelled
    out = tmp_path / "run"
    assert main(["train", str(path), "--model", "toy_ae", "--label", "cell_type", "--out", str(out), "--quiet"]) == 0
    seen = ToyCountAE.seen
    assert seen["integer"] and seen["max"] > 20  # raw counts, not log1p-normalized values
    assert seen["unlabelled"] > 0  # cells without a label trained too
    store = runs.RunStore(out)
    assert store.status()["state"] == "finished"
    assert store.embedding() is not None and store.embedding().shape[0] == a.n_obs
    pred = store.predictions()
    assert pred["true"].isna().sum() == (a.obs["cell_type"].isna()).sum()
    assert "pred" not in pred.columns  # nothing classified, nothing scored
    assert len(store.history()) >= 1
    # apply it: denoised counts as a layer of a copy
    dn = tmp_path / "denoised.h5ad"
    assert main(["denoise", str(out), str(path), "--out", str(dn)]) == 0
    d = ad.read_h5ad(dn)
    assert d.layers["scapp_denoised"].shape == d.shape and (d.layers["scapp_denoised"] > 0).all()
    assert d.obsm["X_scapp_toy_ae"].shape == (a.n_obs, 4)


def test_toy_method_needs_no_label_column(toy_registered, half_labelled, tmp_path):
    path, _ = half_labelled
    out = tmp_path / "run"
    assert main(["train", str(path), "--model", "toy_ae", "--out", str(out), "--quiet"]) == 0
    assert runs.RunStore(out).status()["state"] == "finished"


def test_classifier_still_needs_a_label(half_labelled, tmp_path, capsys):
    path, _ = half_labelled
    assert main(["train", str(path), "--model", "logreg", "--out", str(tmp_path / "r")]) == 2
    assert "--label is required" in capsys.readouterr().err


def test_denoise_refuses_a_run_that_does_not_denoise(tmp_path, capsys):
    fixture = Path(__file__).resolve().parents[1] / "fixtures"
    code = main(["denoise", str(fixture / "run_v1_logreg"), str(fixture / "pbmc_small.h5ad"),
                 "--out", str(tmp_path / "x.h5ad")])
    assert code == 2
    assert "does not denoise" in capsys.readouterr().err


def test_new_method_touches_only_its_file_and_the_registry():
    """Every place that lists methods reads the registry: the CLI's choices, the Model page, Explore."""
    import scapp.cli as cli

    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "model")
    assert tuple(train.choices) == registry.names()
    root = Path(__file__).resolve().parents[2]
    for f in [*root.glob("pages/*.py"), root / "app.py", *(root / "scapp").rglob("*.py")]:
        if f.name == "registry.py" or "models" in f.parts and f.stem in ("sims", "hydra", "logreg"):
            continue
        text = f.read_text()
        for name in ('"sims"', '"hydra"', '"logreg"'):
            assert f"== {name}" not in text and f"{name}:" not in text, f"{f} branches on {name}"
