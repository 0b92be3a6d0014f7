"""Hydra's VAE keeps log σ² bounded (issue 11, defect 8): unbounded, one Adam step at lr 0.02 could push it to
14–20 for a few cells and the KL's exp(log σ²) made that batch's loss 3–500× the others."""

from __future__ import annotations

import torch

from scapp.models.hydra import HydraConfig, StackedVAE


def test_log_variance_is_bounded_smoothly_and_copies_keep_the_bound():
    torch.manual_seed(0)
    net = StackedVAE(1, 3, [("rna", 20, 8)], latent=4, n_classes=2, dropout=0.0, logvar_limit=10.0)
    with torch.no_grad():
        net.logvar.weight.mul_(1e4)  # what a too-large step does to the log σ² head
    x = torch.randn(1, 64, 20, requires_grad=True)
    _, logvar = net.encode(x)
    assert logvar.abs().max() <= 10.0
    logvar.sum().backward()  # smooth (tanh), not a clamp: the head still gets gradients near the bound
    assert net.logvar.weight.grad.abs().sum() > 0
    assert net.copies(3).logvar_limit == 10.0
    assert HydraConfig().logvar_limit == 10.0 and HydraConfig().lr == 0.02  # the reference's lr is kept


def test_no_bound_leaves_log_variance_as_the_layer_gives_it():
    torch.manual_seed(0)
    net = StackedVAE(1, 3, [("rna", 20, 8)], latent=4, n_classes=2, dropout=0.0, logvar_limit=None).eval()
    x = torch.randn(1, 5, 20)
    h = net.enc[0](x)
    assert torch.allclose(net.encode(x)[1], net.logvar(h))
