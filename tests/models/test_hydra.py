"""Hydra specifics: sampling schedule, balanced sets, the batched ensemble, IG, annotation ensemble, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.data.split import stratified_split
from scapp.data.validate import get_labels
from scapp.errors import ConfigError
from scapp.models.base import FitData
from scapp.train.trainer import Trainer
from scapp.models.hydra import (HydraConfig, HydraModel, SBatchNorm, StackedVAE, balance_target,
                                class_sampling_probs)
from scapp.tensors import DeviceMatrix

SMALL = dict(n_models=4, max_epochs=12, refine_epochs=3, ig_cells_per_class=12, ig_steps=50, mlp_epochs=5,
             batch_size=128)


@pytest.fixture(scope="module")
def pancreas(shared_file):
    """700 real pancreas cells (8 types), 600 variable genes after Hydra's gene filter and scaling."""
    import anndata as ad

    a = ad.read_h5ad(shared_file("mouse_pancreas_endocrinogenesis.h5ad"))
    a = a[np.sort(np.random.default_rng(0).choice(a.n_obs, 700, replace=False))].copy()
    y, classes, _ = get_labels(a, "cell_type")
    split = stratified_split(y, seed=0)
    cfg = PreprocessConfig(**HydraModel.preprocess_defaults, n_top_genes=600)
    recipe = Recipe.fit(a.X, a.var_names.tolist(), cfg, train_idx=split.train)
    X = recipe.transform(a[:, recipe.genes].X)
    return X, y, classes, split, recipe.features


def _fit(data, events=None, **opts):
    X, y, classes, split, _ = data
    m = HydraModel(HydraConfig(**{**SMALL, **opts}), n_features=X.shape[1], classes=classes)
    trainer = Trainer(events.append if events is not None else None)
    m.fit(FitData(X[split.train], y[split.train]), FitData(X[split.valid], y[split.valid]), trainer)
    return m, trainer


@pytest.fixture(scope="module")
def trained(pancreas):
    events: list[dict] = []
    model, trainer = _fit(pancreas, events)
    model.test_trainer = trainer
    return model, events


# -- schedule and balancing ---------------------------------------------------------------------
def test_sampling_schedule_moves_from_balanced_to_natural():
    n = np.array([10, 100, 1000, 0])
    first, last = class_sampling_probs(n, 0, 40), class_sampling_probs(n, 39, 40)
    assert np.allclose(first[:3], 1 / 3) and first[3] == 0
    assert np.allclose(last, n / n.sum())
    mid = class_sampling_probs(n, 20, 40)
    assert last[0] < mid[0] < first[0] and first[2] < mid[2] < last[2]


def test_balance_target_is_the_median_of_present_classes():
    assert balance_target(np.array([5, 0, 20, 9])) == 9
    assert balance_target(np.array([4, 10])) == 7


def test_balanced_sets_median_real_minor_kept_generated_present(trained, pancreas):
    model, _ = trained
    X, y, _, split, _ = pancreas
    ytr = y[split.train]
    Xd = DeviceMatrix(X[split.train], torch.device("cpu"))
    pool, idx, sy, info = model.balanced_sets(model.net, Xd, ytr, 3, torch.Generator().manual_seed(1))
    counts = np.bincount(ytr, minlength=len(model.classes))
    target = balance_target(counts)
    n = len(ytr)
    for m in range(3):
        i, lab = idx[m].numpy(), sy[m].numpy()
        assert np.array_equal(np.bincount(lab, minlength=len(counts)), np.where(counts > 0, target, 0))
        real = i[i < n]
        assert len(np.unique(real)) == len(real)  # down-sampling draws without replacement
        assert np.array_equal(ytr[real], lab[i < n])
        for c in np.flatnonzero((counts > 0) & (counts < target)):
            assert set(np.flatnonzero(ytr == c)) <= set(real)  # every real minor cell kept
            assert ((lab == c) & (i >= n)).sum() == target - counts[c]  # filled with generated cells
        for c in np.flatnonzero(counts > target):
            assert ((lab == c) & (i >= n)).sum() == 0
    assert info["generated_per_set"] > 0
    gen = pool.rows(torch.as_tensor(idx[0][idx[0] >= n][:5]))
    assert torch.isfinite(gen).all() and gen.std() > 0
    assert not any(torch.equal(g, r) for g in gen for r in Xd.rows(torch.arange(n)))  # new cells, not copies


def test_balance_off_uses_the_natural_training_set(pancreas):
    X, y, classes, split, _ = pancreas
    m = HydraModel(HydraConfig(balance=False, n_models=2), n_features=X.shape[1], classes=classes)
    Xd = DeviceMatrix(X[split.train], torch.device("cpu"))
    _, idx, sy, info = m.balanced_sets(m.net, Xd, y[split.train], 2, torch.Generator())
    assert not info["balanced"] and np.array_equal(sy[1].numpy(), y[split.train])


# -- the batched ensemble --------------------------------------------------------------------------
def _reference_block(net: StackedVAE, m: int, which: str) -> nn.Sequential:
    """A plain nn.Linear/Mish/BatchNorm1d/Dropout block holding model m's parameters."""
    blk = net.enc[0] if which == "enc" else net.dec[0][0]
    lin, bn = blk[0], blk[2]
    ref_lin = nn.Linear(lin.weight.shape[1], lin.weight.shape[2])
    ref_bn = nn.BatchNorm1d(lin.weight.shape[2])
    with torch.no_grad():
        ref_lin.weight.copy_(lin.weight[m].T)
        ref_lin.bias.copy_(lin.bias[m, 0])
        ref_bn.weight.copy_(bn.weight[m, 0])
        ref_bn.bias.copy_(bn.bias[m, 0])
        ref_bn.running_mean.copy_(bn.running_mean[m, 0])
        ref_bn.running_var.copy_(bn.running_var[m, 0])
    return nn.Sequential(ref_lin, nn.Mish(), ref_bn)


def test_batched_ensemble_equals_per_model_computation():
    torch.manual_seed(0)
    net = StackedVAE(3, 1, [("rna", 20, 16)], latent=8, n_classes=4, dropout=0.0)
    x = torch.randn(3, 32, 20)
    m = 1
    ref = _reference_block(net, m, "enc")
    net.train(), ref.train()
    out = net.enc[0](x)
    expect = ref(x[m])
    assert torch.allclose(out[m], expect, atol=1e-5)
    # per-model batch norm: running statistics follow the same update as BatchNorm1d
    assert torch.allclose(net.enc[0][2].running_mean[m, 0], ref[2].running_mean, atol=1e-6)
    assert torch.allclose(net.enc[0][2].running_var[m, 0], ref[2].running_var, atol=1e-6)
    # gradients of model m depend only on model m
    out[m].square().sum().backward()
    expect.square().sum().backward()
    assert torch.allclose(net.enc[0][0].weight.grad[m], ref[0].weight.grad.T, atol=1e-4)
    assert net.enc[0][0].weight.grad[0].abs().sum() == 0
    net.eval(), ref.eval()
    assert torch.allclose(net.enc[0](x)[m], ref(x[m]), atol=1e-5)


def test_sbatchnorm_normalizes_each_model_separately():
    bn = SBatchNorm(2, 3)
    x = torch.stack([torch.randn(50, 3), 10 + 5 * torch.randn(50, 3)])
    out = bn(x)
    assert torch.allclose(out.mean(1), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(out.var(1, unbiased=False), torch.ones(2, 3), atol=1e-3)


def test_refined_copy_m_is_the_encoder_with_head_m():
    torch.manual_seed(0)
    main = StackedVAE(1, 5, [("rna", 12, 8)], latent=4, n_classes=3, dropout=0.2).eval()
    cp = main.copies(5).eval()
    x = torch.randn(7, 12)
    mu, _ = main.encode(x[None])
    mu5, _ = cp.encode(x[None].expand(5, -1, -1).contiguous())
    assert torch.allclose(mu5, mu.expand(5, -1, -1), atol=1e-6)
    head2 = mu[0] @ main.head_w[0, 2] + main.head_b[0, 2]
    assert torch.allclose(cp.classify(mu5)[2], head2, atol=1e-5)


# -- the fitted pipeline -------------------------------------------------------------------------------
def test_fit_runs_every_phase_and_reports_it(trained, pancreas):
    model, events = trained
    keys = {e.get("phase_key") for e in events}
    assert {"main", "balance", "refine", "ig", "mlp"} <= keys
    assert "done" in {e.get("phase") for e in events}
    # what the Train page reads: a label per phase and its count (issue 11)
    counted = {(e["phase"], e["phase_unit"], e["phase_steps"]) for e in events if e.get("phase_steps")}
    M = model.config.n_models
    assert (f"refining {M} models", "epoch", model.config.refine_epochs) in counted
    assert ("Integrated Gradients", "class", len(model.classes)) in counted
    assert (f"training {M} annotation MLPs", "epoch", model.config.mlp_epochs) in counted
    assert all("epoch" in e for e in events)
    prog = [e["progress"] for e in events]
    assert prog == sorted(prog) and prog[-1] == 1.0
    assert model.test_trainer.best_epoch is not None and model.mlp is not None
    assert set(model.fit_info["timings"]) == {"vae_s", "balance_s", "refine_s", "ig_s", "mlp_s"}
    # the annotation ensemble reads only the union of the classes' top IG features
    assert model.selected.size <= len(model.classes) * model.config.top_genes


def test_predicted_probabilities_are_the_ensemble_average(trained, pancreas):
    model, _ = trained
    X, y, _, split, _ = pancreas
    Xt = torch.as_tensor(X[split.test])
    with torch.no_grad():
        xs = Xt[:, torch.as_tensor(model.selected)]
        members = torch.softmax(model.mlp(xs[None].expand(model.config.n_models, -1, -1)), -1)
    p = model.predict_proba(X[split.test])
    assert np.allclose(p, members.mean(0).numpy(), atol=1e-5)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == y[split.test]).mean() > 0.6
    assert model.embed(X[:5]).shape == (5, 100)


def test_save_load_round_trip_keeps_predictions_and_markers(trained, pancreas, tmp_path):
    model, _ = trained
    X = pancreas[0]
    path = tmp_path / "hydra.safetensors"
    model.save_weights(str(path))
    other = HydraModel(model.config, n_features=X.shape[1], classes=model.classes)
    other.load_weights(str(path))
    assert np.array_equal(model.predict_logits(X), other.predict_logits(X))
    assert np.array_equal(model.embed(X), other.embed(X))
    assert np.array_equal(model.explain(X, pancreas[1]).class_scores, other.explain(X, pancreas[1]).class_scores)


def test_ig_is_deterministic_and_complete(trained, pancreas):
    model, _ = trained
    ex = model.explain(*pancreas[:2])
    assert ex.kind == "integrated_gradients"
    assert ex.class_scores.shape == (len(model.classes), pancreas[0].shape[1])
    assert float(ex.extra["ig_completeness_rel_error"][0]) < 0.01
    again, _ = _fit(pancreas)  # same seed, same data: the same markers, bit for bit
    assert np.array_equal(again.ig_scores, model.ig_scores)
    X, y, _, split, _ = pancreas
    a = model.integrated_gradients(X[split.train], y[split.train], cells_per_class=5, seed=3)
    b = model.integrated_gradients(X[split.train], y[split.train], cells_per_class=5, seed=3)
    assert np.array_equal(a["scores"], b["scores"])


def test_known_pancreas_markers_rank_high(trained, pancreas):
    model, _ = trained
    genes = np.asarray(pancreas[4])
    rank = {c: genes[np.argsort(-model.ig_scores[i])].tolist() for i, c in enumerate(model.classes)}
    assert min(rank["Beta"].index("Ins1"), rank["Beta"].index("Ins2")) < 10
    assert rank["Alpha"].index("Gcg") < 10


def test_stop_request_keeps_a_usable_model(pancreas):
    X, y, classes, split, _ = pancreas
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 12  # a few epochs of the VAE, before refinement

    m = HydraModel(HydraConfig(**SMALL), n_features=X.shape[1], classes=classes)
    trainer = Trainer(should_stop=stop)
    m.fit(FitData(X[split.train], y[split.train]), FitData(X[split.valid], y[split.valid]), trainer)
    assert trainer.stopped and m.mlp is None and trainer.best_epoch is not None
    p = m.predict_proba(X[:20])
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    ex = m.explain(X[split.train], y[split.train])  # falls back to IG of the VAE's heads
    assert ex.class_scores.shape == (len(classes), X.shape[1])


@pytest.mark.parametrize("opts", [{"monitor": "valid_f2"}, {"n_models": 0}, {"recon_weight": 1.5}])
def test_invalid_options_are_refused(opts):
    with pytest.raises(ConfigError):
        HydraModel(HydraConfig(**opts), n_features=10, classes=["a", "b"])


def test_modalities_must_add_up_to_the_features():
    m = HydraModel(HydraConfig(), n_features=10, classes=["a", "b"])
    X = np.zeros((4, 10), np.float32)
    with pytest.raises(ConfigError, match="add up"):
        m.fit(FitData(X, np.array([0, 1, 0, 1]), extra={"modalities": [("rna", 6), ("protein", 3)]}),
              FitData(X, np.array([0, 1, 0, 1])), Trainer())


# -- multimodal: RNA + protein --------------------------------------------------------------------
@pytest.fixture(scope="module")
def marrow(shared_file):
    """900 real bone-marrow cells with their antibody (ADT) counts in obsm['protein_counts']."""
    import anndata as ad

    a = ad.read_h5ad(shared_file("bonemarrow_triana2021_abseq_multimodal.h5ad"))
    return a[np.sort(np.random.default_rng(0).choice(a.n_obs, 900, replace=False))].copy()


def test_protein_errors_missing_key_mismatched_cells_zero_columns_negative(marrow):
    import pandas as pd

    from scapp.data.modalities import ProteinRecipe, get_protein, protein_matrix
    from scapp.errors import ModalityError

    with pytest.raises(ModalityError, match="obsm keys present: protein_counts"):
        get_protein(marrow, "adt")
    P, names = get_protein(marrow, "protein_counts")
    assert P.shape == (900, 97) and "CD19" in names
    shuffled = marrow.obsm["protein_counts"].iloc[::-1]
    with pytest.raises(ModalityError, match="other cells"):
        protein_matrix(shuffled, marrow.obs_names)
    other = pd.DataFrame(P, index=[f"x{i}" for i in range(900)], columns=names)
    with pytest.raises(ModalityError, match="0 of 900 barcodes"):
        protein_matrix(other, marrow.obs_names)
    with pytest.raises(ModalityError, match="shape"):
        protein_matrix(P[:10], marrow.obs_names)
    with pytest.raises(ModalityError, match="negative"):
        protein_matrix(-P, marrow.obs_names)
    Z = P.copy()
    Z[:, [3, 7]] = 0
    with pytest.raises(ModalityError, match=r"2 protein column\(s\).*zero in every training cell.*CD117"):
        ProteinRecipe.fit(Z, names, "protein_counts", train_idx=np.arange(900))
    rec = ProteinRecipe.fit(P, names, "protein_counts", train_idx=np.arange(600))
    assert np.allclose(rec.transform(P[:600]).mean(0), 0, atol=1e-4)
    assert np.array_equal(rec.align(P[:, ::-1], names[::-1]), P)
    with pytest.raises(ModalityError, match="lacks 1"):
        rec.align(P[:, 1:], names[1:])


def test_multimodal_run_end_to_end(marrow, tmp_path):
    """Engine with --protein-key: one encoder branch per modality, tagged protein markers, query annotation."""
    import pandas as pd

    from scapp import runs
    from scapp.annotate import annotate, load_run
    from scapp.train.engine import TrainRequest, run_training

    path = tmp_path / "marrow.h5ad"
    marrow.write_h5ad(path)
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    req = TrainRequest(data=str(path), label="cell_type", model="hydra", device="cpu", protein_key="protein_counts",
                       model_config={**SMALL, "ig_cells_per_class": 8})
    res = run_training(req, run)
    assert res["test"]["macro_f1"] > 0.3
    loaded = load_run(run)
    net = loaded.model.net
    assert [m[0] for m in net.modalities] == ["rna", "protein"]
    assert net.modalities[1][1:] == (97, 30) and net.enc[1][0].weight.shape[1:] == (97, 30)
    markers = pd.read_csv(run / "artifacts" / "markers.csv")
    assert markers["gene"].str.endswith(" (protein)").any()
    assert runs.read_json(run / "protein.json")["names"][:2] == ["B7.H4", "CD10"]
    ann = annotate(loaded, marrow[:50].copy(), min_shared=100)
    assert ann.proba.shape == (50, len(loaded.classes))
    no_protein = marrow[:5].copy()
    del no_protein.obsm["protein_counts"]
    from scapp.errors import ModalityError

    with pytest.raises(ModalityError, match="no protein matrix"):
        annotate(loaded, no_protein, min_shared=100)


def test_cli_protein_key_reaches_the_engine_and_fails_clearly(marrow, tmp_path, capsys):
    from scapp import cli, runs

    args = cli.build_parser().parse_args(["train", "x.h5ad", "--label", "cell_type", "--protein-key", "adt"])
    assert args.protein_key == "adt"
    path = tmp_path / "m.h5ad"
    marrow[:200].copy().write_h5ad(path)
    out = tmp_path / "run"
    code = cli.main(["train", str(path), "--label", "cell_type", "--model", "hydra", "--protein-key", "adt",
                     "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == cli.EXIT_USER
    assert "no protein matrix obsm['adt']" in capsys.readouterr().err
    assert not out.exists() or runs.read_status(out) is None  # refused before a run folder is made (issue 14)
