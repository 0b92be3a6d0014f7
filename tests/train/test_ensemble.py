"""Ensembles (issue 10): weights picked on validation cells, built from finished runs or trained by ``auto``, and
applied to a query through the members' own genes and recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from scapp import runs
from scapp.cli import main
from scapp.models.ensemble import balanced_nll, choose_weights, simplex_grid

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO = ASSETS / "demo_pbmc3k.h5ad"
QUERY = ASSETS / "demo_pbmc4k_query.h5ad"
FAST_HVG = {"n_genes_grid": [500], "C_grid": [1.0]}


# --------------------------------------------------------------------------- the weighting rule


def test_simplex_grid_covers_every_weighting_that_sums_to_one():
    g = simplex_grid(3, 0.1)
    assert g.shape == (66, 3) and np.allclose(g.sum(1), 1) and (g >= 0).all()
    assert len({tuple(np.round(r, 6)) for r in g}) == 66
    assert simplex_grid(1, 0.1).tolist() == [[1.0]]


def _onehot(y, C, right, rng):
    """Confident probabilities: the true class where ``right``, a random wrong class elsewhere."""
    wrong = (y + rng.integers(1, C, size=y.size)) % C
    pick = np.where(right, y, wrong)
    p = np.full((y.size, C), 0.02 / (C - 1))
    p[np.arange(y.size), pick] = 0.98
    return p


def test_a_useless_member_gets_no_weight():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    good = _onehot(y, 4, rng.random(400) < 0.9, rng)
    noise = rng.dirichlet(np.ones(4), 400)
    w, alone = choose_weights([noise, good], y)
    assert w[1] >= 0.9
    assert alone[1]["balanced_nll"] < alone[0]["balanced_nll"]


def test_complementary_members_are_mixed_and_beat_each_alone():
    """Member A is right on classes 0-1, member B on 2-3: the mix is better than either by the rule's own score."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 800)
    a = _onehot(y, 4, y < 2, rng) * 0.5 + 0.125
    b = _onehot(y, 4, y >= 2, rng) * 0.5 + 0.125
    w, alone = choose_weights([a, b], y)
    assert 0.2 <= w[0] <= 0.8
    mixed = balanced_nll(w[0] * a + w[1] * b, y)
    assert mixed < min(r["balanced_nll"] for r in alone)


def test_rare_classes_count_as_much_as_common_ones():
    """Member A is right on the 20 cells of the rare class only, B on the 380 common cells only: plain NLL would pick
    B; the class-balanced score weighs the rare class as one of two classes and does not."""
    y = np.r_[np.zeros(380, int), np.ones(20, int)]
    good_on = lambda mask: np.where(mask[:, None], np.eye(2)[y] * 0.9 + 0.05, 1 - (np.eye(2)[y] * 0.9 + 0.05))  # noqa: E731
    a, b = good_on(y == 1), good_on(y == 0)
    w, _ = choose_weights([a, b], y)
    assert abs(w[0] - 0.5) <= 0.1


def test_no_validation_cells_means_equal_weights():
    w, alone = choose_weights([np.eye(3)[[0]], np.eye(3)[[1]]], np.array([], dtype=int))
    assert np.allclose(w, 0.5) and alone == []


# --------------------------------------------------------------------------- ensembles of finished runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    cfg = root / "hvg.json"
    cfg.write_text(json.dumps(FAST_HVG))
    for name, extra in (("lr", []), ("hvg", ["--model", "logreg_hvg", "--config", str(cfg)])):
        args = ["train", str(DEMO), "--label", "cell_type", "--out", str(root / name), "--quiet", *extra]
        if name == "lr":
            args += ["--model", "logreg"]
        assert main(args) == 0
    assert main(["train", str(DEMO), "--label", "cell_type", "--model", "logreg", "--seed", "1",
                 "--out", str(root / "lr-seed1"), "--quiet"]) == 0
    return root


def test_ensemble_of_two_runs_is_a_complete_run(two_runs, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", str(two_runs / "lr"), str(two_runs / "hvg"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    store = runs.RunStore(out)
    assert store.status()["state"] == "finished" and store.status()["has_model"]
    m = store.metrics()
    assert len(m["members"]) == 2 and np.isclose(sum(m["weights"]), 1)
    assert {mm["model"] for mm in m["members"]} == {"logreg", "logreg_hvg"}
    assert m["test"]["macro_f1"] > 0.7  # two good linear models on PBMC 3k
    # its predictions are the weighted mean of the members' calibrated probabilities, recalibrated
    pred = store.predictions()
    classes = store.classes()
    cols = [f"p_{c}" for c in classes]
    mix = sum(w * runs.RunStore(two_runs / r).predictions()[cols].to_numpy()
              for w, r in zip(m["weights"], ("lr", "hvg")))
    T = store.temperature()
    expect = np.exp(np.log(np.clip(mix, 1e-12, 1)) / T)
    expect /= expect.sum(1, keepdims=True)
    assert np.allclose(pred[cols].to_numpy(), expect, atol=1e-5)
    assert store.confusion().shape == (len(classes), len(classes))
    # members are copied in: the ensemble keeps working when an original run is deleted
    assert sorted(s.id for s in store.members()) == ["hvg", "lr"]
    assert sorted(store.config()["model_config"]["member_runs"]) == ["hvg", "lr"]


def test_an_ensemble_annotates_a_query_through_its_members(two_runs, tmp_path):
    from scapp.annotate import annotate, load_run

    out = tmp_path / "ens"
    copy = tmp_path / "lr-copy"
    shutil.copytree(two_runs / "lr", copy)
    assert main(["ensemble", str(copy), str(two_runs / "hvg"), "--out", str(out), "--quiet"]) == 0
    shutil.rmtree(copy)  # the original member is gone; the ensemble holds its own copy
    q = ad.read_h5ad(QUERY)
    ens = load_run(out)
    res = annotate(ens, q, explain=False)
    w = runs.RunStore(out).metrics()["weights"]
    parts = [annotate(load_run(runs.RunStore(out).existing_member(rid).path), q, explain=False).proba
             for rid in ens.model.config.member_runs]
    mix = sum(wi * p[res.proba.columns].to_numpy() for wi, p in zip(w, parts))
    expect = np.exp(np.log(np.clip(mix, 1e-12, 1)) / ens.temperature)
    expect /= expect.sum(1, keepdims=True)
    assert np.allclose(res.proba.to_numpy(), expect, atol=1e-4)
    csv = tmp_path / "q.csv"
    assert main(["predict", str(out), str(QUERY), "--csv", str(csv), "--quiet"]) == 0
    assert csv.read_text().splitlines()[0].startswith("cell_id,label,confidence,unassigned,p_")


def test_runs_on_another_split_or_file_are_refused(two_runs, tmp_path, capsys):
    assert main(["ensemble", str(two_runs / "lr"), str(two_runs / "lr-seed1"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scapp: error:") and "split" in err
    assert main(["ensemble", str(two_runs / "lr"), "--out", str(tmp_path / "b")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["ensemble", str(two_runs / "lr"), str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()  # nothing made for a run that is not there
    other = tmp_path / "small.h5ad"
    a = ad.read_h5ad(DEMO)
    a[:2000].copy().write_h5ad(other)
    assert main(["train", str(other), "--label", "cell_type", "--model", "logreg", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    assert main(["ensemble", str(two_runs / "lr"), str(tmp_path / "o"), "--out", str(tmp_path / "d")]) == 2
    assert "different files" in capsys.readouterr().err


def test_ensemble_is_not_a_train_choice_but_auto_is():
    from scapp.cli import build_parser
    from scapp.models.registry import REGISTRY

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "model")
    assert "auto" in train.choices and "ensemble" not in train.choices
    assert not REGISTRY["ensemble"].trainable and REGISTRY["auto"].capabilities.combines


def test_markers_of_an_ensemble_point_to_its_members(two_runs, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", str(two_runs / "lr"), str(two_runs / "hvg"), "--out", str(out), "--quiet"]) == 0
    assert main(["markers", str(out)]) == 2
    assert "members" in capsys.readouterr().err


# --------------------------------------------------------------------------- auto: train the members, then combine


def test_auto_trains_its_members_on_one_split_and_combines_them(tmp_path):
    cfg = tmp_path / "auto.json"
    cfg.write_text(json.dumps({"members": [{"model": "logreg", "preset": "fast"},
                                           {"model": "logreg_hvg", "options": FAST_HVG}]}))
    out = tmp_path / "auto"
    assert main(["train", str(DEMO), "--label", "cell_type", "--model", "auto", "--config", str(cfg),
                 "--out", str(out), "--quiet"]) == 0
    store = runs.RunStore(out)
    st = store.status()
    assert st["state"] == "finished" and st["progress"] == 1.0
    members = store.members()
    assert [m.id for m in members] == ["1-logreg", "2-logreg_hvg"]
    assert all(m.status()["state"] == "finished" for m in members)
    splits = [m.predictions()["split"].tolist() for m in members]
    assert splits[0] == splits[1] == store.predictions()["split"].tolist()
    met = store.metrics()
    assert [mm["model"] for mm in met["members"]] == ["logreg", "logreg_hvg"]
    assert store.config()["model"] == "auto" and store.config()["model_config"]["member_runs"] == [m.id for m in members]
    from scapp.annotate import annotate, load_run

    res = annotate(load_run(out), ad.read_h5ad(QUERY), explain=False)
    assert res.proba.shape[1] == len(store.classes())


def test_auto_stopped_before_any_member_finished_saves_nothing(tmp_path):
    from scapp.errors import TrainingCancelled
    from scapp.train.engine import TrainRequest, run_training

    run = tmp_path / "auto"
    run.mkdir()
    runs.request_stop(run)
    req = TrainRequest(data=str(DEMO), label="cell_type", model="auto",
                       model_config={"members": [{"model": "logreg"}]})
    with pytest.raises(TrainingCancelled):
        run_training(req, run)


def test_retraining_an_auto_run_gives_each_member_its_own_preprocessing(tmp_path):
    """An ensemble's stored preprocessing is its own (raw counts over its members' genes); a retrain built from its
    config must not hand that to the members (logreg_hvg would have fitted raw counts)."""
    cfg = tmp_path / "auto.json"
    cfg.write_text(json.dumps({"members": [{"model": "logreg", "preset": "fast"},
                                           {"model": "logreg_hvg", "options": FAST_HVG}]}))
    out = tmp_path / "auto"
    assert main(["train", str(DEMO), "--label", "cell_type", "--model", "auto", "--config", str(cfg),
                 "--out", str(out), "--quiet"]) == 0
    assert runs.RunStore(out).config()["preprocess"]["output"] == "counts"  # the ensemble's own input
    q = ad.read_h5ad(QUERY)
    cut = tmp_path / "cut.h5ad"
    q[:, q.var_names[:300]].copy().write_h5ad(cut)
    again = tmp_path / "again"
    assert main(["retrain", str(out), "--genes-from", str(cut), "--out", str(again), "--quiet"]) == 0
    members = runs.RunStore(again).members()
    assert [m.config()["preprocess"]["output"] for m in members] == ["log1p", "log1p"]
    assert members[0].config()["preprocess"]["scale"]  # logreg's own recipe (z-scores) is kept
    assert main(["predict", str(again), str(cut), "--csv", str(tmp_path / "p.csv"), "--quiet"]) == 0
