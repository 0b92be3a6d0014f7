"""ZiPo (issue 12): the likelihood against scipy / exact arithmetic, the penalties, the refusal of non-counts,
recovery of a synthetic low-rank ZIP dataset, and train + denoise through the CLI on a small real file."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import special, stats

from scapp.models.zipo import ZiPoConfig, ZiPoModel, auto_batch_size, log_likelihood, weight_sparsity_penalty

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

R = np.array([-50.0, -5.0, 0.0, 5.0, 50.0])
M = np.array([1e-30, 1e-12, 1e-3, 0.5, 1.0, 10.0, 1e3, 1e6])
X = np.array([0.0, 1.0, 2.0, 10.0, 100.0, 1e3, 1e4, 1e5])
PHI = np.array([1e-3, 0.1, 1.0, 10.0])


def _grid(*axes: np.ndarray) -> list[np.ndarray]:
    return [a.ravel() for a in np.meshgrid(*axes, indexing="ij")]


def _ours(x, m, r=None, phi=None) -> np.ndarray:
    t = lambda v: None if v is None else torch.as_tensor(v, dtype=torch.float64)
    return log_likelihood(t(x), torch.log(t(m)), t(r), None if phi is None else torch.log(t(phi))).numpy()


def _mix(x, r, logf) -> np.ndarray:
    """log of ``z·δ0(x) + (1 − z)·exp(logf)`` with ``z = sigmoid(r)``, from scipy's log-pmf."""
    lz, l1z = special.log_expit(r), special.log_expit(-r)
    return np.where(x == 0, np.logaddexp(lz, l1z + logf), l1z + logf)


def test_zip_log_likelihood_equals_scipy_in_float64_over_extremes():
    x, m, r = _grid(X, M, R)
    ours = _ours(x, m, r)
    ref = _mix(x, r, stats.poisson.logpmf(x, m))
    assert np.isfinite(ours).all() and np.isfinite(ref).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    # and Poisson without zero inflation
    np.testing.assert_allclose(_ours(x, m), stats.poisson.logpmf(x, m), rtol=1e-10, atol=1e-10)


def _nb_exact(x: float, m: float, phi: float, r: float) -> float:
    """The ZINB log-probability in 50-digit arithmetic (scipy's nbinom rounds p = 1/(1+φm) to 1 for tiny m)."""
    import mpmath as mp

    mp.mp.dps = 50
    x, m, phi, r = (mp.mpf(float(v)) for v in (x, m, phi, r))
    n = 1 / phi
    logf = (mp.loggamma(x + n) - mp.loggamma(n) - mp.loggamma(x + 1) - n * mp.log1p(phi * m)
            + x * (mp.log(phi * m) - mp.log1p(phi * m)))
    z = 1 / (1 + mp.exp(-r))
    val = mp.log(z + (1 - z) * mp.exp(logf)) if x == 0 else mp.log(1 - z) + logf
    return float(val)


def test_zinb_log_likelihood_equals_scipy_and_exact_arithmetic_over_extremes():
    x, m, r, phi = _grid(X, M, R, PHI)
    ours = _ours(x, m, r, phi)
    assert np.isfinite(ours).all()
    # scipy's nbinom where it is itself exact: p = 1/(1+φm) must not round to 1 (φm ≥ 1e-6)
    ok = phi * m >= 1e-6
    ref = _mix(x, r, stats.nbinom.logpmf(x, 1 / phi, 1 / (1 + phi * m)))
    assert np.isfinite(ref[ok]).all()
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=1e-9)
    # everywhere (including m = 1e-30, where scipy returns -inf for x > 0): 50-digit arithmetic
    exact = np.array([_nb_exact(*v) for v in zip(x, m, phi, r)])
    np.testing.assert_allclose(ours, exact, rtol=1e-9, atol=1e-9)


def test_likelihood_gradients_are_finite_over_extremes():
    x, m, r, phi = _grid(X, M, R, PHI)
    log_m = torch.tensor(np.log(m), requires_grad=True)
    rt = torch.tensor(r, requires_grad=True)
    lp = torch.tensor(np.log(phi), requires_grad=True)
    for args in ((rt, None), (rt, lp), (None, lp)):
        ll = log_likelihood(torch.tensor(x), log_m, *args)
        g = torch.autograd.grad(ll.sum(), [log_m] + [a for a in args if a is not None])
        assert torch.isfinite(ll).all() and all(torch.isfinite(t).all() for t in g)


def test_zip_tends_to_poisson_as_r_goes_to_minus_infinity():
    x, m = _grid(X, M)
    pois = _ours(x, m)
    gaps = []
    for r in (-2.0, -5.0, -10.0, -20.0, -40.0):
        zip_ = _ours(x, m, np.full_like(x, r))
        # in probability the two differ by at most z = sigmoid(r), everywhere
        assert (np.abs(np.exp(zip_) - np.exp(pois)) <= special.expit(r) * (1 + 1e-9) + 1e-15).all()
        gaps.append(np.abs(zip_ - pois))
    assert all((a >= b).all() and a.max() > b.max() for a, b in itertools.pairwise(gaps))  # shrinks everywhere
    # on the log scale once the extra zeros are rarer than Poisson's own (r well below −m): equal
    far = _ours(x, m, -(m + 60.0))
    np.testing.assert_allclose(far, pois, rtol=1e-12, atol=1e-12)


def test_weight_penalty_is_invariant_to_rescaling_a_neuron():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 300, generator=g, dtype=torch.float64)
    base = weight_sparsity_penalty(W)
    for c in (1e-4, 0.3, 7.0, -2.0, 1e5):
        W2 = W.clone()
        W2[3] *= c
        assert torch.isclose(weight_sparsity_penalty(W2), base, rtol=1e-12)
    one_gene = torch.zeros(4, 300, dtype=torch.float64)
    one_gene[:, 0] = 1.0
    assert weight_sparsity_penalty(one_gene) < base  # a neuron reading one gene is the sparsest


def test_auto_batch_size():
    assert auto_batch_size(100) == 64 and auto_batch_size(10**6) == 512 and auto_batch_size(7680) == 256


# -- refusing non-count input ------------------------------------------------------------------------------
def test_log_normalized_input_is_refused_by_the_model():
    from scapp.errors import InputKindError

    counts = sp.random(60, 40, density=0.3, format="csr", dtype=np.float32, random_state=0)
    counts.data = np.ceil(counts.data * 10)
    lognorm = counts.copy()
    lognorm.data = np.log1p(lognorm.data / 3.0)
    model = ZiPoModel(ZiPoConfig(encoder_widths=(8,), latent=4, max_epochs=1), n_features=40, classes=[])
    with pytest.raises(InputKindError, match=r"--layer counts.*\.raw"):
        model.embed(lognorm)
    assert model.embed(counts).shape == (60, 4)


def test_log_normalized_file_is_refused_by_the_cli(tmp_path, capsys):
    from scapp.cli import main

    a = ad.read_h5ad(FIXTURES / "pbmc_small.h5ad")
    X = a.X.toarray()
    a.X = sp.csr_matrix(np.log1p(X / X.sum(1, keepdims=True) * 1e4).astype(np.float32))
    path = tmp_path / "lognorm.h5ad"
    a.write_h5ad(path)
    assert main(["train", str(path), "--model", "zipo", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "raw counts" in err and "--layer" in err and ".raw" in err


# -- recovering rates on a synthetic low-rank ZIP dataset -------------------------------------------------------
def _low_rank_zip(n: int = 2000, G: int = 200, k: int = 3, z: float = 0.15, seed: int = 0):
    """Counts ``Poisson(l·μ)`` with a fraction ``z`` of entries zeroed: μ = softmax of a rank-``k`` matrix."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, k))
    V = rng.normal(size=(G, k)) * 0.6
    mu = special.softmax(U @ V.T + rng.normal(0.0, 0.7, size=G), axis=1)
    lib = np.exp(rng.normal(np.log(1500), 0.35, size=n))
    rate = lib[:, None] * mu
    x = rng.poisson(rate) * (rng.random((n, G)) >= z)
    return sp.csr_matrix(x.astype(np.float32)), rate


def test_synthetic_low_rank_zip_rates_are_recovered_better_than_the_baseline():
    from scapp.models.base import FitData
    from scapp.train.trainer import Trainer

    X, rate = _low_rank_zip()
    tr, va, te = np.arange(0, 1300), np.arange(1300, 1600), np.arange(1600, 2000)
    cfg = ZiPoConfig(encoder_widths=(128, 64), latent=8, max_epochs=40, early_stopping_patience=10, seed=0)
    model = ZiPoModel(cfg, n_features=X.shape[1], classes=[])
    model.fit(FitData(X[tr], np.full(tr.size, -1)), FitData(X[va], np.full(va.size, -1)), Trainer())
    est = model.denoise(X[te])  # held-out cells
    share = np.asarray(X[tr].sum(0)).ravel() / X[tr].sum()
    base = np.asarray(X[te].sum(1)) * share[None, :]  # library-size-scaled gene means
    err = lambda e: np.mean((np.log1p(e) - np.log1p(rate[te])) ** 2)
    assert err(est) < 0.3 * err(base), (err(est), err(base))  # measured 0.045 vs 0.64
    d = model.denoise_batch(X[te])
    assert 0.1 < d.zero_prob.mean() < 0.25  # the dropouts were 15 %
    observed = np.asarray(X[te].sum(1)).ravel()
    assert np.corrcoef(np.log(d.library), np.log(observed))[0, 1] > 0.6  # measured 0.81
    assert model.fit_info["pruning"]["sparsity"] > 0


# -- train and denoise through the CLI on a small real file ----------------------------------------------------
FAST = {"encoder_widths": [64, 32], "latent": 16, "max_epochs": 6, "early_stopping_patience": 6}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_cli_train_with_a_label_then_denoise(tmp_path, capsys):
    from scapp import runs
    from scapp.cli import main

    data = FIXTURES / "pbmc_small.h5ad"
    before = _sha(data)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps(FAST))
    run = tmp_path / "run"
    assert main(["train", str(data), "--model", "zipo", "--label", "cell_type", "--config", str(cfg),
                 "--out", str(run), "--quiet"]) == 0
    store = runs.RunStore(run)
    met = store.metrics()
    assert met["test"]["accuracy"] > 0.5  # the latent classifier annotates (honestly scored on test cells)
    dn = met["denoise"]
    assert dn["test"]["nll"] > 0 and dn["test"]["library_corr_log"] > 0.5
    assert 0 < dn["all"]["zero_prob_mean"] < 1
    assert met["fit_info"]["pruning"]["sparsity"] >= 0
    assert {"valid_nll", "valid_rate_mse"} <= set(store.history().columns)  # live curves
    cells, genes, programs = store.denoise_cells(), store.denoise_genes(), store.gene_programs()
    assert len(cells) == 291 and set(cells["split"]) == {"train", "valid", "test"}
    assert len(genes) == 400 and (genes["mean_rate"] > 0).all()
    assert set(programs["layer"]) == {"encoder", "latent"}
    out = tmp_path / "denoised.h5ad"
    assert main(["denoise", str(run), str(data), "--out", str(out)]) == 0
    d = ad.read_h5ad(out)
    src = ad.read_h5ad(data)
    assert d.shape == src.shape
    L, L0 = d.layers["scapp_denoised"], d.layers["scapp_denoised_nonzero"]
    assert np.isfinite(L).all() and (L > 0).all() and (L0 <= L + 1e-6).all()
    np.testing.assert_allclose(L.sum(1), d.obs["scapp_library_predicted"], rtol=1e-3)
    assert np.allclose(d.obs["scapp_library_observed"], np.asarray(src.X.sum(1)).ravel())
    assert d.obs["scapp_zero_prob_mean"].between(0, 1).all()
    assert d.obsm["X_scapp_zipo"].shape == (291, 16)
    assert (d.X != src.X).nnz == 0  # X is the raw counts
    assert _sha(data) == before  # the input is never modified
    # one gene, raw vs denoised, for a map (Explore)
    from scapp.annotate import load_run
    from scapp.denoise import gene_values

    r = load_run(run)
    gene = str(src.var_names[int(np.asarray(src.X.sum(0)).argmax())])
    v = gene_values(r.model, src.X, r.recipe.features, gene)
    np.testing.assert_allclose(v["denoised"], d[:, gene].layers["scapp_denoised"].ravel(), rtol=1e-5)
    np.testing.assert_array_equal(v["raw"], src[:, gene].X.toarray().ravel())


def test_cli_train_without_a_label_embeds_and_denoises_but_does_not_annotate(tmp_path, capsys):
    from scapp import runs
    from scapp.annotate import annotate, load_run
    from scapp.cli import main
    from scapp.errors import RunError

    data = FIXTURES / "pbmc_small.h5ad"
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({**FAST, "likelihood": "zinb"}))
    run = tmp_path / "run"
    assert main(["train", str(data), "--model", "zipo", "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    store = runs.RunStore(run)
    assert "pred" not in store.predictions().columns
    assert set(store.predictions()["split"]) == {"train", "valid", "test"}  # random cells held out
    assert store.embedding().shape == (291, 16)
    loaded = load_run(run)
    with pytest.raises(RunError, match="without labels"):
        annotate(loaded, ad.read_h5ad(data))
    out = tmp_path / "d.h5ad"
    q = ad.read_h5ad(data)[:, :300].copy()  # a query with fewer genes, kept as the query's own
    qp = tmp_path / "q.h5ad"
    q.write_h5ad(qp)
    assert main(["denoise", str(run), str(qp), "--out", str(out), "--genes", "query"]) == 0
    d = ad.read_h5ad(out)
    assert d.shape == q.shape and "scapp_denoised_nonzero" in d.layers  # ZINB is zero-inflated too
    assert np.isfinite(d.layers["scapp_denoised"]).all()


def test_batch_norm_clips_a_rare_cell_at_inference_as_in_training():
    """A first-layer neuron that reads one rare gene has running variance ~0; the one cell expressing it must
    not land hundreds of standard deviations out at inference (pbmc4k: a predicted 20,000 counts of a gene
    observed once), but where training could put it: at most sqrt(B - 1) for a batch of B."""
    from scapp.models.zipo import ClippedBatchNorm

    bn = ClippedBatchNorm(3, clip=np.sqrt(63))
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(0.0)
    bn.eval()
    out = bn(torch.tensor([[1.0, 0.0, -1.0]]))
    assert torch.allclose(out, torch.tensor([[np.sqrt(63), 0.0, -np.sqrt(63)]], dtype=torch.float32))
    bn.train()  # training is plain batch norm
    x = torch.randn(64, 3)
    assert torch.allclose(bn(x), torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True), atol=1e-5)
