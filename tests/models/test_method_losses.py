"""Tests that would catch a broken method: loss terms, their signs and weights, and what training really does.

Small synthetic data with known structure (no shared files), so these run in a fresh clone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scapp.models.base import FitData
from scapp.models.hydra import HydraConfig, HydraModel, class_sampling_probs
from scapp.models.sims import SIMSConfig, SIMSModel
from scapp.tensors import DeviceMatrix
from scapp.train.trainer import Trainer


def _planted(n: int = 900, d: int = 40, c: int = 4, seed: int = 0, sizes: list[float] | None = None):
    """log1p-like data where class k is told apart by gene 3k alone (raised by 3); the rest is noise."""
    rng = np.random.default_rng(seed)
    p = np.asarray(sizes or [1] * c, float)
    y = rng.choice(c, n, p=p / p.sum())
    X = rng.gamma(0.6, 0.5, (n, d)).astype(np.float32)
    X[np.arange(n), 3 * y] += 3.0
    return np.log1p(X).astype(np.float32), y


# -- SIMS ------------------------------------------------------------------------------------------
def test_sims_loss_is_cross_entropy_plus_lambda_times_mask_entropy():
    X, y = _planted()
    m = SIMSModel(SIMSConfig(lambda_sparse=0.25), n_features=X.shape[1], classes=list("abcd"))
    m.net.train()
    x, t = torch.as_tensor(X[:128]), torch.as_tensor(y[:128])
    torch.manual_seed(0)
    loss, ce, ent = m.batch_loss(x, t)
    assert float(ent.detach()) > 0  # an entropy: masks that spread over many genes cost more
    assert torch.isclose(loss, ce + 0.25 * ent)
    # the entropy is pytorch-tabnet's own mask term (its encoder returns M_loss = mean Σ M log M), negated
    torch.manual_seed(0)
    _, m_loss = m.net.tabnet.encoder(m._prep(x))
    assert torch.isclose(ent, -m_loss, rtol=1e-4)


def test_sims_sparsity_weight_makes_masks_sparser():
    """Training with a large λ_sparse ends with lower mask entropy than λ = 0: the sign is right."""
    X, y = _planted()

    def entropy_after(lam: float) -> float:
        m = SIMSModel(SIMSConfig(lambda_sparse=lam, max_epochs=12, batch_size=128, seed=0), n_features=X.shape[1],
                      classes=list("abcd"))
        m.fit(FitData(X[:700], y[:700]), FitData(X[700:], y[700:]), Trainer())
        m.net.eval()
        with torch.no_grad():
            return float(m.batch_loss(torch.as_tensor(X[700:]), torch.as_tensor(y[700:]))[2])

    assert entropy_after(0.5) < 0.8 * entropy_after(0.0)


def test_sims_planted_marker_ranks_first_for_its_class():
    """One gene (placed last, so gene order cannot help it) tells class "a" from "b": it must rank first.

    Dividing each gene by its maximum over classes (the old ranking) scored every gene 1.0 in the class where
    it peaks; about half of the 39 noise genes tied with the marker and the stable sort put them first.
    """
    rng = np.random.default_rng(0)
    n, d = 800, 40
    y = rng.integers(0, 2, n)
    X = rng.gamma(0.6, 0.5, (n, d)).astype(np.float32)
    X[y == 0, d - 1] += 3.0
    X = np.log1p(X)
    m = SIMSModel(SIMSConfig(max_epochs=15, batch_size=128, seed=0), n_features=d, classes=["a", "b"])
    m.fit(FitData(X[:600], y[:600]), FitData(X[600:], y[600:]), Trainer())
    assert (m.predict_logits(X[600:]).argmax(1) == y[600:]).mean() > 0.9
    ex = m.explain(X, y)
    order = np.argsort(-ex.class_scores[0], kind="stable")
    assert order[0] == d - 1, order[:5]
    srt = np.sort(ex.class_scores[0])[::-1]
    assert srt[0] > 2 * srt[1]  # first by a clear margin, not by a tie
    old = np.argsort(-ex.extra["display_scores"][0], kind="stable")  # the old ranking, now only the heatmap colour
    assert old[0] != d - 1


# -- Hydra ---------------------------------------------------------------------------------------
SMALL = dict(n_models=6, max_epochs=6, refine_epochs=2, ig_cells_per_class=8, ig_steps=16, mlp_epochs=2,
             batch_size=128, seed=0)


@pytest.fixture(scope="module")
def hydra_fit():
    X, y = _planted(n=1200, sizes=[8, 4, 2, 1])
    m = HydraModel(HydraConfig(**SMALL), n_features=X.shape[1], classes=list("abcd"))
    init = m.net.head_w.detach().clone()
    trainer = Trainer()
    m.fit(FitData(X[:1000], y[:1000]), FitData(X[1000:], y[1000:]), trainer)
    return m, init, X, y, trainer


def test_hydra_loss_is_09_recon_plus_kl_over_f_and_01_mean_head_ce():
    X, y = _planted(n=300)
    m = HydraModel(HydraConfig(n_models=5), n_features=X.shape[1], classes=list("abcd"))
    net = m.net.eval()
    x, t = torch.as_tensor(X[None, :64]), torch.as_tensor(y[None, :64])
    with torch.no_grad():
        terms = m.loss_terms(net, x, t, sample=False)
        mu, logvar = net.encode(x)
        xhat = net.decode(mu)
        rec = ((xhat - x) ** 2).mean()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(-1).mean()
        heads = torch.einsum("bl,hlc->hbc", mu[0], net.head_w[0]) + net.head_b[0][:, None]
        ce = torch.stack([F.cross_entropy(heads[h], t[0], label_smoothing=0.1) for h in range(5)]).mean()
    assert torch.allclose(terms["recon"], rec, atol=1e-6)
    assert torch.allclose(terms["kl"], kl, atol=1e-5)
    assert torch.allclose(terms["ce"], ce, atol=1e-6)
    expected = 0.9 * (rec + kl / X.shape[1]) + 0.1 * ce
    assert torch.allclose(terms["loss"], expected, atol=1e-6)


@pytest.mark.parametrize("n_classes", [3, 6])
def test_hydra_label_smoothing_spreads_over_the_true_class_count(n_classes):
    """CE with smoothing ε over C classes = (1 − ε)·NLL(y) + ε/C · Σ_c NLL(c), C the real class count (not 17)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 12)).astype(np.float32)
    y = np.arange(40) % n_classes
    m = HydraModel(HydraConfig(n_models=2, label_smoothing=0.1), n_features=12,
                   classes=[f"c{i}" for i in range(n_classes)])
    net = m.net.eval()
    with torch.no_grad():
        terms = m.loss_terms(net, torch.as_tensor(X[None]), torch.as_tensor(y[None]), sample=False)
        mu, _ = net.encode(torch.as_tensor(X[None]))
        logp = F.log_softmax(torch.einsum("bl,hlc->hbc", mu[0], net.head_w[0]) + net.head_b[0][:, None], -1)
        nll_true = -logp[:, np.arange(40), torch.as_tensor(y)]
        manual = (0.9 * nll_true + 0.1 / n_classes * (-logp).sum(-1)).mean()
    assert logp.shape[-1] == n_classes
    assert torch.isclose(terms["ce"][0], manual, atol=1e-5)


def test_hydra_heads_learn_independently(hydra_fit):
    """Each head gets its own cross-entropy, so the heads' weight updates differ (not one shared update)."""
    m, init, *_ = hydra_fit
    delta = (m.net.head_w.detach() - init)[0]  # (H, latent, C)
    spread = delta.std(0).mean() / delta.abs().mean()
    assert spread > 0.05, float(spread)


def test_hydra_prediction_averages_the_heads_probabilities(hydra_fit):
    m, _, X, *_ = hydra_fit
    with torch.no_grad():
        mu, _ = m.net.encode(torch.as_tensor(X[None, :20]))
        heads = torch.softmax(m.net.head_logits(mu), -1)[0]  # (H, B, C)
        got = m.net.predict_log_proba(mu)[0].exp()
    assert torch.allclose(got, heads.mean(0), atol=1e-5)


def test_hydra_training_draws_classes_by_the_dynamic_sampler(hydra_fit):
    """The VAE's epochs really drew cells class-balanced first and at natural frequencies last."""
    m, _, X, y, trainer = hydra_fit
    drawn = np.asarray(m.drawn_class_counts, float)
    epochs = len(trainer.history)
    assert drawn.shape == (epochs, 4)
    natural = np.bincount(y[:1000], minlength=4) / 1000
    for e in range(epochs):
        want = class_sampling_probs(natural * 1000, e, m.config.max_epochs)
        got = drawn[e] / drawn[e].sum()
        assert np.abs(got - want).max() < 0.05, (e, got, want)
    first = drawn[0] / drawn[0].sum()
    assert first.min() > 0.2  # the rarest class (~7 % of cells) drawn as often as the others
    assert natural.min() < 0.1
    assert math.isclose(trainer.history[0]["sampling_exponent"], 0.0)


def test_hydra_without_dynamic_sampling_draws_naturally():
    X, y = _planted(n=600, sizes=[8, 4, 2, 1])
    m = HydraModel(HydraConfig(**{**SMALL, "dynamic_sampling": False, "max_epochs": 2}), n_features=X.shape[1],
                   classes=list("abcd"))
    m._train_vae(DeviceMatrix(X[:500], m._device), y[:500], FitData(X[500:], y[500:]), Trainer(),
                 torch.Generator().manual_seed(0))
    assert m.drawn_class_counts == []  # plain permutations, no sampler
