"""Self-supervised pretraining (issue 13): the losses against hand computations, the masking, and the pretrain →
fine-tune round trip through the CLI on the demo data (its parent recorded, its encoder really loaded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scapp.models.base import FitData
from scapp.models.ssl import (
    SSLConfig,
    SSLModel,
    masked_mse,
    masked_nb,
    nt_xent,
    random_mask,
    tabnet_reconstruction_loss,
    vicreg_loss,
)
from scapp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


def _counts(n: int = 64, g: int = 40, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(n, g, generator=gen) * 4, generator=gen)


# -- the loss is on masked positions only -------------------------------------------------------------------
def test_masked_losses_ignore_unmasked_positions():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(8, 30, generator=gen)
    recon = torch.rand(8, 30, generator=gen)
    mask = random_mask((8, 30), 0.5, generator=gen)
    base = masked_mse(recon, target, mask)
    assert torch.isclose(base, ((recon - target)[mask] ** 2).mean())
    changed = torch.where(mask, recon, recon + 100.0)  # only unmasked reconstructions move
    assert torch.equal(masked_mse(changed, target, mask), base)
    assert not torch.isclose(masked_mse(torch.where(mask, recon + 1.0, recon), target, mask), base)
    x = torch.poisson(target * 5)
    log_theta = torch.zeros(30)
    nb = masked_nb(x, recon, log_theta, mask)
    assert torch.equal(masked_nb(x, torch.where(mask, recon, recon - 50.0), log_theta, mask), nb)


def test_model_loss_unchanged_when_unmasked_reconstructions_change():
    """Through the model (MSE): whatever the decoder outputs at unmasked genes, the pretraining loss is the same.
    (With ``loss="nb"`` the mean is ``library · softmax``, so every output moves every mean; its loss function
    ignores unmasked genes, tested above.)"""
    torch.manual_seed(0)
    model = SSLModel(SSLConfig(encoder_widths=(32, 16), mask_rate=0.5), n_features=40, classes=[])
    model._pretext_module().eval()
    x = _counts()
    mask = random_mask(tuple(x.shape), 0.5, generator=torch.Generator().manual_seed(5))  # the model's draw
    with torch.no_grad():
        base, _ = model.pretext_loss(x, torch.Generator().manual_seed(5))
        handle = model.decoder.register_forward_hook(lambda m, i, out: torch.where(mask, out, out + 37.0))
        try:
            moved, _ = model.pretext_loss(x, torch.Generator().manual_seed(5))
        finally:
            handle.remove()
    assert torch.allclose(moved, base, rtol=0, atol=1e-5), (float(moved), float(base))


@pytest.mark.parametrize("rate", [0.15, 0.5, 0.75])
def test_mask_rate_is_honoured_and_masked_genes_are_zero(rate):
    m = random_mask((400, 500), rate, generator=torch.Generator().manual_seed(0))
    assert abs(m.float().mean().item() - rate) < 0.005
    model = SSLModel(SSLConfig(encoder_widths=(32, 16), mask_rate=rate), n_features=40, classes=[])
    seen = {}
    h = model.encoder.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0].clone()))
    x = _counts(256) + 1.0  # no zero counts: every zero the encoder sees is a masked gene
    with torch.no_grad():
        model.pretext_loss(x, torch.Generator().manual_seed(3))
    h.remove()
    expected = random_mask(tuple(x.shape), rate, generator=torch.Generator().manual_seed(3))
    assert torch.equal(seen["x"] == 0, expected)
    assert abs((seen["x"] == 0).float().mean().item() - rate) < 0.02


# -- the contrastive losses against hand computations ---------------------------------------------------------
def test_vicreg_matches_a_hand_computation():
    z1 = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [2.0, 1.0, 0.0], [1.0, 3.0, 1.0]])
    z2 = np.array([[1.0, 1.0, 2.0], [0.5, 1.0, 0.0], [2.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    n, d = z1.shape
    inv = np.mean((z1 - z2) ** 2)

    def var_term(z):
        std = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
        return np.mean(np.maximum(0.0, 1.0 - std))

    def cov_term(z):
        zc = z - z.mean(0)
        c = zc.T @ zc / (n - 1)
        return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / d

    var = (var_term(z1) + var_term(z2)) / 2
    cov = cov_term(z1) + cov_term(z2)
    expected = 25 * inv + 25 * var + 1 * cov
    loss, parts = vicreg_loss(torch.tensor(z1), torch.tensor(z2))
    assert math.isclose(float(parts["invariance"]), inv, rel_tol=1e-9)
    assert math.isclose(float(parts["variance"]), var, rel_tol=1e-9)
    assert math.isclose(float(parts["covariance"]), cov, rel_tol=1e-9)
    assert math.isclose(float(loss), expected, rel_tol=1e-9)
    # weights are honoured
    loss2, _ = vicreg_loss(torch.tensor(z1), torch.tensor(z2), (1.0, 0.0, 0.0))
    assert math.isclose(float(loss2), inv, rel_tol=1e-9)


def test_nt_xent_matches_a_hand_computation():
    z1 = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.5]])
    z2 = np.array([[0.9, 0.1], [0.0, 1.0], [-0.8, -0.2]])
    t = 0.5
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    losses = []
    for i in range(n2):
        j = (i + 3) % 6  # the other view of the same cell
        sims = [np.exp(z[i] @ z[k] / t) for k in range(n2) if k != i]
        losses.append(-np.log(np.exp(z[i] @ z[j] / t) / np.sum(sims)))
    assert math.isclose(float(nt_xent(torch.tensor(z1), torch.tensor(z2), t)), np.mean(losses), rel_tol=1e-9)


def test_tabnet_reconstruction_loss_is_safe_on_constant_genes():
    x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, 2.0], [0.0, 2.0, 2.0]])  # genes 0 and 2 constant
    obf = torch.ones_like(x)
    recon = x + 0.1
    loss = tabnet_reconstruction_loss(recon, x, obf, var_floor=0.1)
    var1 = x[:, 1].var()
    floor = 0.1 * (var1 / 3)
    expected = (0.01 / floor + 0.01 / var1 + 0.01 / floor) / 3
    assert torch.isfinite(loss) and math.isclose(float(loss), float(expected), rel_tol=1e-5)
    assert float(tabnet_reconstruction_loss(x, x, obf)) == 0.0


# -- fitting ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mae", "vicreg", "simclr"])
def test_pretraining_lowers_its_held_out_loss(method):
    from scapp.data.demo import synthetic

    a = synthetic(300, 120, 4, seed=1)
    X = a.X.tocsr()
    cfg = SSLConfig(method=method, encoder_widths=(64, 32), max_epochs=6, batch_size=64)
    model = SSLModel(cfg, n_features=120, classes=[])
    events: list[dict] = []
    model.fit(FitData(X[:240], np.full(240, -1)), FitData(X[240:], np.full(60, -1)), Trainer(events.append))
    hist = [e for e in events if "valid_loss" in e]
    assert len(hist) == 6 and hist[-1]["lr"] == pytest.approx(1e-3 * 0.9**2)  # step decay ×0.9 every 2 epochs
    assert min(e["valid_loss"] for e in hist[1:]) < hist[0]["valid_loss"]
    assert model.embed(X).shape == (300, 32)


def test_warm_start_loads_the_encoder_exactly_and_only_an_mlp_encoder():
    from scapp.errors import ConfigError
    from scapp.models.ssl import TabNetPretrainConfig, TabNetPretrainer

    pre = SSLModel(SSLConfig(encoder_widths=(32, 16), seed=1), n_features=40, classes=[])
    clf = SSLModel(SSLConfig(encoder_widths=(32, 16), seed=2), n_features=40, classes=["a", "b"])
    state = pre.state_dict()
    assert not all(np.array_equal(v, state[k]) for k, v in clf.state_dict().items()
                   if k.startswith("encoder."))
    info = clf.warm_start(state)
    assert info["tensors"] == len([k for k in state if k.startswith("encoder.")])
    for k, v in clf.state_dict().items():
        if k.startswith("encoder."):
            assert np.array_equal(v, state[k]), k
    with pytest.raises(ConfigError, match="does not fit"):
        SSLModel(SSLConfig(encoder_widths=(64, 16)), n_features=40, classes=["a", "b"]).warm_start(state)
    tab = TabNetPretrainer(TabNetPretrainConfig(n_d=8, n_a=8), n_features=40)
    with pytest.raises(ConfigError, match="no MLP encoder"):
        clf.warm_start(tab.state_dict())


# -- pretrain → fine-tune through the CLI, on the demo -------------------------------------------------------------
@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Pretrain (fast network, 3 epochs) on the demo and the demo query; fine-tune on the demo; train the same
    network from scratch; and fine-tune once with a learning rate of 0 (the encoder must then be the pretrained
    one, exactly)."""
    from scapp.cli import main
    from scapp.data.demo import demo_path, demo_query_path

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ssl-runs")
    pre, ft, frozen, scratch = (root / n for n in ("pre", "ft", "frozen", "scratch"))
    assert main(["pretrain", str(demo_path()), str(demo_query_path()), "--out", str(pre), "--preset", "fast",
                 "--epochs", "3", "--device", "cpu", "--quiet"]) == 0
    common = ["train", str(demo_path()), "--label", "cell_type", "--model", "ssl", "--device", "cpu", "--quiet"]
    assert main([*common, "--from", str(pre), "--out", str(ft), "--epochs", "15"]) == 0
    cfg0 = root / "lr0.json"
    cfg0.write_text(json.dumps({"lr": 0.0}))
    assert main([*common, "--from", str(pre), "--out", str(frozen), "--epochs", "1", "--config", str(cfg0)]) == 0
    fast = root / "fast.json"
    fast.write_text(json.dumps({"encoder_widths": [256, 128, 64]}))
    assert main([*common, "--out", str(scratch), "--epochs", "15", "--config", str(fast)]) == 0
    return pre, ft, frozen, scratch


def test_pretraining_run_is_a_run_of_its_own(round_trip):
    from scapp import runs

    pre, *_ = round_trip
    store = runs.RunStore(pre)
    assert store.status()["state"] == "finished" and store.has_weights
    cfg = store.config()
    assert cfg["kind"] == "pretraining" and cfg["method"] == "mae" and len(cfg["data_files"]) == 2
    assert cfg["model_config"]["mask_rate"] == 0.5 and cfg["architecture"]["encoder_widths"] == [256, 128, 64]
    m = store.metrics()
    info = store.data_info()
    assert [f["n_cells"] for f in info["files"]] == [2638, 1500]
    assert m["n_train"] + m["n_valid"] == 2638 + 1500 and m["valid_loss"] > 0 and m["cells_per_s"] > 0
    emb = store.embedding()
    pred = store.predictions()
    assert emb.shape == (len(pred), 64) and set(pred["source"]) == {"demo_pbmc3k.h5ad", "demo_pbmc4k_query.h5ad"}
    assert len(store.epochs()) == 3
    listed = runs.list_runs(pre.parent).set_index("run_id")
    assert listed.loc["pre", "model"] == "ssl" and listed.loc["pre", "kind"] == "pretraining (mae)"
    assert listed.loc["pre", "dataset"] == "demo_pbmc3k.h5ad + 1 more"
    assert listed.loc["ft", "kind"] == "fine-tune" and listed.loc["scratch", "kind"] == "training"


def test_fine_tune_records_its_parent_and_beats_the_majority_class(round_trip):
    from scapp import runs

    pre, ft, _, scratch = round_trip
    store = runs.RunStore(ft)
    cfg, info, met = store.config(), store.data_info(), store.metrics()
    assert cfg["from_run"] == str(pre) and cfg["parent"] == str(pre) and info["parent_run"] == str(pre)
    assert runs.list_runs(ft.parent).set_index("run_id").loc["ft", "parent"] == "pre"
    assert met["fit_info"]["warm_start"]["run"] == "pre" and met["fit_info"]["finetune"]["from_pretrained"]
    assert cfg["model_config"]["encoder_widths"] == [256, 128, 64]  # the pretraining run's network
    assert store.genes() == runs.RunStore(pre).genes()
    pred = store.predictions()
    test = pred[pred["split"] == "test"]
    majority = pred.loc[pred["split"] == "train", "true"].value_counts().idxmax()
    acc, base = (test["pred"] == test["true"]).mean(), (test["true"] == majority).mean()
    assert acc > base + 0.2, (acc, base)
    assert met["test"]["macro_f1"] > 0.5
    assert runs.RunStore(scratch).metrics()["fit_info"]["finetune"]["from_pretrained"] is False
    assert runs.RunStore(scratch).config()["parent"] is None


def test_fine_tune_really_loads_the_pretrained_encoder(round_trip):
    """At learning rate 0 a fine-tune keeps the encoder it started from: it must equal the pretraining run's,
    tensor for tensor; the run trained from scratch has another."""
    from scapp import runs

    pre, _, frozen, scratch = round_trip
    p = runs.read_arrays(runs.RunStore(pre).weights_path)
    f = runs.read_arrays(runs.RunStore(frozen).weights_path)
    s = runs.read_arrays(runs.RunStore(scratch).weights_path)
    enc = sorted(k for k in p if k.startswith("encoder."))
    assert enc and enc == sorted(k for k in f if k.startswith("encoder."))
    for k in enc:
        np.testing.assert_array_equal(f[k], p[k], err_msg=k)
    assert any(not np.array_equal(s[k], p[k]) for k in enc)
    assert "head.weight" in f and not any(k.startswith("decoder.") for k in f)


def test_frozen_encoder_embeddings_feed_knn_and_a_linear_probe(round_trip):
    import anndata as ad

    from scapp.data.demo import demo_path
    from scapp.data.split import stratified_split
    from scapp.data.validate import get_labels
    from scapp.evaluate.probe import probe_report
    from scapp.train.pretrain import FrozenEncoder

    pre, *_ = round_trip
    a = ad.read_h5ad(demo_path())
    enc = FrozenEncoder(pre)
    Z = enc.embed(a.X, a.var)
    assert Z.shape == (a.n_obs, 64)
    y, classes, _ = get_labels(a, "cell_type")
    s = stratified_split(y, seed=0)
    rep = probe_report(Z[s.train], y[s.train], Z[s.test], y[s.test], classes)
    assert set(rep) == {"knn_5", "knn_15", "linear_probe"}
    majority = (y[s.test] == np.bincount(y[s.train]).argmax()).mean()
    for name, m in rep.items():
        assert m["accuracy"] > majority + 0.2, (name, m["accuracy"], majority)


def test_predict_with_a_fine_tuned_run(round_trip, tmp_path):
    from scapp.cli import main
    from scapp.data.demo import demo_query_path

    _, ft, *_ = round_trip
    out = tmp_path / "pred.csv"
    assert main(["predict", str(ft), str(demo_query_path()), "--csv", str(out), "--quiet"]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 1500 and {"label", "confidence"} <= set(df.columns)


def test_predict_with_a_pretraining_run_says_to_fine_tune_first(round_trip, tmp_path, capsys):
    from scapp.cli import main
    from scapp.data.demo import demo_query_path

    pre, *_ = round_trip
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    rc = main(["predict", str(pre), str(demo_query_path()), "--csv", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "is a pretraining run" in err and f"--model ssl --from {pre}" in err, err
    assert "Traceback" not in err and not out.exists()


def test_train_from_a_run_that_does_not_pretrain_is_refused(round_trip, tmp_path, capsys):
    from scapp.cli import main
    from scapp.data.demo import demo_path

    rc = main(["train", str(demo_path()), "--label", "cell_type", "--model", "logreg", "--out",
               str(tmp_path / "lr"), "--quiet"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["train", str(demo_path()), "--label", "cell_type", "--model", "ssl", "--from", str(tmp_path / "lr"),
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not pretrain" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# -- TabNet pretraining warm-starts SIMS -------------------------------------------------------------------------
def test_tabnet_pretraining_warm_starts_sims(tmp_path, capsys):
    """``scapp pretrain --method tabnet`` then ``scapp train --model sims --from RUN``: at learning rate 0 the SIMS
    run's encoder parameters are the pretraining's, tensor for tensor; an ssl run cannot start from it."""
    from scapp import runs
    from scapp.cli import main
    from scapp.data.demo import demo_path

    torch.set_num_threads(1)
    pre, sims = tmp_path / "tabnet-pre", tmp_path / "sims"
    assert main(["pretrain", str(demo_path()), "--method", "tabnet", "--out", str(pre), "--epochs", "2",
                 "--device", "cpu", "--quiet"]) == 0
    cfg = runs.RunStore(pre).config()
    assert cfg["method"] == "tabnet" and cfg["architecture"]["n_d"] == 32
    assert runs.RunStore(pre).recipe()["config"]["output"] == "log1p"  # what SIMS reads
    lr0 = tmp_path / "lr0.json"
    lr0.write_text(json.dumps({"lr": 0.0, "weight_decay": 0.0}))
    assert main(["train", str(demo_path()), "--label", "cell_type", "--model", "sims", "--from", str(pre), "--out",
                 str(sims), "--epochs", "1", "--config", str(lr0), "--device", "cpu", "--quiet"]) == 0
    p = runs.read_arrays(runs.RunStore(pre).weights_path)
    s = runs.read_arrays(runs.RunStore(sims).weights_path)
    params = [k for k in s if k.startswith("tabnet.encoder.") and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 20
    for k in params:
        np.testing.assert_array_equal(s[k], p["tabnet_pretraining." + k[len("tabnet."):]], err_msg=k)
    assert runs.RunStore(sims).data_info()["parent_run"] == str(pre)
    capsys.readouterr()
    rc = main(["train", str(demo_path()), "--label", "cell_type", "--model", "ssl", "--from", str(pre), "--out",
               str(tmp_path / "ssl"), "--epochs", "1", "--quiet"])
    assert rc == 2 and "no MLP encoder" in capsys.readouterr().err


def test_streaming_gives_every_training_cell_once_per_epoch(tmp_path):
    """Blocks smaller than a file and batches that straddle blocks: each epoch yields each training cell exactly
    once (held-out cells never), in a different order; a second file is aligned by gene name."""
    from scapp.data.demo import synthetic
    from scapp.train.pretrain import CellSource, PretrainRequest, _epoch_batches, _scan

    a = synthetic(230, 300, 3, seed=2)
    b = synthetic(170, 300, 3, seed=3)
    b = b[:, b.var_names[::-1]].copy()  # same genes, other order
    pa, pb = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    a.write_h5ad(pa)
    b.write_h5ad(pb)
    req = PretrainRequest(data=[str(pa), str(pb)], block_cells=64, min_gene_cells=0, valid_frac=0.1)
    sources = [CellSource(str(pa)), CellSource(str(pb))]
    genes = a.var_names.astype(str).tolist()
    for s in sources:
        s.align_to(genes)
    (tmp_path / "run").mkdir()
    plan = _scan(req, genes, sources, np.random.default_rng(0), tmp_path / "run")
    assert plan.n_train + plan.valid.shape[0] == 400 and plan.valid.shape[0] == 40
    keep_a, keep_b = plan.keep
    expected = np.vstack([a.X[keep_a].toarray(), b[:, genes].X[keep_b].toarray()])
    batches = _epoch_batches(plan, batch_size=50, block_cells=64, seed=0, device="cpu")
    orders = []
    for epoch in (1, 2):
        got = torch.cat(list(batches(epoch))).numpy()
        assert got.shape == expected.shape
        key = lambda m: np.lexsort(m.T[::-1])
        np.testing.assert_array_equal(got[key(got)], expected[key(expected)])
        orders.append(got[:, :5].copy())
    assert not np.array_equal(orders[0], orders[1])
    for s in sources:
        s.close()


def test_fine_tuned_run_explains_with_integrated_gradients(round_trip):
    """The fine-tuned network's gene scores per cell type are IG attributions that add up (completeness) and
    point at genes expressed more in that type: of each class's 10 top-scored genes, most are higher in the
    class than in the other cells (an untrained or shuffled attribution would give about half)."""
    import anndata as ad
    import scipy.sparse as sp

    from scapp import runs
    from scapp.data.demo import demo_path

    _, ft, _, _ = round_trip
    store = runs.RunStore(ft)
    ex = store.explain()
    classes = store.metrics()["classes"]
    genes = store.genes()
    assert ex["class_scores"].shape == (len(classes), len(genes))
    assert float(ex["ig_completeness_rel_error"][0]) < 0.05
    assert (ex["ig_cells_per_class"] > 0).all() and (ex["ig_cells_per_class"] <= 50).all()
    markers = store.markers()
    assert set(markers["class"]) == set(classes)
    a = ad.read_h5ad(demo_path())
    a = a[:, [g for g in genes if g in set(a.var_names)]]
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    X = np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4)
    y = a.obs["cell_type"].astype(str).to_numpy()
    col = {g: i for i, g in enumerate(a.var_names)}
    higher = []
    for c in classes:
        if (y == c).sum() < 5:
            continue
        top = markers[(markers["class"] == c) & (markers["rank"] <= 10)]["gene"]
        idx = [col[g] for g in top if g in col]
        higher.append(np.mean(X[y == c][:, idx].mean(0) > X[y != c][:, idx].mean(0)))
    print("IG top-10 share higher in class:", np.round(higher, 2), "completeness", ex["ig_completeness_rel_error"])
    assert np.mean(higher) > 0.7, higher


def test_tabnet_pretraining_network_defaults_are_sims_defaults():
    """A SIMS run with default settings must be able to start from a TabNet pretraining with default settings."""
    from scapp.models.sims import SIMSConfig
    from scapp.models.ssl import TABNET_ARCHITECTURE, TabNetPretrainConfig

    a, b = TabNetPretrainConfig(), SIMSConfig()
    assert {k: getattr(a, k) for k in TABNET_ARCHITECTURE} == {k: getattr(b, k) for k in TABNET_ARCHITECTURE}
